"""Fault injection for crash and hang tests, from ``SELFPLAY_FAULT`` (unset in normal runs, where each point costs
one dictionary lookup):

- ``<point>[@<step>]`` kills this process with SIGKILL when the controller reaches ``point`` (at ``step`` if given).
  Points: checkpoint_after_engine, checkpoint_before_manifest, checkpoint_before_latest, after_checkpoint,
  after_train_step, after_push.
- ``hang@<phase>:<step>`` makes the actor that serves ``phase`` (generate, score, train, push) block forever at
  that step, as a collective that never returns would; once per process, so an auto-resumed run goes past it.
- ``kill@receive:<version>[,...]`` kills rollout worker 0 in the middle of those weight pushes
  (rollout/transport/fault_injection.py).

Both variables (and ``SELFPLAY_FAULT_DIR``) reach the actors (orchestration/cluster/placement.py)."""

from __future__ import annotations

import os
import signal

_fired: set[str] = set()


def fault_point(point: str, step: int) -> None:
    spec = os.environ.get("SELFPLAY_FAULT")
    if not spec:
        return
    name, _, at = spec.partition("@")
    if name == point and (not at or int(at) == step):
        os.kill(os.getpid(), signal.SIGKILL)


def hang_requested(phase: str, step: int) -> bool:
    spec = os.environ.get("SELFPLAY_FAULT", "")
    if spec != f"hang@{phase}:{step}" or spec in _fired:
        return False
    _fired.add(spec)
    return True


def hang(actor) -> None:
    """Keep ``actor`` busy forever (its later calls queue behind this one)."""
    import time

    actor.__ray_call__.remote(lambda self: time.sleep(10**9))
