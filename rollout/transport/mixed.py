"""Mixed backend: each engine gets the transport that suits where it runs. Engines on the learner's node read the
push from shared memory; engines on other nodes get it over the broadcast, which crosses nodes.

The sender holds one sub-sender per kind. Each has its own group of learner rank 0 and that kind's receivers.
``open`` gives every receiver a route: its kind and its rank in that kind's group. The endpoint carries the routes,
so a receiver needs nothing beyond the endpoint and its own rank. A push goes to the shared-memory group first,
then to the broadcast group, as one version. Tensors are sent twice from one list, so the sender takes stable
CPU copies (``streaming = False``); that costs one model copy on learner rank 0 while a push is under way.

If either part fails, the other part is told the push was aborted, so no receiver waits on a push that will not
come.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch

from selfplay.rollout.transport.base import PushStats, build_receiver, build_sender

LOCAL, REMOTE = "shared_memory", "broadcast"


def routes(local: list[bool]) -> list[tuple[str, int]]:
    """(kind, rank in that kind's group) of each receiver, in receiver order; rank 0 is the sender's in both."""
    counts = {LOCAL: 0, REMOTE: 0}
    out = []
    for here in local:
        kind = LOCAL if here else REMOTE
        counts[kind] += 1
        out.append((kind, counts[kind]))
    return out


def _failed(exc: BaseException) -> Iterator[tuple[str, torch.Tensor]]:
    raise exc
    yield  # a generator: the sub-sender starts its push, meets the error and tells its receivers it aborted


class MixedSender:
    name: ClassVar[str] = "mixed"
    streaming: ClassVar[bool] = False

    def __init__(self, bucket_bytes: int, timeout_s: float = 600.0, backend: str = "auto",
                 local: list[bool] | None = None) -> None:
        if not local:
            raise ValueError("the mixed weight transport needs each receiver's locality (local=[...])")
        self.local = list(local)
        self._routes = routes(self.local)
        kinds = [kind for kind in (LOCAL, REMOTE) if any(k == kind for k, _ in self._routes)]
        self._parts = {kind: build_sender(kind, bucket_bytes=bucket_bytes, timeout_s=timeout_s, backend=backend)
                       for kind in kinds}

    def open(self, num_receivers: int, host: str = "127.0.0.1") -> dict:
        if num_receivers != len(self.local):
            raise ValueError(f"the mixed transport was built for {len(self.local)} receivers, opened for "
                             f"{num_receivers}")
        sizes = {kind: sum(k == kind for k, _ in self._routes) for kind in self._parts}
        parts = {kind: part.open(sizes[kind], host=host) for kind, part in self._parts.items()}
        return {"kind": self.name, "parts": parts, "routes": [list(r) for r in self._routes],
                "world_size": num_receivers + 1}

    def connect(self) -> None:
        for part in self._parts.values():  # receivers join their own part's group concurrently
            part.connect()

    def send(self, version: int, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> PushStats:
        try:
            tensors = list(named_tensors)
        except BaseException as exc:
            self._abort(version, exc, list(self._parts))
            raise
        stats = []
        for i, (kind, part) in enumerate(self._parts.items()):
            try:
                stats.append(part.send(version, iter(tensors)))
            except BaseException as exc:
                self._abort(version, exc, list(self._parts)[i + 1:])
                raise
        return PushStats(version=version, backend="mixed(" + ", ".join(s.backend for s in stats) + ")",
                         seconds=sum(s.seconds for s in stats), bytes=stats[0].bytes,
                         buckets=sum(s.buckets for s in stats), tensors=len(tensors))

    def _abort(self, version: int, exc: BaseException, kinds: list[str]) -> None:
        for kind in kinds:
            try:
                self._parts[kind].send(version, _failed(exc))
            except BaseException:  # the push's own error is the one to report
                pass

    def close(self) -> None:
        for part in self._parts.values():
            part.close()


class MixedReceiver:
    name: ClassVar[str] = "mixed"

    def __init__(self) -> None:
        self._inner = None

    def connect(self, endpoint: dict, rank: int) -> None:
        kind, part_rank = endpoint["routes"][rank - 1]
        self.close()
        self._inner = build_receiver(kind)
        self._inner.connect(endpoint["parts"][kind], part_rank)

    def fetch(self, source: Any) -> None:
        return None  # neither part fetches anything (their groups carry the push); this runs unconnected, host side

    def receive(self, version: int, fetched: Any = None) -> Iterator[tuple[str, torch.Tensor]]:
        if self._inner is None:
            raise RuntimeError("connect() the mixed transport before receiving")
        return self._inner.receive(version, fetched)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        self._inner = None
