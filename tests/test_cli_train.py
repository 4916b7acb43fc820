"""README command (1) as a user runs it: `selfplay train` on the embedded default, through the console script."""

import json
import subprocess

import pytest

pytestmark = pytest.mark.slow


def test_default_run_learns(selfplay_cli, tmp_path):
    result = subprocess.run([selfplay_cli, "train", f"run.output_dir={tmp_path}"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "tiny-sppo" / "summary.json").read_text())
    assert summary["algorithm"] == "sppo"
    assert summary["steps"] == summary["policy_version"] == 120
    assert summary["samples"] == 120 * 16 * 4
    assert summary["win_rate_vs_initial"] >= 0.75
    assert summary["wall_seconds"] < 600
    # Every engine is a CPU engine on the learner's node: the weights go through shared memory, verified.
    assert summary["last_push"]["backend"] == "shared_memory" and summary["verified_pushes"] >= 120
    # progress was shown while it ran, and the final line reports the result
    assert "step 60/120" in result.stdout and "win-rate vs initial" in result.stdout
    assert "done: 120 steps" in result.stdout

    # running the same command again refuses to overwrite the finished run
    again = subprocess.run([selfplay_cli, "train", f"run.output_dir={tmp_path}"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=120)
    assert again.returncode == 2
    assert "run.overwrite=true" in again.stderr
