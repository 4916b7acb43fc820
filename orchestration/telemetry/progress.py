"""Console progress: a tqdm bar with the latest numbers, and one line every ``log_every`` steps."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm


class Progress:
    def __init__(self, total_steps: int, log_every: int, first_step: int = 0, run_dir: Path | None = None,
                 metrics_at: list[str] = ()) -> None:
        self.log_every = log_every
        self.total = total_steps
        # On a terminal the bar redraws in place; in a log file it would spam, so only lines are printed.
        self.bar = tqdm(total=total_steps, initial=first_step, unit="step", dynamic_ncols=True, leave=False) \
            if sys.stderr.isatty() else None
        if run_dir is not None:
            self._print(f"run directory {run_dir}; watch it with: selfplay status {run_dir} --watch")
        if metrics_at:  # one line: where TensorBoard, Prometheus, W&B and MLflow are
            self._print("metrics: " + " | ".join(metrics_at))
        if first_step:
            self._print(f"resuming at step {first_step}/{total_steps}")

    def update(self, step: int, row: dict) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}",
                                 sps=f"{row.get('samples_per_second', 0):.0f}")
        if step % self.log_every == 0 or step == self.total or "win_rate_vs_initial" in row:
            line = (f"step {step}/{self.total} | samples/s {row.get('samples_per_second', 0):.1f} | "
                    f"loss {row.get('loss', float('nan')):.4f} | version {row.get('policy_version')}")
            for key, label in (("p_win_chosen", "p_win chosen"), ("p_win_vs_mixture", "p_win vs mixture"),
                               ("accuracy", "accuracy"), ("osp/judge_agreement", "judge agreement")):
                if key in row:
                    line += f" | {label} {row[key]:.3f}"
            if "win_rate_vs_initial" in row:
                line += f" | win-rate vs initial {row['win_rate_vs_initial']:.3f}"
            if "eval_score" in row:
                line += f" | task score {row['eval_score']:.3f}"
            if "exploitability" in row:
                line += f" | exploitability {row['exploitability']:.3f}"
            self._print(line)

    def close(self, summary: dict) -> None:
        if self.bar is not None:
            self.bar.close()
        self._print(f"done: {summary['steps']} steps, {summary['samples']} samples, policy version "
                    f"{summary['policy_version']}, win-rate vs initial {summary['win_rate_vs_initial']:.3f}"
                    + (f", exploitability {summary['initial_exploitability']:.3f} -> "
                       f"{summary['final_exploitability']:.3f}" if summary.get("final_exploitability") is not None
                       else "") + f", {summary['wall_seconds']:.0f}s")

    def note(self, line: str) -> None:
        self._print(line)

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)
