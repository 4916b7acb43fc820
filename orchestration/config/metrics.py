"""The ``metrics`` config section: Prometheus (through Ray) and optional experiment trackers, next to the JSONL and
TensorBoard logs that every run writes."""

from __future__ import annotations

from typing import Literal

from selfplay.config_fields import Section, _f


class WandbConfig(Section):
    enabled: bool = _f(False, "log metrics and evaluation samples to Weights & Biases (pip install wandb)")
    project: str = _f("selfplay", "W&B project")
    entity: str | None = _f(None, "W&B entity (user or team); empty: your default entity")
    mode: Literal["online", "offline"] = _f(
        "offline", "online: stream to the W&B server (needs WANDB_API_KEY or `wandb login`); offline: write "
                   "locally only, upload later with `wandb sync <dir>/wandb/offline-run-*`")
    dir: str | None = _f(None, "the folder W&B writes its wandb/ folder in; empty: WANDB_DIR if set, else the "
                               "run directory")


class MlflowConfig(Section):
    enabled: bool = _f(False, "log metrics and evaluation samples to MLflow (pip install mlflow-skinny "
                              "sqlalchemy alembic, or mlflow)")
    tracking_uri: str | None = _f(None, "MLflow tracking server or store; empty: a local SQLite store, "
                                        "sqlite:///<run_dir>/mlflow.db")
    experiment: str = _f("selfplay", "MLflow experiment name (created if missing)")


class MetricsConfig(Section):
    prometheus: bool = _f(True, "export the run's metrics and the vLLM engines' stats as selfplay_* Prometheus "
                                "metrics through Ray's metrics agent (dashboards/selfplay.json)")
    samples: int = _f(8, "evaluation prompts whose responses (current vs initial policy, and the preference "
                         "between them) are logged at each evaluation (0: none)", ge=0)
    wandb: WandbConfig = _f(WandbConfig, "Weights & Biases")
    mlflow: MlflowConfig = _f(MlflowConfig, "MLflow")
