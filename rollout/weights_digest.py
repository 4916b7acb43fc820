"""A digest of named tensors, computed the same way on both ends of a weight push.

The learner hashes what it sends and every engine what it loads, as the tensors stream (``WeightsDigest``), so a
test or a health check can assert that the engines hold exactly the learner's tensors, whatever the transport.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


class WeightsDigest:
    """Incremental ``weights_digest``: tensors are hashed as they arrive and only their 32-byte hashes are
    kept, so an engine can check a push while loading it without holding a second copy of the model."""

    def __init__(self) -> None:
        self._parts: dict[str, bytes] = {}

    def add(self, name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach().to("cpu").contiguous()
        h = hashlib.sha256(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # hashed in place, no copy
        self._parts[name] = h.digest()

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self._parts):
            h.update(name.encode())
            h.update(self._parts[name])
        return h.hexdigest()


def weights_digest(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over every tensor's (name, sha256 of dtype, shape and bytes), in name order."""
    digest = WeightsDigest()
    for name, tensor in named_tensors:
        digest.add(name, tensor)
    return digest.hexdigest()
