"""Fault injection for crash tests: ``SELFPLAY_FAULT=<point>[@<step>]`` kills this process with SIGKILL
when the controller reaches ``point`` (at ``step`` if given). Points: checkpoint_after_engine,
checkpoint_before_manifest, checkpoint_before_latest, after_checkpoint, after_train_step, after_push.
Unset in normal runs, where it costs one dictionary lookup."""

from __future__ import annotations

import os
import signal


def fault_point(point: str, step: int) -> None:
    spec = os.environ.get("SELFPLAY_FAULT")
    if not spec:
        return
    name, _, at = spec.partition("@")
    if name == point and (not at or int(at) == step):
        os.kill(os.getpid(), signal.SIGKILL)
