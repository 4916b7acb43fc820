"""Rollout workers killed at random moments, mid-push included, many times over each weight transport; then
``mode=async`` runs with long generations and a push every step, many in a row.

    .venv/bin/python bench/push_kills.py [--trials 10] [--async-runs 10] [--transports shared_memory,broadcast,...]

Each kill trial is a sync run of ``STEPS`` steps with two engines in which one worker dies twice: once inside a
push (``SELFPLAY_FAULT=kill@receive:<v>``, v drawn at random: SIGKILL after its first tensor of push v) and once
from outside at a random moment of a random step (during a generate, a scoring, a push or between them). A trial
passes when the run ends with the uninterrupted run's final weights digest and no step took longer than
``BOUND_S``. Prints, per transport, the trials passed, the seconds of a step with a death in it (median, max) and
of a step without one, and for the async runs how many finished without an error. tests/test_push_failures.py
runs one trial of each kind; this is the soak behind the numbers in the README.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

from timed_run import timed_run

from selfplay.orchestration.telemetry.metrics import read_metrics
from selfplay.orchestration.health.watchdog import ray_processes

STEPS = 12
BASE = [f"run.total_steps={STEPS}", "rollout.num_workers=2", "rollout.prompts_per_step=32",
        "run.step_timeout_s=600", "rollout.max_restarts=10", "ray.num_cpus=4"]
BOUND_S = 60.0


def rollout_pids() -> list[int]:
    return [pid for label, pid in ray_processes().items()
            if label.split(" ")[0] == "ray::RolloutWorker" or label.startswith("ray::RolloutWorker.")]


def last_step(run_dir: Path) -> int:
    return max((row["step"] for row in read_metrics(run_dir)), default=0) if run_dir.exists() else 0


def step_seconds(rows: list[dict]) -> dict[int, float]:
    return {r["step"]: sum(v for k, v in r.items() if k.startswith("time/")) for r in rows if "time/train" in r}


def kill_trial(out: str, name: str, transport: str, rng: random.Random) -> dict:
    """One run with a mid-push death at a random version and an outside kill at a random moment."""
    push_version = rng.randint(2, STEPS - 1)
    kill_step, delay = rng.randint(2, STEPS - 2), rng.uniform(0.0, 1.5)
    fault_dir = Path(out) / f"{name}-faults"
    fault_dir.mkdir()
    os.environ["SELFPLAY_FAULT"] = f"kill@receive:{push_version}"
    os.environ["SELFPLAY_FAULT_DIR"] = str(fault_dir)
    run_dir, done, killed = Path(out) / name, threading.Event(), []

    def killer() -> None:
        while not done.is_set() and last_step(run_dir) < kill_step:
            time.sleep(0.05)
        time.sleep(delay)
        pids = rollout_pids()
        if not done.is_set() and pids:
            os.kill(rng.choice(pids), signal.SIGKILL)
            killed.append(kill_step)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        summary, _, rows = timed_run(name, out, [*BASE, f"sync.transport={transport}"])
        error = None
    except Exception as e:  # noqa: BLE001  (a failed trial is a result to print, not the end of the soak)
        summary, rows, error = {}, [], f"{type(e).__name__}: {e}"
    finally:
        done.set()
        thread.join(timeout=10)
        os.environ.pop("SELFPLAY_FAULT", None)
    seconds = step_seconds(rows)
    death_steps = {push_version, *killed}
    return {"summary": summary, "error": error, "push_version": push_version, "kill": (kill_step, round(delay, 2)),
            "killed": bool(killed), "died_mid_push": (fault_dir / f"receive-{push_version}").exists(),
            "death_seconds": [seconds[s] for s in death_steps if s in seconds],
            "other_seconds": [v for s, v in seconds.items() if s not in death_steps and s > 1],
            "slowest": max(seconds.values(), default=float("inf"))}


def async_run(out: str, name: str) -> str | None:
    try:
        summary, _, _ = timed_run(name, out, [
            "mode=async", "run.total_steps=10", "rollout.max_tokens=48", "rollout.ignore_eos=true",
            "sync.every_steps=1", "rollout.prompts_per_step=16", "run.step_timeout_s=120",
            "pipeline.max_policy_lag=2", "ray.num_cpus=4"])
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None if summary["steps"] == 10 else f"ended at step {summary['steps']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="kill trials per transport")
    parser.add_argument("--async-runs", type=int, default=10, help="async runs in a row")
    parser.add_argument("--transports", default="shared_memory,broadcast,object_store")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lines = []
    with tempfile.TemporaryDirectory() as out:
        for transport in args.transports.split(","):
            reference, _, _ = timed_run(f"{transport}-reference", out, [*BASE, f"sync.transport={transport}"])
            digest = reference["last_push"]["digest"]
            passed, deaths, others = 0, [], []
            for n in range(args.trials):
                t = kill_trial(out, f"{transport}-{n}", transport, rng)
                ok = (t["error"] is None and t["summary"].get("steps") == STEPS and t["died_mid_push"]
                      and t["summary"]["last_push"]["digest"] == digest and t["slowest"] < BOUND_S)
                passed += ok
                deaths += t["death_seconds"]
                others += t["other_seconds"]
                print(f"{transport} trial {n}: {'ok' if ok else 'FAILED'}; died mid-push {t['push_version']}, "
                      f"killed at step {t['kill'][0]} + {t['kill'][1]} s ({'done' if t['killed'] else 'missed'}); "
                      f"slowest step {t['slowest']:.1f} s" + (f"; {t['error']}" if t["error"] else ""), flush=True)
            lines.append(f"{transport:13s}: {passed}/{args.trials} trials ended with the uninterrupted digest, "
                         f"steps under {BOUND_S:.0f} s; a step with a death {statistics.median(deaths):.1f} s "
                         f"median, {max(deaths):.1f} s max; without one {statistics.median(others):.2f} s median")
        errors = []
        for n in range(args.async_runs):
            errors.append(async_run(out, f"async-{n}"))
            print(f"async run {n}: {errors[-1] or 'ok'}", flush=True)
        lines.append(f"async        : {errors.count(None)}/{args.async_runs} runs in a row finished without an error")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
