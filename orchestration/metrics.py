"""Metrics sinks: a JSONL log (one object per step) and TensorBoard events, both under the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path) -> None:
        self._jsonl = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
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


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
