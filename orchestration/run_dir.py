"""The run directory: resolved config, metrics, summary, and the embedded model when one is built."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from orchestration.config import Config, to_yaml
from tasks.errors import InputError


def create_run_dir(config: Config) -> Path:
    path = Path(config.run.output_dir) / config.run.name
    if path.exists() and any(path.iterdir()):
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
