"""Broadcast backend: a torch.distributed group of the learner's rank 0 and every engine worker.

gloo on CPU, NCCL on GPU, the same code: only the backend object and the buffers' device differ. The group
is independent of the default process group (vLLM's worker and DeepSpeed each own one): rank 0 hosts a
``TCPStore`` on a free port, every rank wraps it in a ``PrefixStore`` unique to this group, and builds a
``ProcessGroupGloo`` / ``ProcessGroupNCCL`` backend object directly and calls its ``broadcast``. Nothing is
registered with ``torch.distributed``, so ``dist.is_initialized()`` and the default group are untouched.

Wire format of one push, every message a broadcast from rank 0:
  per bucket: header int64[3] = (version, metadata bytes, data bytes); metadata (msgpack, uint8);
              data (the flat bucket, uint8)
  end:        header (version, 0, 0), or (version, -1, 0) when the sender failed mid-push
The sender packs bucket k+1 while bucket k is in flight (two reused buffers); a receiver's thread receives the
next buckets while its consumer loads one. A receiver whose consumer stops early still drains the push, so the
group stays in step; a push of the wrong version is drained, then refused.

Aborting a push. A member that dies mid-push fails only the collectives that talk to it directly; the others
(the learner waiting on a live receiver that waits on the dead one) would wait out the group's timeout. So every
wait of a member also watches the group's abort key in the store (``abort_transport`` sets it: the controller,
once it sees any member's call fail), and raises ``PushAborted`` within ``ABORT_POLL_S`` of it; the group is then
broken and rebuilt.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from selfplay.rollout.transport.base import PushStats, resolve_backend
from selfplay.rollout.transport.buckets import (bytes_to_tensor, decode_meta, encode_meta, iter_flat_buckets,
                                       tensor_to_bytes, unflatten)


PREFETCH = 2  # buckets a receiver may hold ahead of its consumer
ABORT_POLL_S = 0.1  # how often a waiting member looks at the group's abort key
_ABORT = -1  # metadata length of the header that ends a push the sender could not finish


def _header(version: int, meta_len: int, data_len: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([version, meta_len, data_len], dtype=torch.int64, device=device)


def _device(backend: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


class PushAborted(RuntimeError):
    """The group's abort key was set (or its store is gone): a member died, the push will not complete."""


def abort_key(group: str) -> str:
    return f"selfplay/weights/abort/{group}"


def abort_transport(endpoint: dict | None, timeout_s: float = 5.0) -> None:
    """Tell every member of the group(s) behind ``endpoint`` to give up the push under way: each one's next wait
    raises ``PushAborted``. Best effort: a store that does not answer (its learner died) aborts the members by
    itself. An endpoint without a group (the object store) has nothing to abort."""
    if not endpoint:
        return
    for part in (endpoint.get("parts") or {}).values():  # the mixed transport: one group per part
        abort_transport(part, timeout_s)
    if "port" not in endpoint:
        return
    try:
        store = dist.TCPStore(endpoint["host"], endpoint["port"], is_master=False,
                              timeout=timedelta(seconds=timeout_s))
        store.set(abort_key(endpoint["group"]), "1")
    except Exception:  # noqa: BLE001 - the learner's store is gone: its members fail on their own
        pass


class BroadcastGroup:
    """One rank of an independent group (broadcasts from rank 0), also the shared-memory backend's
    control channel."""

    def __init__(self, store: dist.Store, group: str, rank: int, world_size: int, backend: str,
                 timeout: timedelta) -> None:
        self.backend = backend
        self.device = _device(backend)
        self.broken = False
        self._store, self._abort_key = store, abort_key(group)
        prefix = dist.PrefixStore(f"selfplay/weights/{group}/", store)
        if backend == "gloo":
            self._pg = dist.ProcessGroupGloo(prefix, rank, world_size, timeout)
        else:
            from torch.distributed import ProcessGroupNCCL

            options = ProcessGroupNCCL.Options()
            options._timeout = timeout
            self._pg = ProcessGroupNCCL(prefix, rank, world_size, options)
        if hasattr(self._pg, "_set_sequence_number_for_group"):
            self._pg._set_sequence_number_for_group()
        if backend == "nccl" and hasattr(self._pg, "eager_connect_single_device"):
            self._pg.eager_connect_single_device(self.device)  # join now, not at the first broadcast

    def broadcast(self, tensor: torch.Tensor, async_op: bool = False):
        options = dist.BroadcastOptions()
        options.rootRank = 0
        options.rootTensor = 0
        return self._run(lambda: self._pg.broadcast([tensor], options), async_op)

    def allreduce(self, tensor: torch.Tensor, async_op: bool = False):
        """A sum over every rank; the shared-memory backend's "the last push is done with" signal."""
        return self._run(lambda: self._pg.allreduce([tensor], dist.AllreduceOptions()), async_op)

    def _run(self, start, async_op: bool):
        """Start a collective; wait for it unless ``async_op`` (then return its work). A failure marks the
        group broken: its peers are out of step, so nobody may wait on it again."""
        try:
            work = start()
            if async_op:
                return work
            self._await(work)
        except BaseException:
            self.broken = True
            raise
        return None

    def wait(self, work) -> None:
        try:
            self._await(work)
        except BaseException:
            self.broken = True
            raise

    def _await(self, work) -> None:
        """``work.wait()``, looking at the abort key every ``ABORT_POLL_S`` meanwhile. gloo's work waits on a
        condition with a timeout (no added latency); NCCL's blocking wait with a timeout would abort the
        communicator, so there the work's completion is polled instead."""
        while True:
            if self.backend == "gloo":
                try:
                    work.wait(timedelta(seconds=ABORT_POLL_S))
                    return
                except RuntimeError:
                    # The poll's timeout, or the collective's own error (its peer gone, gloo's timeout). A work that
                    # completed between the timeout and this check may have succeeded: its own wait says which
                    # (returns, or raises the collective's error); re-raising the poll's timeout failed a good push.
                    if work.is_completed():
                        work.wait()
                        return
            else:
                until = time.monotonic() + ABORT_POLL_S
                while time.monotonic() < until:
                    if work.is_completed():
                        work.wait()  # raises the collective's own error, if it had one
                        return
                    time.sleep(0.0005)
            self._check_abort()

    def _check_abort(self) -> None:
        try:
            aborted = self._store.check([self._abort_key])
        except Exception as exc:  # noqa: BLE001 - the store lives in the learner: gone with it
            raise PushAborted(f"the weight transport's store is gone ({type(exc).__name__}): its learner "
                              "died") from exc
        if aborted:
            raise PushAborted("weight push aborted: a member of the transport group died (its peers would wait "
                              "out the collective timeout)")

    def shutdown(self) -> None:
        pg, self._pg = self._pg, None
        if pg is not None and self.broken and self.backend == "nccl" and hasattr(pg, "abort"):
            pg.abort()  # an aborted push left NCCL work pending: a clean shutdown would wait for it
        elif pg is not None and hasattr(pg, "shutdown"):
            try:
                pg.shutdown()
            except Exception:  # noqa: BLE001 - best effort when the peers are gone
                pass


def join_group(endpoint: dict, rank: int) -> tuple[dist.TCPStore, BroadcastGroup]:
    """A receiver's side of ``endpoint`` (from a sender's ``open``): the store client and its group rank."""
    if not 1 <= rank < endpoint["world_size"]:
        raise ValueError(f"receiver rank {rank} outside 1..{endpoint['world_size'] - 1}")
    timeout = timedelta(seconds=endpoint["timeout_s"])
    store = dist.TCPStore(endpoint["host"], endpoint["port"], is_master=False, timeout=timeout)
    return store, BroadcastGroup(store, endpoint["group"], rank, endpoint["world_size"], endpoint["backend"],
                                 timeout)


class BroadcastSender:
    name: ClassVar[str] = "broadcast"
    streaming: ClassVar[bool] = True

    def __init__(self, bucket_bytes: int, timeout_s: float = 600.0, backend: str = "auto") -> None:
        self.bucket_bytes = bucket_bytes
        self.timeout = timedelta(seconds=timeout_s)
        self.backend = resolve_backend(backend)
        self._store: dist.TCPStore | None = None
        self._endpoint: dict | None = None
        self._group: BroadcastGroup | None = None
        self._pool: list[torch.Tensor] = []  # the two bucket buffers, kept between pushes

    def open(self, num_receivers: int, host: str = "127.0.0.1") -> dict:
        if num_receivers < 1:
            raise ValueError("a broadcast push needs at least one receiver")
        self.close()
        self._store = dist.TCPStore(host, 0, is_master=True, wait_for_workers=False, timeout=self.timeout)
        self._endpoint = {"kind": self.name, "host": host, "port": self._store.port,
                          "world_size": num_receivers + 1, "backend": self.backend, "group": uuid.uuid4().hex,
                          "timeout_s": self.timeout.total_seconds()}
        return dict(self._endpoint)

    def connect(self) -> None:
        if self._endpoint is None:
            raise RuntimeError("open() the broadcast transport before connecting")
        e = self._endpoint
        self._group = BroadcastGroup(self._store, e["group"], 0, e["world_size"], e["backend"], self.timeout)

    def send(self, version: int, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> PushStats:
        group = self._group
        if group is None:
            raise RuntimeError("connect() the broadcast transport before sending")
        device = group.device
        start = time.perf_counter()
        total = buckets = tensors = 0
        pending = None
        try:
            for bucket in iter_flat_buckets(named_tensors, version, self.bucket_bytes, device, reuse_buffers=2,
                                            pool=self._pool):
                if pending is not None:
                    group.wait(pending)  # bucket k-1 has left; its buffer may be reused for bucket k+1
                    pending = None
                meta = bytes_to_tensor(encode_meta(bucket), device)
                group.broadcast(_header(version, meta.numel(), bucket.nbytes, device))
                group.broadcast(meta)
                if bucket.nbytes:
                    pending = group.broadcast(bucket.buffer, async_op=True)
                total += bucket.nbytes
                buckets += 1
                tensors += len(bucket.entries)
            if pending is not None:
                group.wait(pending)
        except BaseException:
            if not group.broken:  # e.g. the parameters could not be gathered: tell the receivers
                if pending is not None:
                    group.wait(pending)
                group.broadcast(_header(version, _ABORT, 0, device))
            raise
        group.broadcast(_header(version, 0, 0, device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return PushStats(version=version, backend=f"{self.name}/{group.backend}",
                         seconds=time.perf_counter() - start, bytes=total, buckets=buckets, tensors=tensors)

    def close(self) -> None:
        if self._group is not None:
            self._group.shutdown()
        self._group, self._store, self._endpoint, self._pool = None, None, None, []


class BroadcastReceiver:
    name: ClassVar[str] = "broadcast"

    def __init__(self) -> None:
        self._group: BroadcastGroup | None = None
        self._store: dist.TCPStore | None = None
        # CPU: the last push's bucket buffers, reused by the next one (fresh memory costs a page fault per
        # 4 KiB, about as much as the transfer). CUDA's caching allocator reuses memory by itself.
        self._buffers: list[torch.Tensor] = []

    def connect(self, endpoint: dict, rank: int) -> None:
        self.close()
        self._store, self._group = join_group(endpoint, rank)

    def fetch(self, source: Any) -> None:
        return None  # everything arrives through the group

    def receive(self, version: int, fetched: Any = None) -> Iterator[tuple[str, torch.Tensor]]:
        """The push's tensors, as views into each bucket's buffer: valid until the next ``receive`` starts
        (it reuses the buffers), so copy what you keep. A background thread receives up to ``PREFETCH``
        buckets ahead, so the network overlaps the consumer's loading. If the consumer stops early, the rest
        of the push is still received (and dropped), so the sender is not left waiting."""
        group = self._group
        if group is None:
            raise RuntimeError("connect() the broadcast transport before receiving")
        buckets: queue.Queue = queue.Queue(maxsize=PREFETCH)
        thread = threading.Thread(target=self._receive_all, args=(group, buckets, self._buffers), daemon=True,
                                  name="selfplay-weight-receive")
        thread.start()
        got_version = version
        finished = False
        try:
            while True:
                item = buckets.get()
                if item is None:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                sent_version, entries, data = item
                if sent_version != version:
                    got_version = sent_version
                    continue
                yield from unflatten(data, entries)
        finally:
            while not finished:  # the consumer stopped early: let the thread finish the push
                item = buckets.get()
                finished = item is None or isinstance(item, BaseException)
            thread.join()
        if got_version != version:
            raise ValueError(f"expected weight push version {version}, the learner sent version {got_version}")

    @staticmethod
    def _receive_all(group: BroadcastGroup, out: queue.Queue, buffers: list[torch.Tensor]) -> None:
        """Every bucket of one push into ``out`` as (version, entries, buffer); then None, or the exception.
        On CPU, bucket i lands in ``buffers[i]`` when it is large enough, and ``buffers`` ends up holding this
        push's buffers."""
        previous, buffers[:] = list(buffers), []
        try:
            if group.device.type == "cuda":
                torch.cuda.set_device(group.device)
            device = group.device
            while True:
                header = torch.empty(3, dtype=torch.int64, device=device)
                group.broadcast(header)
                sent_version, meta_len, data_len = header.tolist()
                if meta_len == _ABORT:
                    raise RuntimeError(f"the learner aborted weight push {sent_version}")
                if meta_len == 0:
                    out.put(None)
                    return
                meta = torch.empty(meta_len, dtype=torch.uint8, device=device)
                group.broadcast(meta)
                _, _, _, entries = decode_meta(tensor_to_bytes(meta))
                index = len(buffers)
                if device.type == "cpu" and index < len(previous) and previous[index].numel() >= data_len:
                    buffer = previous[index]
                else:
                    buffer = torch.empty(data_len, dtype=torch.uint8, device=device)
                if device.type == "cpu":
                    buffers.append(buffer)
                data = buffer[:data_len]
                if data_len:
                    group.broadcast(data)
                    if device.type == "cuda":  # the consumer may read it on another stream, in another thread
                        torch.cuda.current_stream(device).synchronize()
                out.put((sent_version, entries, data))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            out.put(exc)

    def close(self) -> None:
        if self._group is not None:
            self._group.shutdown()
        self._group = None
        self._store = None
