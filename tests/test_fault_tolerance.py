"""Fault injection through the real system: rollout workers and preference replicas killed mid-run (``kill -9`` on
the actor's process, found by its Ray process title as a user would with ``pkill -f ray::RolloutWorker``). Sync
mode is deterministic, so a run that survived its restarts must end with exactly the weights of an uninterrupted
run: the retried shards were sampled with the same prompts, seeds and (verified) weights."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_in_process

pytestmark = pytest.mark.slow

STEPS = 30
BASE = [f"run.total_steps={STEPS}", "rollout.prompts_per_step=32", "run.log_every=10"]


def pids_of(actor_class: str) -> list[int]:
    """This test's actor processes (descendants of this process, which started Ray) whose title is Ray's
    ``ray::<class>`` (idle) or ``ray::<class>.<method>`` (busy)."""
    from selfplay.orchestration.health.watchdog import ray_processes

    return [pid for label, pid in ray_processes().items()
            if label.split(" ")[0] == f"ray::{actor_class}" or label.startswith(f"ray::{actor_class}.")]


def assert_nothing_left(*classes: str, within_s: float = 30.0) -> None:
    """Every actor process of the run exits (``ray.kill`` returns before the process is gone), and no weight
    transport file is left in /dev/shm."""
    deadline = time.monotonic() + within_s
    while (left := {c: pids_of(c) for c in classes if pids_of(c)}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"actor processes outlived their run: {left}"
    assert not list(Path("/dev/shm").glob("selfplay-weights-*")), sorted(os.listdir("/dev/shm"))


def last_step(run_dir: Path) -> int:
    from selfplay.orchestration.telemetry.metrics import read_metrics

    return max((row["step"] for row in read_metrics(run_dir)), default=0)


def run_with_kills(tmp_path, name: str, kills: list[tuple[int, str]], *overrides) -> tuple[dict, list]:
    """Run while a thread kills the first process of each ``(step, actor class)`` once the run has logged that
    step; returns (summary, [(step, class, pid) killed])."""
    result, killed = {}, []
    run_dir = tmp_path / name

    def killer() -> None:
        for step, actor_class in kills:
            while "done" not in result and last_step(run_dir) < step:
                time.sleep(0.05)
            pids = pids_of(actor_class)
            if "done" in result or not pids:
                return
            os.kill(pids[0], signal.SIGKILL)
            killed.append((last_step(run_dir), actor_class, pids[0]))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result["summary"] = run_in_process(tmp_path, name, *BASE, *overrides)[1]
    finally:
        result["done"] = True
        thread.join(timeout=10)
    return result["summary"], killed


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ray_session_per_module):
    return run_in_process(tmp_path_factory.mktemp("base"), "base", *BASE)[1]


def test_rollout_worker_and_preference_replica_killed_mid_run(tmp_path, uninterrupted):
    summary, killed = run_with_kills(tmp_path, "killed", [(8, "RolloutWorker"), (18, "PreferenceService")])
    assert [k[1] for k in killed] == ["RolloutWorker", "PreferenceService"], killed
    assert summary["steps"] == STEPS
    assert summary["restarts"]["rollout"] == 1 and summary["restarts"]["preference"] == 1, summary["restarts"]
    # Every push, the one to the restarted engine included, was verified against the learner's digest.
    assert summary["verified_pushes"] >= STEPS
    # The same prompts, seeds and weights: the run ends exactly where the uninterrupted one does.
    assert summary["last_push"]["digest"] == uninterrupted["last_push"]["digest"]
    assert summary["samples"] == uninterrupted["samples"]
    rows = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("restarts/rollout", 0) for r in rows) == 1
    assert max(r.get("restarts/preference", 0) for r in rows) == 1
    assert_nothing_left("RolloutWorker", "PreferenceService", "LearnerWorker")


def train_in_process(tmp_path, name: str, *overrides) -> dict:
    """``selfplay train`` in this process (``launch.train``: auto-resume included), on the module's Ray."""
    from selfplay.orchestration.config.loading import load_config
    from selfplay.orchestration.commands.launch import train

    return train(load_config(None, [f"run.output_dir={tmp_path}", f"run.name={name}", "eval.every_steps=0",
                                    *BASE, *overrides]))


@pytest.mark.parametrize("placement", [[], ["rollout.colocate=true"]], ids=["separate", "colocated"])
def test_learner_killed_auto_resume_ends_bitwise_equal(tmp_path, uninterrupted, placement):
    """Colocated, the engines die with the learner ranks that host them: the same learner failure, the same
    restart, and the same weights at the end as the uninterrupted separate run (the placements train alike)."""
    result, killed = {}, []

    def killer() -> None:
        while "done" not in result and last_step(tmp_path / "learner") < 12:
            time.sleep(0.05)
        for pid in pids_of("LearnerWorker"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        summary = train_in_process(tmp_path, "learner", "checkpoint.every_steps=5", "run.auto_resume=1", *placement)
    finally:
        result["done"] = True
        thread.join(timeout=10)
    assert killed, "the run ended before the learner could be killed"
    assert summary["steps"] == STEPS and summary["auto_resumes"] == 1
    assert summary["last_push"]["digest"] == uninterrupted["last_push"]["digest"]
    assert_nothing_left("RolloutWorker", "PreferenceService", "LearnerWorker")


def test_hung_push_times_out_dumps_stacks_and_auto_resumes(tmp_path, uninterrupted, monkeypatch):
    """Over the shared-memory transport: the learner is killed mid-push, with its /dev/shm files still named."""
    monkeypatch.setenv("SELFPLAY_FAULT", "hang@push:12")
    started = time.monotonic()
    summary = train_in_process(tmp_path, "hang", "checkpoint.every_steps=5", "run.auto_resume=1",
                               "run.step_timeout_s=20", "sync.transport=shared_memory")
    assert summary["steps"] == STEPS and summary["auto_resumes"] == 1
    assert summary["last_push"]["digest"] == uninterrupted["last_push"]["digest"]
    stacks = (tmp_path / "hang" / "stacks" / "step-12-push.txt").read_text()
    assert stacks.startswith("step 12 hung in phase 'push'"), stacks[:200]
    # Every process's stacks are there: the driver waiting in the push, the rollout worker in the injected hang.
    sections = {part.split("\n", 1)[0]: part for part in stacks.split("\n== ")[1:]}
    assert {label.split(" (")[0] for label in sections} == {
        "driver", "learner rank 0", "rollout worker 0", "preference replica 0"}, list(sections)
    driver = next(text for label, text in sections.items() if label.startswith("driver"))
    worker = next(text for label, text in sections.items() if label.startswith("rollout worker 0"))
    assert "push_weights" in driver and "faults.py" in worker, stacks
    assert time.monotonic() - started < 300
    assert_nothing_left("RolloutWorker", "PreferenceService", "LearnerWorker")



def test_an_actor_whose_vllm_engine_died_exits_and_ray_restarts_it(tmp_path, ray_session_per_module):
    """vLLM's CPU build runs the engine core inside the worker, so its death is raised here with vLLM's own
    ``EngineDeadError``; the worker's process must end as a crash, so that Ray restarts it and the call is retried."""
    import ray

    from selfplay.actors.actor_failures import get_with_restarts

    @ray.remote(max_restarts=1, max_task_retries=0, num_cpus=0)
    class Engine:
        def __init__(self, marker: str) -> None:
            self.marker = Path(marker)

        def generate(self) -> int:
            from selfplay.actors.rollout_worker import engine_alive
            from vllm.v1.engine.exceptions import EngineDeadError

            with engine_alive():
                if not self.marker.exists():  # the first incarnation's engine is dead
                    self.marker.write_text(str(os.getpid()))
                    raise EngineDeadError()
            return os.getpid()

    marker = tmp_path / "first-engine-pid"
    engine = Engine.remote(str(marker))
    try:
        pid, deaths = get_with_restarts(engine.generate.remote(), engine.generate.remote, 1, "engine", wait_s=120)
        assert deaths == 1 and pid != int(marker.read_text())
    finally:
        ray.kill(engine, no_restart=True)
