"""Prompts rendered once to the ids the engines receive: chat template, system prompt, length budget, EOS ids."""

import json

import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.errors import ConfigError, InputError
from selfplay.orchestration.run.inputs import load_run_inputs
from selfplay.rollout.chat_rendering import PromptRenderer, eos_token_ids, first_eos, fit_prompt, prompt_text
from selfplay.tasks.tiny_chat_model import BOS, EOS, EOT, build_tiny_chat_model_dir


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return str(build_tiny_chat_model_dir(tmp_path_factory.mktemp("chat") / "model"))


@pytest.fixture(scope="module")
def tokenizer(chat_model):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(chat_model)


def test_a_string_becomes_one_user_turn_with_one_bos(tokenizer):
    ids = PromptRenderer(tokenizer).render("Hello there")
    expected = tokenizer.apply_chat_template([{"role": "user", "content": "Hello there"}],
                                             add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids == expected
    assert ids.count(tokenizer.convert_tokens_to_ids(BOS)) == 1 and ids[0] == tokenizer.bos_token_id


def test_a_chat_keeps_its_turns_and_gets_the_system_prompt_once(tokenizer):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"}]
    renderer = PromptRenderer(tokenizer, system_prompt="Be brief.")
    text = tokenizer.decode(renderer.render(chat))
    assert text.count("Be brief.") == 1 and text.index("Be brief.") < text.index("Hi") < text.index("Bye")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    with_system = [{"role": "system", "content": "Mine."}] + chat
    assert "Be brief." not in tokenizer.decode(renderer.render(with_system))


def test_never_tokenizes_the_text_as_is(tokenizer):
    ids = PromptRenderer(tokenizer, chat_template="never").render("Hello there")
    assert ids == tokenizer("Hello there").input_ids and EOT not in tokenizer.convert_ids_to_tokens(ids)


def test_always_without_a_template_is_refused():
    from selfplay.tasks.tiny_model import TinyModelSpec, build_tokenizer
    with pytest.raises(ConfigError, match="task.chat_template=always.*has no chat template"):
        PromptRenderer(build_tokenizer(TinyModelSpec()), chat_template="always")


def test_fit_prompt_drops_or_keeps_the_tail_with_its_bos():
    assert fit_prompt([1, 5, 6, 7], 4, "drop", 1) == [1, 5, 6, 7]
    assert fit_prompt([1, 5, 6, 7, 8], 4, "drop", 1) is None
    assert fit_prompt([1, 5, 6, 7, 8], 4, "truncate", 1) == [1, 6, 7, 8]
    assert fit_prompt([5, 6, 7, 8, 9], 3, "truncate", 1) == [7, 8, 9]


def test_every_eos_id_of_tokenizer_and_generation_config(chat_model, tokenizer):
    eot, eos = tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(EOS)
    assert sorted(eos_token_ids(tokenizer, chat_model)) == sorted([eot, eos])
    assert first_eos([4, 9, eot, 3, eos], [eos, eot]) == 2 and first_eos([4, 9], [eos]) is None


def test_prompt_text_of_a_chat():
    assert prompt_text("x") == "x"
    assert prompt_text([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]) == "a\nb"


def _write_prompts(path, prompts):
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in prompts))
    return path


def _config(chat_model, prompts, *extra):
    return load_config(None, [f"policy.model_path={chat_model}", f"task.prompts_path={prompts}",
                              "task.prompt_key=messages", "preference.kind=function",
                              "preference.function=json:dumps", "task.num_eval_prompts=2", *extra])


def test_run_inputs_budget_counts_and_engine_context(chat_model, tokenizer, tmp_path):
    short = [[{"role": "user", "content": f"Say hi {i}"}] for i in range(6)]
    long = [[{"role": "user", "content": "word " * 200}]]
    path = _write_prompts(tmp_path / "p.jsonl", short + long)
    inputs = load_run_inputs(_config(chat_model, path, "rollout.max_prompt_tokens=64", "rollout.max_tokens=32"))
    assert len(inputs.train) + len(inputs.eval) == 6 and inputs.train.dropped + inputs.eval.dropped == 1
    assert all(ids == tokenizer.apply_chat_template(r, add_generation_prompt=True, tokenize=True, return_dict=False)
               for r, ids in zip(inputs.train.records, inputs.train.token_ids))
    longest = max(inputs.train.longest, inputs.eval.longest)
    assert inputs.max_model_len == longest + 32
    kept = load_run_inputs(_config(chat_model, path, "rollout.max_prompt_tokens=64", "task.overlong=truncate"))
    assert kept.train.truncated + kept.eval.truncated == 1 and max(kept.train.longest, kept.eval.longest) == 64


def test_all_prompts_too_long_names_the_file(chat_model, tmp_path):
    path = _write_prompts(tmp_path / "long.jsonl", [[{"role": "user", "content": "word " * 50}]] * 5)
    with pytest.raises(InputError, match=r"task.prompts_path .*long.jsonl: none of its \d+ prompts fits in 16 tokens"):
        load_run_inputs(_config(chat_model, path, "rollout.max_prompt_tokens=16"))


def test_response_budget_must_leave_room_in_the_context(chat_model, tmp_path):
    path = _write_prompts(tmp_path / "p.jsonl", [[{"role": "user", "content": "hi"}]] * 5)
    with pytest.raises(ConfigError, match="'rollout.max_tokens' \\(600\\) leaves no room .* 512 tokens"):
        load_run_inputs(_config(chat_model, path, "rollout.max_tokens=600"))
    with pytest.raises(ConfigError, match="'rollout.vllm.max_model_len' \\(20\\) is shorter"):
        load_run_inputs(_config(chat_model, path, "rollout.vllm.max_model_len=20"))


def test_drift_evaluates_on_held_out_conversations_of_its_own_data(chat_model, tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"Name a fruit ({i})."}], "rejected": "A carrot.",
             "user_preference": "That is a vegetable."} for i in range(10)]
    data = tmp_path / "wildfeedback.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_config(None, [f"policy.model_path={chat_model}", "algorithm.name=drift",
                                f"algorithm.drift.data_path={data}", "preference.kind=function",
                                "preference.function=json:dumps", "task.num_eval_prompts=3"])
    inputs = load_run_inputs(config)
    trained = [r[0]["content"] for r in inputs.dsat.prompts.records]
    held_out = [r[0]["content"] for r in inputs.eval.records]
    assert len(trained) == 7 and len(held_out) == 3 and not set(trained) & set(held_out)
    assert all(h.startswith("Name a fruit") for h in held_out)  # its own conversations, not sorting prompts
    # the repair prompt is a user turn holding the conversation, the rejected reply and the complaint
    repair = inputs.renderer.tokenizer.decode(inputs.dsat.repair_ids[0])
    assert "A carrot." in repair and "That is a vegetable." in repair and repair.count("<|begin_of_text|>") == 1
    # The logged reply ends as the engines end a sampled one, with an EOS id; with ignore_eos neither does.
    tokenizer = inputs.renderer.tokenizer
    text_ids = tokenizer("A carrot.", add_special_tokens=False).input_ids
    assert inputs.dsat.rejected_ids[0] == text_ids + [tokenizer.eos_token_id]
    assert tokenizer.eos_token_id in eos_token_ids(tokenizer, chat_model)
    config = load_config(None, [f"policy.model_path={chat_model}", "algorithm.name=drift",
                                f"algorithm.drift.data_path={data}", "preference.kind=function",
                                "preference.function=json:dumps", "task.num_eval_prompts=3", "rollout.ignore_eos=true"])
    assert load_run_inputs(config).dsat.rejected_ids[0] == text_ids


def test_chats_that_end_with_an_answer_lose_it_by_default_and_are_counted(chat_model, tokenizer, tmp_path):
    """SFT-style chats (ultrachat's `messages`) end with the reference answer: the policy answers the last user
    turn; `task.trailing_assistant_turns=keep` keeps the answer in the prompt."""
    sft = [[{"role": "user", "content": f"Say hi {i}"}, {"role": "assistant", "content": "Hi there."}]
           for i in range(5)]
    plain = [[{"role": "user", "content": "Say bye"}]]
    path = _write_prompts(tmp_path / "sft.jsonl", sft + plain)
    inputs = load_run_inputs(_config(chat_model, path))
    assert inputs.trailing_answers_dropped == 5 and inputs.summary()["trailing_answers_dropped"] == 5
    for record, ids in zip(inputs.train.records + inputs.eval.records, inputs.train.token_ids + inputs.eval.token_ids):
        assert record[-1]["role"] == "user"
        assert "Hi there." not in tokenizer.decode(ids)
        assert ids == tokenizer.apply_chat_template(record, add_generation_prompt=True, tokenize=True,
                                                    return_dict=False)
    kept = load_run_inputs(_config(chat_model, path, "task.trailing_assistant_turns=keep"))
    assert kept.trailing_answers_dropped == 0
    assert sum("Hi there." in tokenizer.decode(ids) for ids in kept.train.token_ids + kept.eval.token_ids) == 5


def test_sharegpt_records_are_read_as_chats(chat_model, tokenizer, tmp_path):
    rows = [[{"from": "system", "value": "Be kind."}, {"from": "human", "value": f"Name a colour ({i})."},
             {"from": "gpt", "value": "Blue."}] for i in range(4)]
    path = tmp_path / "sharegpt.jsonl"
    path.write_text("".join(json.dumps({"conversations": r}) + "\n" for r in rows))
    inputs = load_run_inputs(_config(chat_model, path, "task.prompt_key=conversations"))
    assert inputs.trailing_answers_dropped == 4
    assert all(r == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": r[1]["content"]}]
               and r[1]["content"].startswith("Name a colour") for r in inputs.train.records + inputs.eval.records)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"conversations": [{"from": "narrator", "value": "Once"}]}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: 'conversations' message 1 is from 'narrator', a ShareGPT "
                                         r"speaker .*map it to one of system, user, assistant, tool"):
        load_run_inputs(_config(chat_model, bad, "task.prompt_key=conversations"))


NO_SYSTEM_TEMPLATE = (  # Gemma's rule, as its template states it
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


@pytest.fixture(scope="module")
def no_system_model(chat_model, tmp_path_factory):
    import shutil
    out = tmp_path_factory.mktemp("gemma-like") / "model"
    shutil.copytree(chat_model, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["chat_template"] = NO_SYSTEM_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    (out / "chat_template.jinja").unlink(missing_ok=True)
    return str(out)


def test_a_template_without_a_system_role_names_the_key_or_takes_it_in_the_user_turn(no_system_model, tmp_path):
    from transformers import AutoTokenizer

    path = _write_prompts(tmp_path / "p.jsonl", [[{"role": "user", "content": f"Hi {i}"}] for i in range(5)])
    with pytest.raises(InputError, match=r"task.system_prompt is set, but the chat template of the tokenizer of "
                                         rf"{no_system_model} takes no system message \(System role not supported\)"
                                         r".*task.system_prompt_in_user_turn=true"):
        load_run_inputs(_config(no_system_model, path, "task.system_prompt=Be brief."))
    inputs = load_run_inputs(_config(no_system_model, path, "task.system_prompt=Be brief.",
                                     "task.system_prompt_in_user_turn=true"))
    text = AutoTokenizer.from_pretrained(no_system_model).decode(inputs.train.token_ids[0])
    assert "<start_of_turn>user\nBe brief.\n\nHi " in text and text.endswith("<start_of_turn>model\n")
    # the data's own system message, too
    own = _write_prompts(tmp_path / "own.jsonl", [[{"role": "system", "content": "Mine."},
                                                   {"role": "user", "content": f"Hi {i}"}] for i in range(5)])
    with pytest.raises(InputError, match=r"prompt \d+ cannot be rendered .*System role not supported.*"
                                         r"task.system_prompt_in_user_turn=true"):
        load_run_inputs(_config(no_system_model, own))
    merged = load_run_inputs(_config(no_system_model, own, "task.system_prompt_in_user_turn=true"))
    assert "<start_of_turn>user\nMine.\n\nHi " in AutoTokenizer.from_pretrained(no_system_model).decode(
        merged.train.token_ids[0])
