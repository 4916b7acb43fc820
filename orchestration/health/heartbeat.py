"""Liveness records in the run directory, for ``selfplay status`` to read without joining Ray.

``heartbeat.json``: who runs the loop (pid, host), where it is (step, total_steps, phase, since when), refreshed by
a daemon thread every ``interval`` seconds, so a long step still looks alive; ``ended`` is set when the controller
shuts down. ``error.json``: the exception a run died of (type, one-line message, traceback tail, time).
Both are written atomically."""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from selfplay.orchestration.run.directory import write_json_atomic

HEARTBEAT_FILE = "heartbeat.json"
ERROR_FILE = "error.json"
INTERVAL_SECONDS = 5.0


class Heartbeat:
    """``step`` reads the controller's current step whenever a beat is written."""

    def __init__(self, run_dir: Path, total_steps: int, step: Callable[[], int],
                 interval: float = INTERVAL_SECONDS) -> None:
        self.path = Path(run_dir) / HEARTBEAT_FILE
        self.interval = interval
        self._step = step
        self._lock = threading.Lock()
        self._record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                        "total_steps": total_steps, "interval_seconds": interval, "phase": "starting",
                        "phase_since": time.time()}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread = threading.Thread(target=self._refresh, name="selfplay-heartbeat", daemon=True)
        self._thread.start()
        return self

    def phase(self, name: str) -> None:
        """Entering a phase of the loop (``experience``, ``train``, ``push``, ``checkpoint``, ``finished`` ...)."""
        with self._lock:
            if self._record["phase"] == name:
                return
            self._record.update(phase=name, phase_since=time.time())
        self.beat()

    def beat(self) -> None:
        try:
            step = int(self._step())
        except Exception:  # the state is being restored: the previous step stands
            step = self._record.get("step", 0)
        with self._lock:
            self._record.update(step=step, time=time.time())
            try:
                write_json_atomic(self.path, self._record)
            except OSError:  # a full or vanished disk must not stop training; status will call it stale
                pass

    def stop(self) -> None:
        """The last beat, marked ``ended``: the process shut the run down (finished, stopped or died of an error)."""
        if self._thread is None:
            return
        self._wake.set()
        self._thread.join(timeout=self.interval + 5)
        self._thread = None
        with self._lock:
            self._record["ended"] = time.time()
        self.beat()

    def _refresh(self) -> None:
        while not self._wake.wait(self.interval):
            self.beat()


def write_error(run_dir: Path, exc: BaseException, tail_lines: int = 30) -> None:
    """``error.json`` for a run that died of ``exc``; an actor's error (Ray's wrapper has it as ``cause``) is
    named by its own type and first line."""
    shown = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
    lines = str(shown).strip().splitlines()
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()
    write_json_atomic(Path(run_dir) / ERROR_FILE, {
        "type": type(shown).__name__, "message": lines[0] if lines else "", "time": time.time(),
        "pid": os.getpid(), "host": socket.gethostname(), "traceback_tail": trace[-tail_lines:]})


@contextmanager
def recording_errors(run_dir: Path):
    """Write ``error.json`` when the body raises an error; a KeyboardInterrupt or SystemExit is not one."""
    try:
        yield
    except Exception as exc:
        try:
            write_error(run_dir, exc)
        except OSError:
            pass
        raise
