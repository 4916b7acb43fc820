"""Weight pushes under failure and concurrency, through the real loop (Ray, vLLM engines, DeepSpeed).

- A rollout worker killed in the middle of a push (``SELFPLAY_FAULT=kill@receive:<v>``: SIGKILL after its first
  tensor of push v), over each transport, plus one more killed from outside at a random moment: the push is
  aborted for every member within seconds, the transport rebuilt and the push made again. Sync mode is
  deterministic, so the run ends with the uninterrupted run's weights; no step takes longer than ``BOUND_S``
  (the engine's restart is most of it), where before the abort the learner waited out the collective timeout.
- ``mode=async`` with long generations and a push every step: a push waits for the engines' turn in the driver,
  never inside the transport's collectives behind a generate; the counts the producer thread made add up.
bench/push_kills.py runs the kill trials many times (10 per transport in the README)."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import pytest

from tests.conftest import run_in_process
from tests.test_fault_tolerance import assert_nothing_left, last_step, pids_of

pytestmark = pytest.mark.slow

STEPS = 12
BASE = [f"run.total_steps={STEPS}", "rollout.num_workers=2", "rollout.prompts_per_step=32", "run.log_every=4",
        "run.step_timeout_s=600"]
BOUND_S = 60.0  # one step with a death in it: the engine restarts (~10 s here), the push is made again
COUNTS = ("preference_calls", "rejected_groups", "sampled_responses", "truncated_responses", "sampled_tokens")


def rows_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ray_session_per_module):
    return run_in_process(tmp_path_factory.mktemp("base"), "base", *BASE)[1]


@pytest.mark.parametrize("transport", ["shared_memory", "broadcast", "object_store"])
def test_a_worker_killed_mid_push_costs_seconds_and_the_run_ends_bitwise_equal(tmp_path, monkeypatch, transport,
                                                                               uninterrupted):
    monkeypatch.setenv("SELFPLAY_FAULT", "kill@receive:3,8")
    monkeypatch.setenv("SELFPLAY_FAULT_DIR", str(tmp_path))
    run_dir = tmp_path / transport
    done, killed = threading.Event(), []
    rng = random.Random(transport)

    def killer() -> None:  # one more death, at a random moment of step 5 or 6 (a generate, a push, between)
        while not done.is_set() and last_step(run_dir) < 5:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        pids = pids_of("RolloutWorker")
        if not done.is_set() and pids:
            os.kill(pids[-1], signal.SIGKILL)
            killed.append(pids[-1])

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        _, summary = run_in_process(tmp_path, transport, *BASE, f"sync.transport={transport}",
                                    "rollout.max_restarts=5")
    finally:
        done.set()
        thread.join(timeout=10)
    died_mid_push = sorted(int(p.name.split("-")[1]) for p in tmp_path.glob("receive-*"))
    assert died_mid_push == [3, 8] and killed, (died_mid_push, killed)
    assert summary["steps"] == STEPS and summary["restarts"]["rollout"] == 3, summary["restarts"]
    assert summary["last_push"]["digest"] == uninterrupted["last_push"]["digest"]
    assert summary["samples"] == uninterrupted["samples"]
    steps = [r for r in rows_of(run_dir) if "time/train" in r]
    slowest = max(sum(v for k, v in r.items() if k.startswith("time/")) for r in steps)
    assert slowest < BOUND_S, f"a step took {slowest:.0f} s"
    pushes = {r["step"]: r["time/push"] for r in steps}  # the push phase: the aborted push, recovery, the retry
    usual = sorted(pushes.values())[len(pushes) // 2]  # the median: the random kill may land on any other push
    assert pushes[3] > 10 * usual and pushes[8] > 10 * usual, pushes
    assert_nothing_left("RolloutWorker", "PreferenceService", "LearnerWorker")


def test_async_pushes_never_wait_behind_a_generate_and_the_counts_add_up(tmp_path, ray_session_per_module):
    """48-token generations (EOS ignored) and a push after every step, so the producer is generating whenever a
    push is due. Before pushes waited for the engines' turn, the learner's send sat in the collective behind the
    generate in flight (its seconds ~ a generation). Two runs in a row (bench/push_kills.py --async runs ten)."""
    for attempt in range(2):
        run_dir, summary = run_in_process(
            tmp_path, f"async-{attempt}", "mode=async", "run.total_steps=10", "rollout.max_tokens=48",
            "rollout.ignore_eos=true", "sync.every_steps=1", "rollout.prompts_per_step=16", "run.step_timeout_s=120",
            "pipeline.max_policy_lag=2")
        assert summary["steps"] == 10
        rows = rows_of(run_dir)
        steps = [r for r in rows if "push/learner_seconds" in r]
        generate = [r["time/generate"] for r in steps if "time/generate" in r]
        assert len(steps) == 10 and sum(generate) / len(generate) > 0.15, generate  # long enough to be in the way
        assert max(r["push/learner_seconds"] for r in steps) < 0.2 * max(generate), \
            [(r["push/learner_seconds"], r.get("time/generate")) for r in steps]
        for key in COUNTS:  # folded by the controller's thread alone: nothing lost, nothing twice
            assert summary[key] == sum(r.get(f"counted/{key}", 0) for r in rows), key
        assert summary["sampled_responses"] > 0 and summary["sampled_tokens"] == 48 * summary["sampled_responses"]
