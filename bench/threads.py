"""Thread budget on vs one thread per actor (Ray's default for an actor holding one CPU), side by side in one run.

    .venv/bin/python bench/threads.py [--steps 12] [--repeats 2] [--model tiny|mid] [key=value ...]

``mid`` builds a ~25M-parameter Llama-style model for the sorting task (hidden 512, 8 layers) under /tmp; ``tiny``
is the embedded default. Prints trained samples/s and the mean seconds of each phase (after 3 warm-up steps) for
each setting, alternating, and the throughput ratio."""

from __future__ import annotations

import argparse
import statistics
import tempfile

import ray
from timed_run import timed_run

ONE_THREAD = ["learner.num_threads=1", "rollout.num_threads=1", "preference.num_threads=1"]
PHASES = ("time/generate", "time/score", "time/train", "time/push")


def mid_model() -> list[str]:
    from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

    path = build_tiny_model_dir(tempfile.mkdtemp(prefix="bench-threads-"), TinyModelSpec(
        hidden_size=512, intermediate_size=2048, num_layers=8, num_heads=8, head_dim=64, max_positions=128))
    return [f"policy.model_path={path}", "rollout.max_tokens=24", "learner.micro_batch_size=64"]


def run(name: str, steps: int, extra: list[str]) -> tuple[float, dict[str, float]]:
    try:
        summary, seconds, rows = timed_run(name, tempfile.mkdtemp(), [f"run.total_steps={steps}", *extra])
    finally:
        ray.shutdown()  # each setting starts its actors with its own environment
    rows = rows[3:]
    return summary["samples"] / seconds, {k: statistics.mean(r.get(k, 0.0) for r in rows) for k in PHASES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", choices=("tiny", "mid"), default="mid")
    args, overrides = parser.parse_known_args()
    extra = (mid_model() if args.model == "mid" else []) + overrides
    results: dict[str, list[float]] = {"one thread": [], "budget": []}
    for repeat in range(args.repeats):
        for label, settings in (("one thread", ONE_THREAD), ("budget", [])):
            rate, phases = run(f"{label.replace(' ', '-')}-{repeat}", args.steps, [*settings, *extra])
            results[label].append(rate)
            print(f"{label:>10}: {rate:8.2f} samples/s | " +
                  " ".join(f"{k[5:]} {v:.3f}s" for k, v in phases.items()), flush=True)
    one, budget = statistics.mean(results["one thread"]), statistics.mean(results["budget"])
    print(f"budget / one thread: {budget / one:.2f} ({budget:.2f} vs {one:.2f} samples/s, {args.model} model)")


if __name__ == "__main__":
    main()
