import pytest

from selfplay.orchestration.config.schema import TaskConfig

from selfplay.orchestration.config.loading import load_config
from selfplay.errors import InputError
from selfplay.tasks.prompt_data import load_prompt_records
from selfplay.tasks.prompts import train_and_eval_prompts


def test_reads_prompts_and_skips_blank_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b", "id": 2}\n')
    assert load_prompt_records(str(path)) == ["a", "b"]


@pytest.mark.parametrize("text, line, what", [
    ('{"prompt": "a"}\n{"prompt": \n', 2, "not valid JSON"),
    ('{"prompt": "a"}\n{"text": "b"}\n', 2, "no 'prompt' key"),
    ('["a"]\n', 1, "expected a JSON object"),
    ('{"prompt": ""}\n', 1, "'prompt' is an empty string"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=f"p.jsonl:{line}: .*{what}"):
        load_prompt_records(str(path))


def test_line_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "a"}\n{"prompt": "\xff"}\n')
    with pytest.raises(InputError, match="p.jsonl:2: not UTF-8 text"):
        load_prompt_records(str(path))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        load_prompt_records(str(tmp_path / "none.jsonl"))
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds no prompts"):
        load_prompt_records(str(tmp_path / "e.jsonl"))


def test_builtin_task_splits_are_disjoint_and_seeded():
    task = load_config(None, ["task.num_train_prompts=200", "task.num_eval_prompts=10"]).task
    train, held = train_and_eval_prompts(task, seed=3)
    assert len(train) == 200 and len(held) == 10
    assert not set(train) & set(held)
    assert (train, held) == train_and_eval_prompts(task, seed=3)


def test_file_split_holds_out_eval_prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(20)))
    task = TaskConfig(prompts_path=str(path), num_eval_prompts=5)
    train, held = train_and_eval_prompts(task, seed=0)
    assert len(train) == 15 and len(held) == 5 and not set(train) & set(held)
