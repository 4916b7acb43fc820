"""Metrics sinks: a JSONL log (one object per step) and TensorBoard events, both under the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    """``resume_after_step`` > 0 continues a resumed run: rows and events past that step (written after the
    checkpoint the run resumes from) are dropped, so the resumed steps appear once, with no gap."""

    def __init__(self, run_dir: Path, resume_after_step: int = 0) -> None:
        path = run_dir / "metrics.jsonl"
        if resume_after_step and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if _step_of(line) is not None and _step_of(line) <= resume_after_step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)
        self._jsonl = path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                     purge_step=resume_after_step + 1 if resume_after_step else None)
        except ImportError:  # tensorboard is optional: JSONL always works
            self._tb = None

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: v for k, v in values.items() if _finite(v)}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _step_of(line: str) -> int | None:
    """The step of a JSONL row; None for a blank or half-written line (a crash mid-write)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
