"""Pack named tensors into versioned safetensors buckets, and back.

Buckets are bytes because bytes survive every hop intact (Ray's object store, vLLM's
``collective_rpc`` which turns tensors into lists, a socket), and safetensors is the format vLLM's own
loaders read. ``weights_digest`` is computed the same way on both ends of a push so a test or a
health check can assert that the engine holds exactly the learner's tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rollout.records import WeightBucket


def pack_buckets(named_tensors: Iterable[tuple[str, torch.Tensor]], version: int,
                 bucket_bytes: int) -> list[WeightBucket]:
    """Group tensors (in order) into buckets of about ``bucket_bytes``; a larger tensor gets its own."""
    groups: list[dict[str, torch.Tensor]] = []
    current: dict[str, torch.Tensor] = {}
    size = 0
    for name, tensor in named_tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > bucket_bytes:
            groups.append(current)
            current, size = {}, 0
        current[name] = tensor.detach().to("cpu").contiguous()
        size += nbytes
    if current:
        groups.append(current)
    buckets = []
    for index, group in enumerate(groups):
        payload = st_save(group)
        buckets.append(WeightBucket(version=version, index=index, count=len(groups), payload=payload,
                                    sha256=hashlib.sha256(payload).hexdigest(), names=list(group)))
    return buckets


def unpack_bucket(bucket: WeightBucket | bytes) -> dict[str, torch.Tensor]:
    payload = bucket.payload if isinstance(bucket, WeightBucket) else bucket
    if isinstance(bucket, WeightBucket) and bucket.sha256:
        got = hashlib.sha256(payload).hexdigest()
        if got != bucket.sha256:
            raise ValueError(f"weight bucket {bucket.index} of version {bucket.version} is corrupt "
                             f"(sha256 {got[:12]} != {bucket.sha256[:12]})")
    return st_load(payload)


def iter_bucket_tensors(payloads: Iterable[bytes]) -> Iterator[tuple[str, torch.Tensor]]:
    for payload in payloads:
        yield from unpack_bucket(payload).items()


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
