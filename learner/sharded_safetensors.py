"""Weights written as Hugging Face writes them (``save_pretrained``): safetensors shards of at most
``max_shard_bytes`` and a ``model.safetensors.index.json`` naming each tensor's shard, or one ``model.safetensors``
when the weights fit in one shard. Tensors arrive one at a time and only the shard being filled is held, so a 7B
model is never whole in host memory."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

INDEX = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 1024**3  # transformers' max_shard_size default


def write_sharded(named_tensors: Iterable[tuple[str, torch.Tensor]], out_dir: Path,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[str]:
    """Write the tensors into ``out_dir``; returns the file names written (shards, then the index if any)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[list[str]] = []
    weight_map: dict[str, int] = {}
    pending: dict[str, torch.Tensor] = {}
    pending_bytes = total = 0

    def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            number = len(shards)
            save_file(pending, str(out_dir / f".shard-{number}.tmp"), metadata={"format": "pt"})
            shards.append(list(pending))
            weight_map.update({name: number for name in pending})
            pending, pending_bytes = {}, 0

    for name, tensor in named_tensors:
        size = tensor.numel() * tensor.element_size()
        if pending and pending_bytes + size > max_shard_bytes:
            flush()
        pending[name] = tensor.contiguous()
        pending_bytes += size
        total += size
    flush()
    count = len(shards)
    names = ["model.safetensors"] if count == 1 else \
        [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    for i, name in enumerate(names):
        (out_dir / f".shard-{i}.tmp").rename(out_dir / name)
    if count > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": {tensor: names[shard] for tensor, shard in sorted(weight_map.items())}}
        (out_dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        names.append(INDEX)
    return names


class ShardedTensors:
    """The tensors of safetensors ``files``, each read from its file only when asked for (one at a time, so loading
    a 7B reference never holds it whole)."""

    def __init__(self, files: list[Path]) -> None:
        from safetensors import safe_open

        self._file: dict[str, Path] = {}
        for f in files:
            with safe_open(str(f), "pt") as handle:
                self._file.update({name: f for name in handle.keys()})

    @classmethod
    def in_directory(cls, directory: Path) -> ShardedTensors:
        """What ``write_sharded`` wrote into ``directory``."""
        index = directory / INDEX
        names = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
            else ["model.safetensors"]
        return cls([directory / name for name in names])

    def keys(self) -> set[str]:
        return set(self._file)

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self._file[name]), "pt") as handle:
            return handle.get_tensor(name)


def read_sharded(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor ``write_sharded`` wrote into ``directory``, at once."""
    tensors = ShardedTensors.in_directory(directory)
    return {name: tensors[name] for name in sorted(tensors.keys())}
