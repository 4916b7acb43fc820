"""MLflow as a metrics sink (``metrics.mlflow``), through ``MlflowClient`` (no global active run). The run id is
the sink's state, kept by every checkpoint, so a resumed run logs into the same MLflow run, each metric with
its explicit step.

An MLflow history keeps every value logged, so a resume must not log a step twice: the resumed process logs only
steps past the last one the run already holds. Steps the interrupted process logged after its last checkpoint
(a crash, not a SIGTERM, which checkpoints where it stops) keep their first values; in sync mode, which is
deterministic, those equal what the resumed process computes. JSONL and TensorBoard instead drop them and take
the resumed values. Evaluation samples are JSON artifacts, ``samples/step_<step>.json``."""

from __future__ import annotations

import time
from pathlib import Path

from selfplay.orchestration.config.metrics import MlflowConfig


def default_tracking_uri(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


class MlflowSink:
    name = "mlflow"

    def __init__(self, config: MlflowConfig, run_dir: Path, run_name: str, state: dict | None = None) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        self.tracking_uri = config.tracking_uri or default_tracking_uri(run_dir)
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        run_id = (state or {}).get("run_id")
        if run_id is None:
            experiment = self._client.get_experiment_by_name(config.experiment)
            # a new experiment in the default store keeps its artifacts in the run directory too (not in the cwd)
            location = None if config.tracking_uri else (Path(run_dir).resolve() / "mlartifacts").as_uri()
            experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(
                config.experiment, artifact_location=location)
            self.run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
            self._last_logged = 0
        else:
            self.run_id = run_id
            self._client.update_run(run_id, status="RUNNING")
            self._last_logged = self._last_step()

    def _last_step(self) -> int:
        """The highest step any metric of the run holds."""
        keys = self._client.get_run(self.run_id).data.metrics
        return max((m.step for key in keys for m in self._client.get_metric_history(self.run_id, key)), default=0)

    def where(self) -> str:
        return f"MLflow: mlflow ui --backend-store-uri {self.tracking_uri}"

    def write(self, step: int, row: dict[str, float]) -> None:
        if step <= self._last_logged or not row:
            return
        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[self._metric(key, float(value), now, step)
                                                     for key, value in row.items()])

    def write_samples(self, step: int, samples: list[dict]) -> None:
        if step > self._last_logged and samples:
            self._client.log_dict(self.run_id, samples, f"samples/step_{step}.json")

    def state(self) -> dict:
        return {"run_id": self.run_id}

    def close(self, failed: bool = False) -> None:
        self._client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
