"""Shared-memory backend: engines on the learner's node read each bucket where the learner packed it.

The CPU sibling of CUDA IPC. Bucket i of a push is packed straight into file i in ``/dev/shm`` (kept and
reused by later pushes); a small gloo group (the broadcast backend's ``BroadcastGroup``) tells the receivers
which file, version and tensor layout each bucket has. A receiver maps each file once and hands out views
into it, so a push costs one copy on the sender (packing) and one on each engine (its in-place load) instead
of a socket transfer, and the engines share one copy of the bytes instead of holding one each.

The views stay valid until the next push starts, as the broadcast backend's do: vLLM's layerwise reload
keeps references to some incoming tensors until the whole push has arrived. So a push begins with a
one-element all-reduce that every receiver joins when its ``receive`` starts (it is done with the previous
push), and only then does the sender overwrite the files. It also ends with one, joined once a receiver has
mapped every file the push named (aborted or not); the sender then unlinks the files it made during the push.
The memory lives on in the mappings (later pushes reuse them by slot), so a file exists only while a push is
under way, and one left by a learner killed mid-push carries its pid and is removed by the next sender or the
driver's reaper (``rollout.transport.shm_files``).

Same node only: the endpoint names the learner's host, and a receiver elsewhere refuses to connect.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import torch
import torch.distributed as dist

from selfplay.rollout.transport.base import PushStats
from selfplay.rollout.transport.broadcast import BroadcastGroup, join_group
from selfplay.rollout.transport.buckets import (bytes_to_tensor, decode_meta, encode_meta, iter_flat_buckets,
                                       tensor_to_bytes, unflatten)
from selfplay.rollout.transport.shm_files import SHM_DIR, remove_orphans, shm_file

_ABORT = -1
_ABORTED = {"aborted": True}  # what ``SharedMemoryReceiver._next`` returns for an aborted push


def _header(version: int, meta_len: int) -> torch.Tensor:
    return torch.tensor([version, meta_len], dtype=torch.int64)


def _map(path: str, nbytes: int) -> torch.Tensor:
    return torch.from_file(path, shared=True, size=nbytes, dtype=torch.uint8)


class SharedMemorySender:
    name: ClassVar[str] = "shared_memory"
    streaming: ClassVar[bool] = True

    def __init__(self, bucket_bytes: int, timeout_s: float = 600.0, backend: str = "auto") -> None:
        self.bucket_bytes = bucket_bytes
        self.timeout = timedelta(seconds=timeout_s)
        self._store: dist.TCPStore | None = None
        self._endpoint: dict | None = None
        self._group: BroadcastGroup | None = None
        self._slots: list[tuple[Path, torch.Tensor]] = []  # bucket i of every push is packed into slot i
        self._used = 0  # slots handed out in the current push
        self._created = 0
        self._unannounced: set[Path] = set()  # created, not yet named to the receivers
        self._announced: list[Path] = []      # named in this push: unlinked once every receiver has mapped them

    def open(self, num_receivers: int, host: str = "127.0.0.1") -> dict:
        if num_receivers < 1:
            raise ValueError("a shared-memory push needs at least one receiver")
        if not SHM_DIR.is_dir():
            raise RuntimeError(f"the shared_memory weight transport needs {SHM_DIR} (Linux): use "
                               "sync.transport=broadcast")
        self.close()
        remove_orphans()  # left by a learner killed mid-push
        self._store = dist.TCPStore(host, 0, is_master=True, wait_for_workers=False, timeout=self.timeout)
        self._endpoint = {"kind": self.name, "host": host, "port": self._store.port, "node": socket.gethostname(),
                          "world_size": num_receivers + 1, "group": uuid.uuid4().hex, "backend": "gloo",
                          "timeout_s": self.timeout.total_seconds()}
        return dict(self._endpoint)

    def connect(self) -> None:
        if self._endpoint is None:
            raise RuntimeError("open() the shared_memory transport before connecting")
        e = self._endpoint
        self._group = BroadcastGroup(self._store, e["group"], 0, e["world_size"], e["backend"], self.timeout)

    def _slot(self, nbytes: int) -> torch.Tensor:
        """The buffer of the push's next bucket: the slot of that index, replaced if it is too small."""
        index, self._used = self._used, self._used + 1
        if index < len(self._slots) and self._slots[index][1].numel() >= nbytes:
            return self._slots[index][1]
        free = os.statvfs(SHM_DIR).f_bavail * os.statvfs(SHM_DIR).f_frsize
        if free < nbytes:  # writing past what tmpfs can hold would kill this process with SIGBUS
            raise RuntimeError(f"{SHM_DIR} has {free / 2**20:.0f} MiB free, the weight push needs "
                               f"{nbytes / 2**20:.0f} MiB more: enlarge it (docker --shm-size) or use "
                               "sync.transport=broadcast")
        path = shm_file(self._endpoint["group"], self._created)
        self._created += 1
        with open(path, "wb") as f:
            f.truncate(nbytes)
        self._unannounced.add(path)
        slot = (path, _map(str(path), nbytes))
        if index < len(self._slots):
            self._slots[index] = slot  # receivers drop their mapping of the old one at the push's end
        else:
            self._slots.append(slot)
        return slot[1]

    def send(self, version: int, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> PushStats:
        group = self._group
        if group is None:
            raise RuntimeError("connect() the shared_memory transport before sending")
        start = time.perf_counter()
        group.allreduce(torch.zeros(1, dtype=torch.int64))  # every receiver is done with the last push
        self._used = 0
        total = buckets = tensors = 0
        try:
            for bucket in iter_flat_buckets(named_tensors, version, self.bucket_bytes, allocate=self._slot):
                path = self._slots[bucket.index][0]
                meta = bytes_to_tensor(msgpack.packb({"path": str(path), "bucket": encode_meta(bucket)}))
                group.broadcast(_header(version, meta.numel()))
                group.broadcast(meta)
                if path in self._unannounced:
                    self._unannounced.discard(path)
                    self._announced.append(path)
                total += bucket.nbytes
                buckets += 1
                tensors += len(bucket.entries)
        except BaseException:
            if not group.broken:
                try:
                    group.broadcast(_header(version, _ABORT))
                    self._release(group)
                except Exception:  # the push's own error is the one to report
                    pass
            raise
        group.broadcast(_header(version, 0))
        self._release(group)
        return PushStats(version=version, backend=self.name, seconds=time.perf_counter() - start, bytes=total,
                         buckets=buckets, tensors=tensors)

    def _release(self, group: BroadcastGroup) -> None:
        """Every receiver has mapped the files this push named: unlink them (the mappings keep the memory)."""
        group.allreduce(torch.zeros(1, dtype=torch.int64))
        self._unlink(self._announced)

    @staticmethod
    def _unlink(paths) -> None:
        for path in list(paths):
            path.unlink(missing_ok=True)
        paths.clear()

    def close(self) -> None:
        if self._group is not None:
            self._group.shutdown()
        self._unlink(self._announced)
        self._unlink(self._unannounced)
        self._group, self._store, self._endpoint, self._slots, self._used = None, None, None, [], 0


class SharedMemoryReceiver:
    name: ClassVar[str] = "shared_memory"

    def __init__(self) -> None:
        self._group: BroadcastGroup | None = None
        self._store: dist.TCPStore | None = None
        self._maps: dict[int, tuple[str, torch.Tensor]] = {}  # slot index -> (its file, the mapping)

    def connect(self, endpoint: dict, rank: int) -> None:
        if endpoint["node"] != socket.gethostname():
            raise RuntimeError(f"the shared_memory weight transport needs every engine on the learner's host "
                               f"({endpoint['node']}), this one is on {socket.gethostname()}: use "
                               "sync.transport=broadcast")
        self.close()
        self._store, self._group = join_group(endpoint, rank)

    def fetch(self, source: Any) -> None:
        return None  # the group says where each bucket is

    def receive(self, version: int, fetched: Any = None) -> Iterator[tuple[str, torch.Tensor]]:
        """The push's tensors as views into the sender's files, valid until the next ``receive`` starts. If
        the consumer stops early, the rest of the push is still read (and dropped)."""
        group = self._group
        if group is None:
            raise RuntimeError("connect() the shared_memory transport before receiving")
        group.allreduce(torch.zeros(1, dtype=torch.int64))  # done with the last push: the sender may write
        got_version, end = version, None  # end: None while the push goes on, then its last message
        try:
            while True:
                sent_version, message = self._next(group)
                if message is None or message is _ABORTED:
                    end = message or {}
                    break
                buffer, entries = self._bucket(message)
                if sent_version != version:
                    got_version = sent_version
                    continue
                yield from unflatten(buffer, entries)
        finally:
            while end is None and not group.broken:  # the consumer stopped early: read the rest of the push
                sent_version, message = self._next(group)
                if message is None or message is _ABORTED:
                    end = message or {}
                else:
                    self._bucket(message)  # mapped even so: the sender unlinks the files at the push's end
            if end is not None and not group.broken:
                group.allreduce(torch.zeros(1, dtype=torch.int64))  # every file of the push is mapped
        if end is _ABORTED:
            raise RuntimeError(f"the learner aborted weight push {sent_version}")
        if got_version != version:
            raise ValueError(f"expected weight push version {version}, the learner sent version {got_version}")

    @staticmethod
    def _next(group: BroadcastGroup) -> tuple[int, dict | None]:
        """(version, the next bucket's message), (version, None) at the end of the push, or (version,
        ``_ABORTED``) when the sender gave up on it."""
        header = torch.empty(2, dtype=torch.int64)
        group.broadcast(header)
        sent_version, meta_len = header.tolist()
        if meta_len == _ABORT:
            return sent_version, _ABORTED
        if meta_len == 0:
            return sent_version, None
        meta = torch.empty(meta_len, dtype=torch.uint8)
        group.broadcast(meta)
        return sent_version, msgpack.unpackb(tensor_to_bytes(meta))

    def _bucket(self, message: dict) -> tuple[torch.Tensor, list]:
        """The bucket's bytes (its slot's file, mapped when first named or when the sender replaced it) and
        its tensor entries."""
        _, index, nbytes, entries = decode_meta(message["bucket"])
        path = message["path"]
        if self._maps.get(index, ("",))[0] != path:
            self._maps[index] = (path, _map(path, os.path.getsize(path)))
        return self._maps[index][1][:nbytes], entries

    def close(self) -> None:
        if self._group is not None:
            self._group.shutdown()
        self._group, self._store, self._maps = None, None, {}
