"""Object-store backend: the flat buckets (``rollout.transport.buckets``) as bytes through Ray's object store.

The learner ``ray.put``s each bucket (a ``rollout.records.WeightBucket``: the buffer's bytes, its metadata and
their checksum) and returns the ObjectRefs in ``PushStats.handle``; each rollout actor fetches them (``fetch``:
the bytes, in its own process) and its engine loads them (``receive``). No group and no collective: the send
returns as soon as the buckets are in the learner's object store, and receivers may run later. Works wherever
Ray does, across nodes, with any number of receivers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
import xxhash

from selfplay.rollout.records import WeightBucket
from selfplay.rollout.transport.base import PushStats
from selfplay.rollout.transport.buckets import (bytes_to_tensor, decode_meta, encode_meta, iter_flat_buckets,
                                       tensor_to_bytes, unflatten)


def _checksum(meta: bytes, payload: bytes) -> str:
    """xxh3-128 of a bucket's metadata and bytes: a check against corruption in transit, as fast as a memcpy
    (``rollout/weights_digest.py`` says why not sha256)."""
    h = xxhash.xxh3_128(meta)
    h.update(payload)
    return h.hexdigest()


def pack_records(named_tensors: Iterable[tuple[str, torch.Tensor]], version: int,
                 bucket_bytes: int) -> list[WeightBucket]:
    """The push as bucket records, in order (what ``send`` puts in the object store)."""
    packed = []
    # two buffers, alternating: each bucket is copied out as bytes before the next is packed
    for bucket in iter_flat_buckets(named_tensors, version, bucket_bytes, reuse_buffers=2):
        packed.append((encode_meta(bucket), tensor_to_bytes(bucket.buffer)))
    return [WeightBucket(version=version, index=index, count=len(packed), payload=payload, meta=meta,
                         checksum=_checksum(meta, payload)) for index, (meta, payload) in enumerate(packed)]


class ObjectStoreSender:
    name: ClassVar[str] = "object_store"
    streaming: ClassVar[bool] = False  # the learner hands it CPU copies: the buckets' bytes end on the CPU anyway

    def __init__(self, bucket_bytes: int, timeout_s: float = 600.0, backend: str = "auto") -> None:
        self.bucket_bytes = bucket_bytes

    def open(self, num_receivers: int, host: str = "") -> dict:
        return {"kind": self.name}

    def connect(self) -> None:
        pass

    def send(self, version: int, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> PushStats:
        import ray

        start = time.perf_counter()
        buckets = pack_records(named_tensors, version, self.bucket_bytes)
        refs = [ray.put(b) for b in buckets]
        return PushStats(version=version, backend=self.name, seconds=time.perf_counter() - start,
                         bytes=sum(len(b.payload) for b in buckets), buckets=len(buckets),
                         tensors=sum(len(decode_meta(b.meta)[3]) for b in buckets), handle=refs)

    def close(self) -> None:
        pass


class ObjectStoreReceiver:
    name: ClassVar[str] = "object_store"

    def connect(self, endpoint: dict, rank: int) -> None:
        pass

    def fetch(self, source: Any) -> list[dict]:
        """``source``: ``[send_ref]`` (the learner's ``send_weights`` ObjectRef, wrapped so Ray does not resolve
        it first), a PushStats, or a list of WeightBuckets / their ObjectRefs. Returns plain dicts (they cross
        vLLM's ``collective_rpc``)."""
        import ray

        if isinstance(source, list) and len(source) == 1 and isinstance(source[0], ray.ObjectRef):
            source = ray.get(source[0])
        if isinstance(source, PushStats):
            source = source.handle
        if source is None:
            raise ValueError("the object-store transport needs the sender's result to receive a push")
        refs = [i for i, item in enumerate(source) if isinstance(item, ray.ObjectRef)]
        items = list(source)
        if refs:  # (ray.get, even of nothing, would start a Ray session where none is wanted)
            for i, bucket in zip(refs, ray.get([items[i] for i in refs])):
                items[i] = bucket
        return [{"version": b.version, "index": b.index, "count": b.count, "checksum": b.checksum,
                 "meta": b.meta, "payload": b.payload} for b in sorted(items, key=lambda b: b.index)]

    def receive(self, version: int, fetched: list[dict]) -> Iterator[tuple[str, torch.Tensor]]:
        versions = {b["version"] for b in fetched}
        if versions != {version}:
            raise ValueError(f"expected weight push version {version}, got buckets of versions {sorted(versions)}")
        if not fetched or [b["index"] for b in fetched] != list(range(fetched[0]["count"])):
            raise ValueError(f"weight push {version} is incomplete: buckets {[b['index'] for b in fetched]}")
        for b in fetched:
            if b["checksum"] and _checksum(b["meta"], b["payload"]) != b["checksum"]:
                raise ValueError(f"weight bucket {b['index']} of version {version} is corrupt")
            _, _, _, entries = decode_meta(b["meta"])
            yield from unflatten(bytes_to_tensor(b["payload"]), entries)

    def close(self) -> None:
        pass

