"""The weight-transport interface: the steps of a push on the learner side and on each engine's side.

A push moves the learner's full parameters (HF names) to every rollout engine as one numbered version.

Sender (learner rank 0)                        Receiver (each rollout engine's worker)
  open(num_receivers, host) -> endpoint          (the controller hands it the endpoint and a rank 1..n)
  connect()          <- collective ->            connect(endpoint, rank)
  send(version, named_tensors) -> PushStats      fetch(source) -> fetched   (in the engine's host process)
                     <- collective ->            receive(version, fetched) -> iterator of (name, tensor)
  close()                                        close()

``connect`` and ``send``/``receive`` are collectives for the broadcast backend: every side must be running its
step at the same time, and none returns before the others have started. See ``actors/weight_transport.py``
for the calling order through Ray. ``fetch`` runs where Ray is reachable (the rollout actor) and turns what
the controller passed along (for the object store: the send's result) into plain data the receive step can
use inside an engine's worker process; for the broadcast backend it returns None.
"""

from __future__ import annotations

import os

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch


@dataclass
class PushStats:
    """What one push cost on the sending side. ``handle`` is what receivers need beyond the group
    (object store: the ObjectRefs of the buckets); it is not a metric."""
    version: int
    backend: str
    seconds: float
    bytes: int
    buckets: int
    tensors: int
    handle: Any = field(default=None, repr=False)
    digest: str = ""  # of the tensors sent (``rollout.weights_digest.WeightsDigest``), "" if not computed

    def as_dict(self) -> dict:
        return {"version": self.version, "backend": self.backend, "seconds": self.seconds, "bytes": self.bytes,
                "buckets": self.buckets, "tensors": self.tensors, "digest": self.digest}


class WeightSender(Protocol):
    name: ClassVar[str]
    # True: ``send`` copies each tensor before it asks for the next, so the learner may pass ephemeral
    # on-device tensors (ZeRO-3 gathered parameters); False: pass stable CPU copies.
    streaming: ClassVar[bool]

    def open(self, num_receivers: int, host: str) -> dict:
        """Prepare the topology; returns the endpoint (plain dict) every receiver connects with."""
        ...

    def connect(self) -> None:
        """Join the group as rank 0 (blocks until every receiver has connected)."""
        ...

    def send(self, version: int, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> PushStats:
        """Push every tensor as ``version``; returns after the last bucket has left (broadcast: arrived)."""
        ...

    def close(self) -> None:
        ...


class WeightReceiver(Protocol):
    name: ClassVar[str]

    def connect(self, endpoint: dict, rank: int) -> None:
        """Join the sender's group as ``rank`` (1..num_receivers)."""
        ...

    def fetch(self, source: Any) -> Any:
        """In the engine's host process: turn ``source`` into what ``receive`` takes (plain, picklable)."""
        ...

    def receive(self, version: int, fetched: Any) -> Iterator[tuple[str, torch.Tensor]]:
        """The pushed tensors, one at a time; raises if the push was not ``version`` (after draining it).
        They may be views into buffers the next ``receive`` reuses: copy what must outlive the push."""
        ...

    def close(self) -> None:
        ...


DISTRIBUTED_BACKENDS = ("auto", "gloo", "nccl")


def resolve_backend(name: str = "auto") -> str:
    """The torch.distributed backend for ``name``, resolved where it runs: "auto" is NCCL when CUDA is available,
    else gloo. The one place this rule lives: the learner's ranks and the broadcast transport both use it."""
    if name not in DISTRIBUTED_BACKENDS:
        raise ValueError(f"unknown torch.distributed backend {name!r} (valid: {', '.join(DISTRIBUTED_BACKENDS)})")
    if name == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return name


def choose_transport(requested: str, engines_local: list[bool], engines_on_gpu: bool,
                     shm_dir: str = "/dev/shm") -> str:
    """The weight transport for ``sync.transport=requested``, given whether each engine runs on learner rank 0's
    node. ``auto`` is chosen per engine: shared memory for a CPU engine on the learner's node (two memory copies
    instead of a socket transfer), the broadcast for one elsewhere (it crosses nodes). So ``auto`` is
    ``shared_memory`` when every engine is local, ``broadcast`` when none is, and ``mixed`` in between. On GPUs the
    broadcast is NCCL, which beats a trip through host memory, so GPU engines always get the broadcast."""
    if requested != "auto":
        return requested
    if engines_on_gpu or not os.path.isdir(shm_dir) or not any(engines_local):
        return "broadcast"
    return "shared_memory" if all(engines_local) else "mixed"


_BACKENDS: dict[str, tuple[str, str, str]] = {
    "object_store": ("selfplay.rollout.transport.object_store", "ObjectStoreSender", "ObjectStoreReceiver"),
    "broadcast": ("selfplay.rollout.transport.broadcast", "BroadcastSender", "BroadcastReceiver"),
    "shared_memory": ("selfplay.rollout.transport.shared_memory", "SharedMemorySender", "SharedMemoryReceiver"),
    "mixed": ("selfplay.rollout.transport.mixed", "MixedSender", "MixedReceiver"),
}


def transport_names() -> list[str]:
    return sorted(_BACKENDS)


def _classes(name: str) -> tuple[type, type]:
    import importlib

    if name not in _BACKENDS:
        raise ValueError(f"unknown weight transport {name!r} (valid: {', '.join(transport_names())})")
    module, sender, receiver = _BACKENDS[name]
    mod = importlib.import_module(module)
    return getattr(mod, sender), getattr(mod, receiver)


def build_sender(name: str, *, bucket_bytes: int, timeout_s: float = 600.0, backend: str = "auto",
                 local: list[bool] | None = None) -> WeightSender:
    """``backend`` (broadcast only): a torch.distributed backend, "auto" as ``resolve_backend`` says. ``local``
    (mixed only): whether each receiver, in rank order, runs on the sender's node."""
    sender_cls, _ = _classes(name)
    if name == "mixed":
        return sender_cls(bucket_bytes=bucket_bytes, timeout_s=timeout_s, backend=backend, local=local)
    return sender_cls(bucket_bytes=bucket_bytes, timeout_s=timeout_s, backend=backend)


def build_receiver(name: str) -> WeightReceiver:
    _, receiver_cls = _classes(name)
    receiver = receiver_cls()
    if os.environ.get("SELFPLAY_FAULT", "").startswith("kill@receive:"):  # tests only: a death mid-push
        from selfplay.rollout.transport.fault_injection import KillingReceiver, requested_versions

        return KillingReceiver(receiver, requested_versions())
    return receiver
