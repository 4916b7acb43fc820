"""Resolve the policy model: a user's path (checked before anything starts) or the embedded tiny model."""

from __future__ import annotations

from pathlib import Path

from orchestration.config import Config
from orchestration.errors import InputError


def resolve_policy_model(config: Config, run_dir: Path) -> str:
    path = config.policy.model_path
    if not path:
        from tasks.tiny_model import TinyModelSpec, build_tiny_model_dir
        spec = TinyModelSpec(alphabet_size=config.task.alphabet_size, seed=config.run.seed)
        return str(build_tiny_model_dir(run_dir / "initial_model", spec))
    check_model_path(path)
    return path


def check_model_path(path: str) -> None:
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InputError(f"policy.model_path {path} is a directory without config.json "
                             "(not a Hugging Face model directory)")
        return
    if p.exists() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise InputError(f"policy.model_path {path}: no such model directory")
    # Looks like a hub id: only usable if it is already in the local cache (no downloads at run time here).
    try:
        from transformers import AutoConfig
        AutoConfig.from_pretrained(path)
    except Exception as exc:  # transformers raises several types for a missing/unreachable model
        raise InputError(f"policy.model_path {path}: not a local directory and not loadable from the "
                         f"hub cache ({type(exc).__name__})") from None
