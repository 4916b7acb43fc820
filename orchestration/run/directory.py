"""The run directory: resolved config, metrics, summary, and the embedded model when one is built."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from selfplay.orchestration.config.schema import Config

from selfplay.orchestration.config.loading import to_yaml
from selfplay.errors import InputError


ATTEMPTS = "attempts"  # earlier attempts of a run that restarted from nothing (resume=auto, no checkpoint)


def create_run_dir(config: Config) -> Path:
    """The run directory, new; an existing one is replaced only with ``run.overwrite`` (set by the user: selfplay
    never sets it), while one holding only earlier attempts (``attempts/``) is kept with them."""
    path = Path(config.run.output_dir) / config.run.name
    if path.exists() and any(p.name != ATTEMPTS for p in path.iterdir()):
        if not config.run.overwrite:
            raise InputError(f"run directory {path} exists; set run.overwrite=true or another run.name")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
    return path


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def archive_attempt(run_dir: Path) -> Path:
    """Move everything of the run directory but earlier attempts into ``attempts/<N>/`` (N = 1, 2, ...) before
    the run starts again from nothing: the failed attempt's ``error.json``, ``stacks/`` and metrics stay."""
    attempts = run_dir / ATTEMPTS
    number = 1 + max((int(p.name) for p in attempts.iterdir() if p.name.isdigit()), default=0) \
        if attempts.is_dir() else 1
    target = attempts / str(number)
    target.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name != ATTEMPTS:
            shutil.move(str(entry), target / entry.name)
    return target
