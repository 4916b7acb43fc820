"""The ``/dev/shm`` files of the shared-memory weight transport, named after the process that made them.

A file lives only while a push is under way (the sender unlinks it once every receiver has mapped it), so one is
left only when the learner dies mid-push. Its name carries the sender's pid, so such an orphan is found and removed
by the next sender on the machine and by the reaper of a killed driver (orchestration/cluster/reaper.py). Plain Python:
the reaper imports this without torch."""

from __future__ import annotations

import os
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIX = "selfplay-weights-"


def shm_file(group: str, index: int, shm_dir: Path = SHM_DIR) -> Path:
    """File ``index`` of transport group ``group``, made by this process."""
    return shm_dir / f"{PREFIX}{os.getpid()}-{group}-{index}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def orphans(shm_dir: Path = SHM_DIR) -> list[Path]:
    """The transport's files whose maker is no longer running."""
    found = []
    for path in shm_dir.glob(PREFIX + "*"):
        pid = path.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            found.append(path)
    return found


def remove_orphans(shm_dir: Path = SHM_DIR) -> list[Path]:
    removed = []
    for path in orphans(shm_dir):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:  # removed meanwhile by another sweeper
            pass
    return removed
