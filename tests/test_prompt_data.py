"""Prompt data in each format the user may give: JSONL, Parquet, save_to_disk directories, hub names; the errors
each one gives; and the train / held-out split."""

import json
import time

import datasets
import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfplay.orchestration.config.schema import TaskConfig
from selfplay.errors import InputError
from selfplay.tasks.prompt_data import load_prompt_records
from selfplay.tasks.prompts import train_and_eval_prompts

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
CHAT2 = [{"role": "user", "content": "Sort b a"}, {"role": "assistant", "content": ""},
         {"role": "user", "content": "Again"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_string_prompts(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "id": 1}, {"prompt": "b"}])
    assert load_prompt_records(str(path)) == ["a", "b"]


def test_jsonl_chat_prompts_keep_only_role_and_content(tmp_path):
    with_extra = [{**CHAT[0], "name": "sys"}, CHAT[1]]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": with_extra}, {"messages": CHAT2}])
    records = load_prompt_records(str(path), prompt_key="messages")
    assert records == [CHAT, CHAT2]
    assert all(type(m) is dict for chat in records for m in chat)


def test_parquet_string_and_chat_columns(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "messages": [CHAT, CHAT2]}), path)
    assert load_prompt_records(str(path)) == ["a", "b"]
    assert load_prompt_records(str(path), prompt_key="messages") == [CHAT, CHAT2]


def test_parquet_written_by_datasets(tmp_path):
    path = tmp_path / "d.parquet"
    datasets.Dataset.from_list([{"messages": CHAT}, {"messages": CHAT2}]).to_parquet(str(path))
    assert load_prompt_records(str(path), prompt_key="messages") == [CHAT, CHAT2]


def test_save_to_disk_dataset_directory(tmp_path):
    datasets.Dataset.from_dict({"prompt": ["x", "y", "z"]}).save_to_disk(str(tmp_path / "ds"))
    assert load_prompt_records(str(tmp_path / "ds")) == ["x", "y", "z"]


def test_save_to_disk_dataset_dict_takes_the_split(tmp_path):
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"messages": [CHAT]}),
                                   "test": datasets.Dataset.from_dict({"messages": [CHAT2, CHAT]})})
    splits.save_to_disk(str(tmp_path / "dd"))
    assert load_prompt_records(str(tmp_path / "dd"), "messages") == [CHAT]
    assert load_prompt_records(str(tmp_path / "dd"), "messages", split="test") == [CHAT2, CHAT]
    with pytest.raises(InputError, match=r"dd has no split 'validation' \(splits: train, test\); set task.split"):
        load_prompt_records(str(tmp_path / "dd"), "messages", split="validation")


def test_columnar_chat_form_of_datasets_sequences(tmp_path):
    # datasets stores a Sequence of dicts as a dict of lists.
    features = datasets.Features({"messages": datasets.Sequence({"role": datasets.Value("string"),
                                                                 "content": datasets.Value("string")})})
    columnar = {"role": [m["role"] for m in CHAT], "content": [m["content"] for m in CHAT]}
    datasets.Dataset.from_dict({"messages": [columnar]}, features=features).save_to_disk(str(tmp_path / "s"))
    assert load_prompt_records(str(tmp_path / "s"), "messages") == [CHAT]


@pytest.mark.parametrize("value, what", [
    ("", "'prompt' is an empty string"),
    ("  \n", "'prompt' is a blank string"),
    (None, "'prompt' is null; expected a non-empty string or a chat"),
    (7, "'prompt' is a int; expected"),
    ([], "'prompt' is an empty chat"),
    (["hi"], "'prompt' message 1 is not an object"),
    ([{"role": "user", "content": "a"}, {"role": "user"}], "'prompt' message 2 has no 'content'"),
    ([{"content": "a"}], "'prompt' message 1 has no 'role'"),
    ([{"role": "bot", "content": "a"}], "'prompt' message 1 has role 'bot'; expected one of system, user, assistant, tool"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}]}], "'prompt' message 1 'content' is a list"),
    ([{"role": "user", "content": ""}], "'prompt' message 1 is a user message with empty content"),
    ([{"role": "system", "content": "a"}], "'prompt' chat has no user message"),
])
def test_bad_prompt_names_file_line_and_problem(tmp_path, value, what):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "fine"}, {"prompt": value}])
    with pytest.raises(InputError, match=f"p.jsonl:2: {what}"):
        load_prompt_records(str(path))


def test_bad_chat_in_parquet_names_row(tmp_path):
    path = tmp_path / "p.parquet"
    # Row 1's second message has no content: Arrow fills the missing struct field with null.
    pq.write_table(pa.table({"messages": [CHAT, [{"role": "user", "content": "a"}, {"role": "assistant"}]]}), path)
    with pytest.raises(InputError, match=r"p.parquet: row 1: 'messages' message 2 has no 'content'"):
        load_prompt_records(str(path), prompt_key="messages")


def test_missing_prompt_key_lists_what_the_record_has(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a"}, {"messages": CHAT, "id": 3}])
    with pytest.raises(InputError, match=r"p.jsonl:2: no 'prompt' key \(this record has: messages, id\); "
                                         r"set task.prompt_key=\.\.\."):
        load_prompt_records(str(path))
    pq.write_table(pa.table({"text": ["a"], "id": [1]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"p.parquet: no column 'prompt' \(columns: text, id\); set task.prompt_key"):
        load_prompt_records(str(tmp_path / "p.parquet"))
    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(InputError, match=r"ds: no column 'messages' \(columns: text\)"):
        load_prompt_records(str(tmp_path / "ds"), prompt_key="messages")


def test_empty_sources_hold_no_prompts(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="task.eval_prompts_path .*e.jsonl holds no prompts"):
        load_prompt_records(str(tmp_path / "e.jsonl"), role="task.eval_prompts_path")
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(InputError, match="e.parquet holds no prompts"):
        load_prompt_records(str(tmp_path / "e.parquet"))


def test_unreadable_parquet_and_other_formats(tmp_path):
    (tmp_path / "bad.parquet").write_text('{"prompt": "not parquet"}\n')
    with pytest.raises(InputError, match="bad.parquet: not a readable Parquet file"):
        load_prompt_records(str(tmp_path / "bad.parquet"))
    (tmp_path / "p.csv").write_text("prompt\na\n")
    with pytest.raises(InputError, match=r"task.prompts_path: .*p.csv is not a format .* use a .jsonl or .parquet"):
        load_prompt_records(str(tmp_path / "p.csv"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="plain was not written by datasets' save_to_disk"):
        load_prompt_records(str(tmp_path / "plain"))
    with pytest.raises(InputError, match="no such file or directory: .*missing.jsonl"):
        load_prompt_records(str(tmp_path / "missing.jsonl"))


def test_unloadable_hub_name_fails_fast_in_one_line(monkeypatch):
    # datasets and huggingface_hub read the offline switches when imported, so set the constants as well.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(InputError) as caught:
        load_prompt_records("no-such-owner/no-such-prompts", role="task.prompts_path")
    assert time.monotonic() - start < 30
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("task.prompts_path=no-such-owner/no-such-prompts is neither a local file/directory "
                              "nor a loadable hub dataset (")


def test_large_jsonl_loads_in_seconds(tmp_path):
    path = tmp_path / "big.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"prompt {i}"}]} if i % 2 else {"messages": f"prompt {i}"}
            for i in range(100_000)]
    write_jsonl(path, rows)
    start = time.monotonic()
    records = load_prompt_records(str(path), prompt_key="messages")
    assert time.monotonic() - start < 10
    assert len(records) == 100_000 and records[1] == [{"role": "user", "content": "prompt 1"}]


def test_held_out_slice_is_seeded_and_in_file_order(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"}]}
                                              for i in range(20)])
    # TaskConfig itself: load_config would also ask for a preference function to judge the user's prompts.
    task = TaskConfig(prompts_path=str(path), prompt_key="messages", num_eval_prompts=5)
    train, held = train_and_eval_prompts(task, seed=0)
    assert len(train) == 15 and len(held) == 5
    index = lambda chat: int(chat[0]["content"][1:])  # noqa: E731
    assert sorted(map(index, train + held)) == list(range(20))
    assert [index(c) for c in held] == sorted(index(c) for c in held)
    assert [index(c) for c in train] == sorted(index(c) for c in train)
    assert train_and_eval_prompts(task, seed=0) == (train, held)
    assert train_and_eval_prompts(task, seed=1)[1] != held


def test_too_few_prompts_to_hold_out(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"p{i}"} for i in range(5)])
    task = TaskConfig(prompts_path=str(path), num_eval_prompts=5)
    with pytest.raises(InputError, match=r"task.prompts_path .*p.jsonl has 5 prompts; .*task.num_eval_prompts=5"):
        train_and_eval_prompts(task, seed=0)


def test_eval_file_gives_the_eval_set_and_all_data_trains(tmp_path):
    train_path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}"} for i in range(3)])
    eval_path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"prompt": [f"e{i}" for i in range(8)]}), eval_path)
    task = TaskConfig(prompts_path=str(train_path), eval_prompts_path=str(eval_path), num_eval_prompts=5)
    assert train_and_eval_prompts(task, seed=0) == (["t0", "t1", "t2"], ["e0", "e1", "e2", "e3", "e4"])
    task.num_eval_prompts = 50
    assert train_and_eval_prompts(task, seed=0)[1] == [f"e{i}" for i in range(8)]
