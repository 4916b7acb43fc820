"""Fault injection for the weight-transport tests: ``SELFPLAY_FAULT=kill@receive:<v>[,<v>...]`` kills the process of
the receiver at transport rank 1 with SIGKILL after it has received the first tensor of push version ``v``: a
rollout worker dead in the middle of a push, its peers inside their collectives. Each version fires once (a file
``receive-<v>`` under ``SELFPLAY_FAULT_DIR`` remembers it across the restarted process), so the push made again after
the restart goes through. Unset in normal runs: ``build_receiver`` then returns the receiver itself."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

PREFIX = "kill@receive:"


def requested_versions() -> set[int]:
    spec = os.environ.get("SELFPLAY_FAULT", "")
    if not spec.startswith(PREFIX):
        return set()
    return {int(v) for v in spec[len(PREFIX):].split(",") if v.strip()}


class KillingReceiver:
    """A receiver that dies mid-push at the requested versions; otherwise the receiver it wraps."""

    def __init__(self, receiver, versions: set[int]) -> None:
        self._receiver, self._versions, self._rank = receiver, versions, None
        self.name = receiver.name

    def connect(self, endpoint: dict, rank: int) -> None:
        self._rank = rank
        self._receiver.connect(endpoint, rank)

    def fetch(self, source: Any) -> Any:
        return self._receiver.fetch(source)

    def receive(self, version: int, fetched: Any = None):
        incoming = self._receiver.receive(version, fetched)
        for n, item in enumerate(incoming):
            yield item
            if n == 0 and self._rank == 1 and version in self._versions:
                marker = Path(os.environ.get("SELFPLAY_FAULT_DIR", "/tmp")) / f"receive-{version}"
                if not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self._receiver.close()
