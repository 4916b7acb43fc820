"""Weight buckets, the one packing format of every weight transport: many tensors copied into one contiguous
uint8 buffer, described by a small metadata message.

A push is a few large messages, not one per tensor: the broadcast backend broadcasts each buffer, the
shared-memory backend packs it straight into a file in /dev/shm, the object store ``ray.put``s its bytes
(``rollout.records.WeightBucket``). Each tensor starts at an ``ALIGN``-byte offset, so the receiver reinterprets
its slice of the buffer in place (``view(dtype)`` needs an offset that is a multiple of the element size)
without copying. The metadata is msgpack of plain values (names, dtype names, shapes, offsets), sent as bytes
or as a uint8 tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import msgpack
import torch

ALIGN = 64


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in a bucket buffer."""
    name: str
    dtype: str  # torch dtype name without the "torch." prefix
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass
class FlatBucket:
    version: int
    index: int
    entries: list[TensorEntry]
    buffer: torch.Tensor  # uint8, 1-D, exactly the bytes to send (may be a slice of a larger buffer)

    @property
    def nbytes(self) -> int:
        return self.buffer.numel()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown tensor dtype {name!r} in a weight bucket")
    return dtype


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """A flat uint8 view of ``tensor``'s data (a copy only if it is not contiguous)."""
    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8)


def encode_meta(bucket: FlatBucket) -> bytes:
    return msgpack.packb({
        "version": bucket.version, "index": bucket.index, "nbytes": bucket.nbytes,
        "names": [e.name for e in bucket.entries], "dtypes": [e.dtype for e in bucket.entries],
        "shapes": [list(e.shape) for e in bucket.entries], "offsets": [e.offset for e in bucket.entries],
        "sizes": [e.nbytes for e in bucket.entries],
    }, use_bin_type=True)


def decode_meta(data: bytes) -> tuple[int, int, int, list[TensorEntry]]:
    """-> (version, bucket index, buffer bytes, entries)."""
    m = msgpack.unpackb(data, raw=False)
    entries = [TensorEntry(n, d, tuple(s), o, b)
               for n, d, s, o, b in zip(m["names"], m["dtypes"], m["shapes"], m["offsets"], m["sizes"])]
    return m["version"], m["index"], m["nbytes"], entries


def bytes_to_tensor(data: bytes, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)


def tensor_to_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.to("cpu").numpy().tobytes()


def iter_flat_buckets(named_tensors: Iterable[tuple[str, torch.Tensor]], version: int, bucket_bytes: int,
                      device: torch.device | str = "cpu", reuse_buffers: int = 0,
                      pool: list[torch.Tensor] | None = None,
                      allocate: Callable[[int], torch.Tensor] | None = None) -> Iterator[FlatBucket]:
    """Copy tensors, in order, into buckets of at most ``bucket_bytes`` (a larger tensor gets a bucket of its
    own). Each tensor is copied before the next one is requested, so the source may hand out tensors that are
    only valid until then (ZeRO-3 gathered parameters).

    ``reuse_buffers=n`` (n >= 2) cycles through n preallocated buffers: a bucket's buffer is overwritten n
    buckets later, so the caller must be done with it by then (the broadcast sender keeps one in flight).
    ``pool``: a list that keeps those buffers between calls (fresh memory costs a page fault per 4 KiB).
    ``allocate(nbytes)``: where new buffers come from (default: ``torch.empty`` on ``device``)."""
    if bucket_bytes < 1:
        raise ValueError("bucket_bytes must be >= 1")
    if pool is None:
        pool = []
    pool[:] = [b for b in pool if b.numel() == bucket_bytes and b.device.type == torch.device(device).type]
    turn = 0  # pool buffers handed out so far
    index = 0

    if allocate is None:
        def allocate(n: int) -> torch.Tensor:
            return torch.empty(n, dtype=torch.uint8, device=device)

    def new_buffer(size: int) -> torch.Tensor:
        nonlocal turn
        if reuse_buffers >= 2 and size <= bucket_bytes:
            if len(pool) < reuse_buffers:
                pool.append(allocate(bucket_bytes))
            turn += 1
            return pool[(turn - 1) % reuse_buffers]
        return allocate(max(size, 1))

    buffer: torch.Tensor | None = None
    entries: list[TensorEntry] = []
    used = 0

    def flush() -> FlatBucket:
        nonlocal buffer, entries, used, index
        bucket = FlatBucket(version, index, entries, buffer[:used])
        index += 1
        buffer, entries, used = None, [], 0
        return bucket

    for name, tensor in named_tensors:
        data = _as_bytes(tensor)
        nbytes = data.numel()
        start = _aligned(used)
        if entries and start + nbytes > bucket_bytes:
            yield flush()
            start = 0
        if buffer is None:
            buffer = new_buffer(max(bucket_bytes, nbytes))
        buffer[start:start + nbytes].copy_(data)
        entries.append(TensorEntry(name, dtype_name(tensor.dtype), tuple(tensor.shape), start, nbytes))
        used = start + nbytes
    if entries:
        yield flush()


def unflatten(buffer: torch.Tensor, entries: list[TensorEntry]) -> list[tuple[str, torch.Tensor]]:
    """The tensors of a bucket, as views into ``buffer`` (no copy)."""
    out = []
    for e in entries:
        dtype = dtype_from_name(e.dtype)
        piece = buffer[e.offset:e.offset + e.nbytes]
        out.append((e.name, piece.view(dtype).view(e.shape)))
    return out
