"""Bad input fails before anything starts: one line naming the bad thing, non-zero exit, no traceback."""

import subprocess

import pytest


def _run(cli, *args, cwd):
    return subprocess.run([cli, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["policy.model_path=/no/such/model"], "policy.model_path /no/such/model"),
    (["rollout.kk=3"], "unknown config key 'rollout.kk'"),
    (["rollout.k=many"], "'rollout.k' expects an integer"),
    (["missing.yaml"], "config file not found: missing.yaml"),
])
def test_bad_input_is_one_line(selfplay_cli, tmp_path, args, needle):
    result = _run(selfplay_cli, "train", *args, f"run.output_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_malformed_prompts_file_names_file_and_line(selfplay_cli, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "sort: a b"}\n{"prompt": "sort: c a",\n')
    result = _run(selfplay_cli, "train", f"task.prompts_path={prompts}", "preference.kind=function",
                  "preference.function=json:dumps", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{prompts}:2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started or written


def test_debug_shows_the_traceback(selfplay_cli, tmp_path):
    result = _run(selfplay_cli, "train", "rollout.kk=3", "--debug", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_dry_run_prints_resolved_config(selfplay_cli, tmp_path):
    result = _run(selfplay_cli, "train", "rollout.k=7", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0
    assert "k: 7" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    from selfplay.tasks.tiny_chat_model import build_tiny_chat_model_dir
    return str(build_tiny_chat_model_dir(tmp_path_factory.mktemp("chat") / "model"))


def _user_run(chat_model, prompts, *extra):
    return [f"policy.model_path={chat_model}", f"task.prompts_path={prompts}", "preference.kind=function",
            "preference.function=json:dumps", *extra]


@pytest.mark.parametrize("content, extra, needle", [
    ('{"text": "hi"}\n', [], "prompts.jsonl:1: no 'prompt'"),
    ("\n", [], "holds no prompts"),
    (('{"prompt": "' + "word " * 300 + '"}\n') * 40, ["rollout.max_prompt_tokens=32"],
     "prompts.jsonl: none of its 8 prompts fits in 32 tokens"),
    ('{"prompt": "hi"}\n' * 40, ["preference.function=no_such_rewards:score"],
     "'preference.function' 'no_such_rewards:score': module 'no_such_rewards' does not import"),
])
def test_bad_user_inputs_stop_before_anything_starts(selfplay_cli, tmp_path, chat_model, content, extra, needle):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(content)
    result = _run(selfplay_cli, "train", *_user_run(chat_model, prompts, *extra), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists()


def test_chat_template_always_without_one_names_the_key(selfplay_cli, tmp_path):
    result = _run(selfplay_cli, "train", "task.chat_template=always", cwd=tmp_path)
    assert result.returncode == 2
    assert "task.chat_template=always, but the tokenizer of the embedded model has no chat template" in result.stderr
    assert not (tmp_path / "runs").exists()
