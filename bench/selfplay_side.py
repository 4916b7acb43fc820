"""The selfplay half of ``bench/vs_trl.py``: one run of the real loop (``bench/timed_run.py``, the tested
``launch.prepare`` and controller) in a fresh process, timed the way ``bench/trl_side.py`` times TRL::

    .venv/bin/python bench/selfplay_side.py --algorithm dpo --model /tmp/vt-tiny --steps 60 --warmup 10 \\
        --prompts-per-step 16 --max-new-tokens 6 --json out.json [key=value ...]

Matched to the TRL side: the same model directory and sorting prompts, the sorting judge (P = sigmoid(20 (score_a -
score_b)), selfplay's default preference for the sorting task), 2 completions per prompt, temperature 1, fp32 (the
CPU default), EOS ignored, learning rate 1e-4, sync mode. Extra ``key=value`` overrides go to the config.

completions/s = 2 x prompts per step x the steps after ``warmup`` / (end of the last step - end of step ``warmup``); the
machine's busy share over the same window (a thread watches ``metrics.jsonl``, written at each step's end);
start-up = first step's begin - ``--spawned-at`` (the initial evaluation and actor start-up count as start-up).
"""

from __future__ import annotations

import time

_LOADED_AT = time.time()  # stands in for --spawned-at when the parent does not give it

import argparse
import json
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine_busy import MachineBusy
from bench.timed_run import timed_run

PHASES = ("time/generate", "time/score", "time/train", "time/push")


class StepWatcher(threading.Thread):
    """Starts ``MachineBusy`` when ``metrics.jsonl`` holds ``warmup`` rows and stops it at ``steps`` rows."""

    def __init__(self, path: Path, warmup: int, steps: int) -> None:
        super().__init__(daemon=True)
        self.path, self.warmup, self.steps = path, warmup, steps
        self.busy, self.busy_share = MachineBusy(), None

    def _rows(self) -> int:
        try:
            return self.path.read_text().count("\n")
        except FileNotFoundError:
            return 0

    def run(self) -> None:
        started = False
        while self.busy_share is None:
            rows = self._rows()
            if not started and rows >= self.warmup:
                self.busy.start()
                started = True
            if started and rows >= self.steps:
                self.busy_share = self.busy.stop()
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", default="dpo")
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--prompts-per-step", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spawned-at", type=float, default=_LOADED_AT)
    parser.add_argument("--json", default=None)
    args, overrides = parser.parse_known_args()
    if not 0 < args.warmup < args.steps:
        parser.error("need 0 < warmup < steps")

    out = tempfile.mkdtemp(prefix="selfplay-side-")
    watcher = StepWatcher(Path(out) / "bench" / "metrics.jsonl", args.warmup, args.steps)
    loop_started = []
    summary, _, rows = timed_run("bench", out, [
        f"policy.model_path={args.model}", f"algorithm.name={args.algorithm}", f"run.total_steps={args.steps}",
        f"run.seed={args.seed}", f"rollout.prompts_per_step={args.prompts_per_step}", "rollout.k=2",
        "rollout.temperature=1.0", f"rollout.max_tokens={args.max_new_tokens}", "rollout.ignore_eos=true",
        "learner.lr=1e-4", "learner.micro_batch_size=64", "mode=sync", *overrides], on_start=lambda: (loop_started.append(time.time()),
                                                                        watcher.start()))
    watcher.join(timeout=10)
    rows = [r for r in rows if "wall_seconds" in r]  # step rows (the final evaluation writes one of its own)
    step_seconds = [sum(r.get(k, 0.0) for k in ("time/experience", "time/train", "time/push")) for r in rows]
    ends = [r["wall_seconds"] for r in rows]
    seconds = ends[-1] - ends[args.warmup - 1]
    timed = rows[args.warmup:]
    result = {
        "algorithm": args.algorithm, "engine": yaml.safe_load((Path(out) / "bench" / "config.yaml").read_text())
        ["rollout"]["engine"],
        # 2 completions per prompt: DPO's two policy samples; Nash-MD's policy sample and mixture sample (its
        # metrics count the one it trains on), as TRL's trainers draw them
        "completions_per_s": len(timed) * args.prompts_per_step * 2 / seconds,
        "startup_s": loop_started[0] + ends[0] - step_seconds[0] - args.spawned_at,
        "busy_share": watcher.busy_share, "seconds": seconds, "steps": len(rows),
        "phases": {k: statistics.mean(r.get(k, 0.0) for r in timed) for k in PHASES},
        "step_seconds": [b - a for a, b in zip([0.0, *ends[:-1]], ends)],
        "push_backend": (summary.get("last_push") or {}).get("backend", ""),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"[selfplay_side] {args.algorithm}: {result['completions_per_s']:.1f} completions/s, start-up "
          f"{result['startup_s']:.1f} s, busy {result['busy_share']}, {len(timed)} timed steps in {seconds:.2f} s",
          flush=True)


if __name__ == "__main__":
    main()
