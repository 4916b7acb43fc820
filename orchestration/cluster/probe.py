"""Before joining a Ray cluster: check that something answers at its address, so that a wrong address fails in
seconds with one line instead of ``ray.init`` retrying the GCS for minutes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from selfplay.errors import ConfigError

RAY_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # where `ray start` notes the address "auto" finds
DEFAULT_GCS_PORT = 6379
DEFAULT_CLIENT_PORT = 10001  # Ray Client (ray://)


def host_and_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint behind a Ray address: ``host:port``, ``ray://host[:port]``, or ``auto`` (the cluster
    `ray start` last started on this machine); None where there is nothing to probe (``auto`` with no cluster
    noted: ray.init says so at once)."""
    if address == "auto":
        if not RAY_CURRENT_CLUSTER.is_file():
            return None
        address = RAY_CURRENT_CLUSTER.read_text(encoding="utf-8").strip()
    default = DEFAULT_GCS_PORT
    if address.startswith("ray://"):
        address, default = address[len("ray://"):], DEFAULT_CLIENT_PORT
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default
    if not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: the port {port!r} is not a number (expected host:port)")
    return host.strip("[]"), int(port)


def check_cluster_answers(address: str, source: str, within_s: float = 10.0) -> None:
    """Raise ``ConfigError`` naming ``address`` (and where it came from: ``source``) unless a TCP connection to
    it opens within ``within_s`` seconds (tried once a second)."""
    target = host_and_port(address)
    if target is None:
        return
    host, port = target
    deadline = time.monotonic() + within_s
    tries, last = 0, None
    while True:
        tries += 1
        try:
            with socket.create_connection((host, port), timeout=min(3.0, within_s)):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    raise ConfigError(f"no Ray cluster answers at {address} (from {source}): {tries} TCP connection(s) to "
                      f"{host}:{port} over {within_s:g} s failed ({last.strerror or last}); start one with "
                      "`ray start --head` (or `ray up cluster.yaml`), or unset it to run on an in-process cluster")
