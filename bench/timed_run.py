"""One selfplay run for a benchmark: the real loop (``launch.prepare``), no evaluation or checkpoints, timed
from its first step to its last. Shared by the benchmarks in this folder (run as ``python bench/NAME.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.commands.launch import prepare


def timed_run(name: str, out: str, overrides: list[str], on_start: Callable[[], None] | None = None
              ) -> tuple[dict, float, list[dict]]:
    """(summary, seconds of the loop, metrics rows) of run ``name`` under ``out``; ``on_start`` is called as the
    loop starts (after the actors are up)."""
    config = load_config(None, [f"run.output_dir={out}", f"run.name={name}", "eval.every_steps=0",
                                "checkpoint.every_steps=0", "checkpoint.at_end=false", "run.log_every=1000",
                                *overrides])
    controller = prepare(config)
    try:
        if on_start is not None:
            on_start()
        start = time.perf_counter()
        summary = controller.run()
        seconds = time.perf_counter() - start
    finally:
        controller.shutdown()
    rows = [json.loads(line) for line in (controller.run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, seconds, rows
