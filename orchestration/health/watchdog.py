"""Hangs become errors: a thread that watches how long the current step (or start-up phase) has run. Past
``run.step_timeout_s`` it writes every process's Python stacks into ``<run_dir>/stacks/`` (``py-spy dump`` on each
actor's process, which works on a process stuck in a collective, and the driver's own threads through
``faulthandler``), then kills the run's actors, so that the driver's wait on them fails at once and the step ends
with ``StepHung`` naming the phase (handled like a learner failure: ``run.auto_resume``)."""

from __future__ import annotations

import faulthandler
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from selfplay.errors import SelfplayError


NO_LIMIT_S = 365 * 24 * 3600.0  # torch.distributed needs a finite timeout: a year stands for none


def collective_timeout_s(step_timeout_s: float) -> float:
    """How long one collective (the learner's group, the weight transport) may wait: ``run.step_timeout_s``,
    where 0 means no limit, as it does for the watchdog."""
    return step_timeout_s if step_timeout_s > 0 else NO_LIMIT_S


class StepHung(RuntimeError):
    """A step ran past ``run.step_timeout_s``."""


class StepWatchdog:
    def __init__(self, timeout_s: float, run_dir: Path, processes: Callable[[], dict[str, int]],
                 stop_actors: Callable[[], None]) -> None:
        """``processes``: label -> pid of every actor process (asked once the run has started);
        ``stop_actors``: kills them, unblocking the driver."""
        self.timeout_s = timeout_s
        self.run_dir = run_dir
        self._processes = processes
        self._pids: dict[str, int] = {}
        self._stop_actors = stop_actors
        self._step, self._phase, self._since = 0, "start", time.monotonic()
        self.hung: str | None = None  # the message, once fired
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="step-watchdog", daemon=True)

    def start(self) -> StepWatchdog:
        """Watch from now on: start-up too (its processes are asked for with ``refresh`` once they answer; until
        then a hang's stacks are those of every ``ray::`` process this driver started)."""
        if self.timeout_s > 0:
            self._thread.start()
        return self

    def refresh(self) -> None:
        """Ask for the processes (once the actors have started; again when an actor restarted by Ray has a new
        one)."""
        if self.timeout_s > 0:
            self._pids = self._processes()

    def step(self, step: int) -> None:
        """A new step begins: its clock starts."""
        self._step, self._since = step, time.monotonic()

    def phase(self, name: str) -> None:
        self._phase = name

    def stop(self) -> None:
        self._stopped.set()

    def check(self, exc: BaseException) -> None:
        """Called with the error the driver's wait ended in: a hang fired is reported as ``StepHung``."""
        if self.hung is not None and not isinstance(exc, SelfplayError):
            raise StepHung(self.hung) from exc

    def _watch(self) -> None:
        while not self._stopped.wait(1.0):
            elapsed = time.monotonic() - self._since
            if elapsed > self.timeout_s:
                self._fire(elapsed)
                return

    def _fire(self, elapsed: float) -> None:
        step, phase = self._step, self._phase
        what = f"step {step}" if step else "start-up"
        path = dump_stacks(self.run_dir / "stacks" / f"{what.replace(' ', '-')}-{phase}.txt",
                           self._pids or ray_processes(),
                           f"{what} hung in phase '{phase}' for {elapsed:.0f} s (run.step_timeout_s={self.timeout_s:g})")
        self.hung = (f"{what} hung in phase '{phase}': no progress for {elapsed:.0f} s "
                     f"(run.step_timeout_s={self.timeout_s:g}); every process's stacks are in {path}")
        self._stop_actors()


def ray_processes() -> dict[str, int]:
    """This driver's descendant processes titled ``ray::<class>[.<method>]`` (its actors on the in-process
    cluster), by title: the stacks to dump when the actors could not be asked for their own ids."""
    import psutil

    found = {}
    for process in psutil.Process().children(recursive=True):
        try:
            title = (process.cmdline() or [""])[0]
        except psutil.Error:
            continue
        if title.startswith("ray::") and not title.startswith(("ray::IDLE", "ray::core")):
            found[f"{title} {process.pid}"] = process.pid
    return found


def dump_stacks(path: Path, pids: dict[str, int], header: str) -> Path:
    """Every actor's stacks (py-spy, when installed) and the driver's threads into one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).with_name("py-spy")  # installed with us, in a venv that may not be on PATH
    spy = str(beside) if beside.is_file() else shutil.which("py-spy")
    with path.open("w", encoding="utf-8") as out:
        out.write(f"{header}\n\n== driver (this process)\n")
        out.flush()
        faulthandler.dump_traceback(file=out, all_threads=True)
        for label, pid in pids.items():
            out.write(f"\n== {label} (pid {pid})\n")
            if spy is None:
                out.write("py-spy is not installed (pip install py-spy): no stacks of this process\n")
                continue
            try:
                dumped = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                                        timeout=30)
                out.write(dumped.stdout or dumped.stderr)
            except (OSError, subprocess.TimeoutExpired) as exc:
                out.write(f"py-spy failed: {exc}\n")
    return path
