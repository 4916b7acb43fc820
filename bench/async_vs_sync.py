"""Async vs sync on the embedded default, side by side in one run.

    .venv/bin/python bench/async_vs_sync.py [steps] [key=value ...]

Prints samples/s of each mode, the async/sync throughput ratio, and the async step time divided by
max(generation, training) per step as measured in the sync run (1.0 would be perfect overlap).
"""

from __future__ import annotations

import statistics
import sys
import tempfile

from timed_run import timed_run


def run(mode: str, steps: int, out: str, extra: list[str]) -> dict:
    summary, seconds, rows = timed_run(mode, out, [f"run.total_steps={steps}", f"mode={mode}", *extra])
    trained = [r for r in rows if "loss" in r][2:]  # skip warm-up steps
    return {"samples_per_s": summary["samples"] / seconds, "seconds": seconds, "steps": summary["steps"],
            "dropped": summary["dropped_stale"],
            "experience_s": statistics.median(r["time/experience"] for r in trained),
            "train_s": statistics.median(r["time/train"] for r in trained),
            "push_s": statistics.median(r.get("time/push", 0.0) for r in trained)}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 and "=" not in sys.argv[1] else 60
    extra = [a for a in sys.argv[1:] if "=" in a]
    with tempfile.TemporaryDirectory() as out:
        sync = run("sync", steps, out, extra)
        async_ = run("async", steps, out, extra)
    step_async = async_["seconds"] / async_["steps"]
    bound = max(sync["experience_s"], sync["train_s"] + sync["push_s"])
    print(f"sync : {sync['samples_per_s']:.0f} samples/s, per step: generate+score {sync['experience_s']*1e3:.0f} ms, "
          f"train {sync['train_s']*1e3:.0f} ms, push {sync['push_s']*1e3:.0f} ms")
    print(f"async: {async_['samples_per_s']:.0f} samples/s, {step_async*1e3:.0f} ms per step, "
          f"{async_['dropped']} stale batches dropped")
    print(f"async / sync throughput = {async_['samples_per_s'] / sync['samples_per_s']:.2f}  (goal >= 1.6)")
    print(f"async step / max(generate, train+push) = {step_async / bound:.2f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
