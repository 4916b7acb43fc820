"""mode=async through the real loop: sampling and scoring overlap training, bounded policy lag."""

import json
import os
import signal
import subprocess

import pytest

from selfplay.orchestration.run import checkpoints as ckpt
from tests.conftest import run_in_process

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session_per_module")]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _run(tmp_path, name, *extra):
    return run_in_process(tmp_path, name, "mode=async", *extra)


def test_two_workers_bounded_lag(tmp_path):
    """Two rollout workers and a learner of two ZeRO-2 ranks (this module's first run sizes the Ray session)."""
    run_dir, summary = _run(tmp_path, "a", "run.total_steps=40", "rollout.num_workers=2",
                            "pipeline.max_policy_lag=1", "pipeline.queue_size=1",
                            "learner.num_ranks=2", "learner.zero_stage=2", "ray.num_cpus=5")
    assert summary["steps"] == 40 and summary["samples"] == 40 * 16 * 4  # as configured, nothing lost
    assert summary["verified_pushes"] == summary["policy_version"] == 40  # both engines, every push
    trained = [r for r in _rows(run_dir) if "loss" in r]
    assert [r["step"] for r in trained] == list(range(1, 41))
    assert max(r["policy_lag"] for r in trained) <= 1
    assert any(r["policy_lag"] == 1 for r in trained)  # it really ran ahead of the learner
    # the producer held back instead of sampling batches that would arrive too old: none was thrown away
    assert summary["dropped_stale"] == 0 and trained[-1]["dropped_stale"] == 0
    assert summary["win_rate_vs_initial"] > 0.6


def test_zero_lag_drops_stale_batches_and_counts_them(tmp_path):
    run_dir, summary = _run(tmp_path, "b", "run.total_steps=15", "pipeline.max_policy_lag=0",
                            "pipeline.queue_size=2", "pipeline.hold_back=false")
    trained = [r for r in _rows(run_dir) if "loss" in r]
    assert len(trained) == 15 and all(r["policy_lag"] == 0 for r in trained)
    assert summary["dropped_stale"] > 0
    assert trained[-1]["dropped_stale"] == summary["dropped_stale"]


def test_async_checkpoint_keeps_queued_batches(selfplay_cli, tmp_path):
    args = ["train", f"run.output_dir={tmp_path}", "run.name=c", "mode=async", "run.total_steps=12",
            "checkpoint.every_steps=6", "eval.every_steps=0", "pipeline.queue_size=2"]
    env = {**os.environ, "SELFPLAY_FAULT": "after_checkpoint@6"}
    proc = subprocess.run([selfplay_cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL
    ref, _ = ckpt.find_resumable(tmp_path / "c")
    from selfplay.rollout.records import decode
    queued = decode((ref.path / "controller.msgpack").read_bytes())["queued"]
    assert len(queued) >= 1 and all(q["groups"] for q in queued)  # produced, not yet trained: saved
    resumed = subprocess.run([selfplay_cli, "resume", str(tmp_path / "c")], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trained = [r["step"] for r in _rows(tmp_path / "c") if "loss" in r]
    assert trained == list(range(1, 13))
