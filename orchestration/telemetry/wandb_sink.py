"""Weights & Biases as a metrics sink (``metrics.wandb``). The run id is the sink's state, kept by every
checkpoint, so a resumed run continues the same W&B run.

Online, a resume is ``wandb.init(id=..., resume="must")`` and W&B reports where the run's history ends
(``starting_step``); steps below it, which the interrupted process logged after its last checkpoint, are not
logged again (a W&B history is append-only: they keep their first values). Offline, W&B (0.31) cannot resume
in place: each process writes its own ``offline-run-<time>-<id>`` folder under the same id, and
``wandb sync`` uploads them in order of start time into one run, dropping a step lower than the run's current
one the same way. A SIGTERM writes a checkpoint at the step it stops, so nothing is logged twice."""

from __future__ import annotations

import os
from pathlib import Path

from selfplay.orchestration.config.metrics import WandbConfig

SAMPLE_COLUMNS = ("prompt", "current", "initial", "p_current_wins")


class WandbSink:
    name = "wandb"

    def __init__(self, config: WandbConfig, run_dir: Path, run_name: str, run_config: dict,
                 state: dict | None = None) -> None:
        import wandb

        self._wandb = wandb
        run_id = (state or {}).get("run_id")
        directory = config.dir or os.environ.get("WANDB_DIR") or str(run_dir)
        Path(directory).mkdir(parents=True, exist_ok=True)
        resume = {} if run_id is None else {"id": run_id, "resume": "must" if config.mode == "online" else "allow"}
        self._run = wandb.init(project=config.project, entity=config.entity, mode=config.mode, dir=directory,
                               name=run_name, config=run_config, **resume)
        # online: the step W&B's history continues from (0 for a new run); offline it is always 0
        self._first_step = int(getattr(self._run, "starting_step", 0) or 0)

    def write(self, step: int, row: dict[str, float]) -> None:
        if step >= self._first_step:
            self._run.log(row, step=step)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        if step >= self._first_step and samples:
            table = self._wandb.Table(columns=list(SAMPLE_COLUMNS),
                                      data=[[str(s[c]) if c != "p_current_wins" else s[c] for c in SAMPLE_COLUMNS]
                                            for s in samples])
            self._run.log({"eval/samples": table}, step=step)

    def state(self) -> dict:
        return {"run_id": self._run.id}

    def where(self) -> str:
        if self._run.settings.mode == "offline":
            return f"W&B (offline): wandb sync {Path(self._run.dir).parent}"
        return f"W&B: {self._run.url}"

    def close(self, failed: bool = False) -> None:
        self._run.finish(exit_code=1 if failed else 0)
