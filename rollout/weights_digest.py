"""A digest of named tensors, computed the same way on both ends of a weight push.

The learner hashes what it sends and every engine what it loads, as the tensors stream (``WeightsDigest``), so a
test or a health check can assert that the engines hold exactly the learner's tensors, whatever the transport.

The hash is xxh3-128: the digest guards against mistakes (a wrong or stale tensor, a partial load), not an
adversary, and both ends hash the whole model on every push. For ~250 MB it takes 0.011 s here, against 0.15 s for
sha256 (with the CPU's SHA instructions), which was a third of a ~66M model's push.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import xxhash


class WeightsDigest:
    """Incremental ``weights_digest``: tensors are hashed as they arrive and only their 16-byte hashes are
    kept, so an engine can check a push while loading it without holding a second copy of the model."""

    def __init__(self) -> None:
        self._parts: dict[str, bytes] = {}

    def add(self, name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach().to("cpu").contiguous()
        h = xxhash.xxh3_128(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # hashed in place, no copy
        self._parts[name] = h.digest()

    def hexdigest(self) -> str:
        h = xxhash.xxh3_128()
        for name in sorted(self._parts):
            h.update(name.encode())
            h.update(self._parts[name])
        return h.hexdigest()


def weights_digest(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """xxh3-128 over every tensor's (name, xxh3-128 of dtype, shape and bytes), in name order."""
    digest = WeightsDigest()
    for name, tensor in named_tensors:
        digest.add(name, tensor)
    return digest.hexdigest()
