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
