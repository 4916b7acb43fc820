"""One metrics layer, several sinks: the controller writes each step's row once to ``MetricsLog``, which hands it
to every enabled sink (JSONL and TensorBoard always; others from the config). A sink may keep state that a
checkpoint saves (a tracking run's id), so a resumed run continues the same record at the right step."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Protocol

from selfplay.orchestration.config.metrics import MetricsConfig
from selfplay.errors import ConfigError

def _tracker_modules(config: MetricsConfig) -> dict[str, tuple[list[str], str]]:
    """For each enabled tracker: the modules it imports, and what to install for them."""
    sqlite = not config.mlflow.tracking_uri or config.mlflow.tracking_uri.startswith("sqlite")
    wanted = {"wandb": (["wandb"], "wandb"),
              "mlflow": (["mlflow", *(["sqlalchemy", "alembic"] if sqlite else [])],
                         "mlflow-skinny" + (" sqlalchemy alembic" if sqlite else ""))}
    return {key: value for key, value in wanted.items() if getattr(config, key).enabled}


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

    def where(self) -> str | None:
        """Where a person looks at what this sink writes (for the console's start line), if anywhere."""
        ...

    def close(self, failed: bool = False) -> None:
        """The run ended (``failed``: of an error; a tracker with a run status records it)."""
        ...


class StatelessSink:
    """Defaults for a sink that keeps nothing across a resume (and, unless it says otherwise, logs no samples)."""

    def write_samples(self, step: int, samples: list[dict]) -> None:
        pass

    def state(self) -> dict:
        return {}

    def where(self) -> str | None:
        return None


class JsonlSink(StatelessSink):
    """``metrics.jsonl``: one object per step; ``samples.jsonl``: one object per evaluation sample. After a
    resume, rows past the checkpoint's step (written after it, before the crash) are dropped, so the resumed
    steps appear once, with no gap."""
    name = "jsonl"

    def __init__(self, run_dir: Path, resume_after_step: int = 0) -> None:
        self._files = {}
        for kind in ("metrics", "samples"):
            path = run_dir / f"{kind}.jsonl"
            if resume_after_step and path.exists():
                _truncate_after(path, resume_after_step)
            self._files[kind] = path
        self._file = self._files["metrics"].open("a", encoding="utf-8")

    def write(self, step: int, row: dict[str, float]) -> None:
        self._file.write(json.dumps({"step": step, **row}) + "\n")
        self._file.flush()

    def write_samples(self, step: int, samples: list[dict]) -> None:
        with self._files["samples"].open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"step": step, **sample}) + "\n" for sample in samples))

    def close(self, failed: bool = False) -> None:
        self._file.close()


class TensorBoardSink(StatelessSink):
    """TensorBoard events under ``tensorboard/``; a resume purges the events past the checkpoint's step.
    Evaluation samples are a markdown table under the text tag ``eval/samples``."""
    name = "tensorboard"

    def __init__(self, run_dir: Path, resume_after_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._dir = run_dir / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self._dir),
                                     purge_step=resume_after_step + 1 if resume_after_step else None)

    def write(self, step: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, step)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        if samples:
            self._writer.add_text("eval/samples", samples_markdown(samples), step)
            self._writer.flush()

    def where(self) -> str:
        return f"TensorBoard: tensorboard --logdir {self._dir}"

    def close(self, failed: bool = False) -> None:
        self._writer.close()


class MetricsLog:
    """``resume_after_step`` > 0 continues a resumed run; ``sink_states`` are the sinks' states from its
    checkpoint (by sink name). ``config`` (the ``metrics`` section) enables the trackers; ``run_config``, the
    whole config as a dict, is recorded with a W&B run; Prometheus series are tagged ``run=run_name``."""

    def __init__(self, run_dir: Path, resume_after_step: int = 0, sink_states: dict | None = None,
                 config: MetricsConfig | None = None, run_config: dict | None = None,
                 run_name: str | None = None) -> None:
        states = sink_states or {}
        self.sinks: list[MetricsSink] = [JsonlSink(run_dir, resume_after_step)]
        try:
            self.sinks.append(TensorBoardSink(run_dir, resume_after_step))
        except ImportError:  # tensorboard is optional: JSONL always works
            pass
        if config is not None and config.wandb.enabled:
            from selfplay.orchestration.telemetry.wandb_sink import WandbSink
            self.sinks.append(WandbSink(config.wandb, run_dir, run_dir.name, run_config or {}, states.get("wandb")))
        if config is not None and config.mlflow.enabled:
            from selfplay.orchestration.telemetry.mlflow_sink import MlflowSink
            self.sinks.append(MlflowSink(config.mlflow, run_dir, run_dir.name, states.get("mlflow")))
        if config is not None and config.prometheus:  # Ray is up (the metrics objects need it)
            from selfplay.orchestration.telemetry.prometheus_sink import PrometheusSink
            self.sinks.append(PrometheusSink(run_name or run_dir.name))

        self.errors: dict[str, int] = {}  # sink name -> calls that raised (each warned about once)
        self._closed = False

    def _each(self, call: str, *args) -> None:
        """``call`` on every sink; a sink that raises (a tracker's network, a full disk) is warned about and
        counted, never ends the run."""
        for sink in self.sinks:
            try:
                getattr(sink, call)(*args)
            except Exception as exc:  # noqa: BLE001 - a metrics sink never stops training
                count = self.errors[sink.name] = self.errors.get(sink.name, 0) + 1
                if count == 1:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    print(f"selfplay: warning: metrics sink {sink.name} failed in {call} "
                          f"({type(exc).__name__}: {first}); training goes on, its errors are counted "
                          "(metrics/sink_errors)", file=sys.stderr, flush=True)

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {k: v for k, v in values.items() if k != "step" and _finite(v)}
        if self.errors:
            row["metrics/sink_errors"] = sum(self.errors.values())
        self._each("write", step, row)

    def where(self) -> list[str]:
        """Where each sink's output is looked at (TensorBoard, Prometheus, W&B, MLflow)."""
        return [w for w in (sink.where() for sink in self.sinks) if w]

    def write_samples(self, step: int, samples: list[dict]) -> None:
        self._each("write_samples", step, samples)

    def state(self) -> dict:
        """Every sink's state, for a checkpoint."""
        return {sink.name: sink.state() for sink in self.sinks if sink.state()}

    def close(self, failed: bool = False) -> None:
        """Once, on every exit: a failed run closes its trackers with their failed status."""
        if self._closed:
            return
        self._closed = True
        self._each("close", failed)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of ``metrics.jsonl`` in order (several rows may share a step: a checkpoint's time, the final
    evaluation); a half-written last line (the run is writing, or crashed mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
    return rows


def check_trackers_installed(config: MetricsConfig) -> None:
    """Before anything starts: every enabled tracker's package must import."""
    import importlib.util

    for key, (modules, install) in _tracker_modules(config).items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"config key 'metrics.{key}.enabled' is true but {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not installed: pip install {install} "
                              "(or pip install 'selfplay-rlhf[track]')")


def samples_markdown(samples: list[dict]) -> str:
    """Evaluation samples as a markdown table (TensorBoard's text plugin renders it)."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| prompt | current policy | initial policy | P(current > initial) |", "|---|---|---|---|"]
    lines += [f"| {cell(s['prompt'])} | {cell(s['current'])} | {cell(s['initial'])} | {s['p_current_wins']:.3f} |"
              for s in samples]
    return "\n".join(lines)


def _truncate_after(path: Path, step: int) -> None:
    """Keep the rows of a JSONL file up to ``step``."""
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if _step_of(line) is not None and _step_of(line) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    tmp.replace(path)


def push_row(last_push: dict | None, step: int) -> dict[str, float]:
    """``push/bytes``, ``push/seconds`` (wall time, learner to every engine, waiting for the engines' turn
    included) and ``push/learner_seconds`` (the learner's send alone) of the push made at ``step``."""
    if not last_push or last_push.get("step") != step:
        return {}
    return {"push/bytes": float(last_push["bytes"]), "push/seconds": float(last_push["wall_seconds"]),
            "push/learner_seconds": float(last_push["seconds"])}  # inside the transport's collectives


def _step_of(line: str) -> int | None:
    """The step of a JSONL row; None for a blank or half-written line (a crash mid-write)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
