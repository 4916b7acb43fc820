"""One metrics layer, several sinks: the controller writes each step's row once to ``MetricsLog``, which hands it
to every enabled sink (JSONL and TensorBoard always; others from the config). A sink may keep state that a
checkpoint saves (a tracking run's id), so a resumed run continues the same record at the right step."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol


class MetricsSink(Protocol):
    name: str

    def write(self, step: int, row: dict[str, float]) -> None:
        """One step's finite numbers (``row`` has no ``step`` key)."""
        ...

    def write_samples(self, step: int, samples: list[dict]) -> None:
        """Evaluation samples: prompts, responses and the preference between them."""
        ...

    def state(self) -> dict:
        """What a checkpoint keeps to continue this sink after a resume (e.g. a tracking run id)."""
        ...

    def close(self) -> None:
        ...


class JsonlSink:
    """``metrics.jsonl``: one object per step. After a resume, rows past the checkpoint's step (written after
    it, before the crash) are dropped, so the resumed steps appear once, with no gap."""
    name = "jsonl"

    def __init__(self, run_dir: Path, resume_after_step: int = 0) -> None:
        path = run_dir / "metrics.jsonl"
        if resume_after_step and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if _step_of(line) is not None and _step_of(line) <= resume_after_step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)
        self._file = path.open("a", encoding="utf-8")

    def write(self, step: int, row: dict[str, float]) -> None:
        self._file.write(json.dumps({"step": step, **row}) + "\n")
        self._file.flush()

    def write_samples(self, step: int, samples: list[dict]) -> None:
        pass

    def state(self) -> dict:
        return {}

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    """TensorBoard events under ``tensorboard/``; a resume purges the events past the checkpoint's step."""
    name = "tensorboard"

    def __init__(self, run_dir: Path, resume_after_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                     purge_step=resume_after_step + 1 if resume_after_step else None)

    def write(self, step: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, step)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        pass

    def state(self) -> dict:
        return {}

    def close(self) -> None:
        self._writer.close()


class MetricsLog:
    """``resume_after_step`` > 0 continues a resumed run; ``sink_states`` are the sinks' states from its
    checkpoint (by sink name); ``prometheus`` adds the Prometheus sink, its series tagged ``run=run_name``."""

    def __init__(self, run_dir: Path, resume_after_step: int = 0, sink_states: dict | None = None,
                 run_name: str | None = None, prometheus: bool = False) -> None:
        self.sinks: list[MetricsSink] = [JsonlSink(run_dir, resume_after_step)]
        try:
            self.sinks.append(TensorBoardSink(run_dir, resume_after_step))
        except ImportError:  # tensorboard is optional: JSONL always works
            pass
        if prometheus:  # metrics.prometheus; Ray is up (the metrics objects need it)
            from orchestration.prometheus_sink import PrometheusSink
            self.sinks.append(PrometheusSink(run_name or run_dir.name))

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {k: v for k, v in values.items() if k != "step" and _finite(v)}
        for sink in self.sinks:
            sink.write(step, row)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        for sink in self.sinks:
            sink.write_samples(step, samples)

    def state(self) -> dict:
        """Every sink's state, for a checkpoint."""
        return {sink.name: sink.state() for sink in self.sinks if sink.state()}

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def push_row(last_push: dict | None, step: int) -> dict[str, float]:
    """``push/bytes`` and ``push/seconds`` (wall time, learner to every engine) of the push made at ``step``."""
    if not last_push or last_push.get("step") != step:
        return {}
    return {"push/bytes": float(last_push["bytes"]), "push/seconds": float(last_push["wall_seconds"])}


def _step_of(line: str) -> int | None:
    """The step of a JSONL row; None for a blank or half-written line (a crash mid-write)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
