"""What counts as an actor failure, and waiting on a call whose actor may die and be restarted by Ray.

An actor made with ``max_restarts`` keeps its handle across a restart: Ray runs its ``__init__`` again with the same
arguments and queues the calls submitted meanwhile. A call in flight when the process died fails (we never let Ray
retry a task by itself: a retried ``generate`` or weight ``receive`` must be placed by the caller, who knows what the
restarted actor is missing)."""

from __future__ import annotations

import os
import time
from typing import Callable

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

ACTOR_FAILURES = (RayActorError, ActorUnavailableError)


class ActorLost(RuntimeError):
    """An actor died more often than its ``max_restarts`` allow."""


def get_with_restarts(future, resubmit: Callable[[], object], max_restarts: int, what: str,
                      on_restart: Callable[[], None] = lambda: None, wait_s: float = 600.0) -> tuple[object, int]:
    """The value of ``future``; when its actor died, wait for Ray to restart it (a call made meanwhile fails with
    ``ActorUnavailableError``), bring it back to the state it needs (``on_restart()``, waited for) and ``resubmit()``
    the call, for up to ``max_restarts`` deaths and ``wait_s`` seconds of waiting on each. Returns (value, deaths)."""
    deaths, down_since, failure = 0, None, None
    while True:
        try:
            if future is None:  # on_restart found the actor not back yet
                raise failure
            return ray.get(future), deaths
        except ACTOR_FAILURES as exc:
            if down_since is None or not isinstance(exc, ActorUnavailableError):
                deaths += 1  # the call was lost with its process: a death (restarting calls are only unavailable)
                down_since = time.monotonic()
                if deaths > max_restarts:
                    raise ActorLost(f"{what} died {deaths} times (max_restarts {max_restarts}): "
                                    f"{str(exc).splitlines()[0]}") from exc
            elif time.monotonic() - down_since > wait_s:
                raise ActorLost(f"{what} did not come back within {wait_s:g} s of dying") from exc
            time.sleep(0.2)
            try:
                on_restart()
            except ACTOR_FAILURES as again:
                future, failure = None, again
                continue
            future = resubmit()


def exit_for_restart(reason: str) -> None:
    """End this actor's process as a crash, so that Ray restarts it (``ray.actor.exit_actor`` would mark it as
    intentionally gone): for an actor whose engine died underneath a live Python process."""
    print(f"selfplay: {reason}; exiting so that Ray restarts this actor", flush=True)
    os._exit(1)
