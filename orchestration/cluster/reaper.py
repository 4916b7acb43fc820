"""Nothing outlives a killed run: a small process started next to the driver, before Ray, that watches it. While the
driver lives it notes every process the driver started (Ray's daemons, the actors, vLLM's engine cores); once the
driver is gone (``kill -9``, OOM killer, a crash that skipped every ``finally``), it kills those that are still
running, and removes the weight transport's ``/dev/shm`` files a learner killed mid-push left. A run that ends
normally stops its own actors and Ray, and then the reaper only exits.

``python -m selfplay.orchestration.cluster.reaper DRIVER_PID [LOG]``: it notes in ``LOG`` (``<run_dir>/reaper.log``) that it watches, and
what it killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WATCHING = "reaper: watching driver pid"  # the line the reaper writes once it runs


class Reaper:
    """A started reaper: its process and its log."""

    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process, self.log = process, log

    def running(self, within_s: float = 10.0) -> bool:
        """Whether it started watching (its first line is in the log) and still runs; waits up to ``within_s``
        for the line."""
        deadline = time.monotonic() + within_s
        while self.process.poll() is None:
            if self.log.is_file() and WATCHING in self.log.read_text(encoding="utf-8", errors="replace"):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return False

    def problem(self) -> str:
        """One line on why it is not running, for a warning."""
        text = self.log.read_text(encoding="utf-8", errors="replace").strip() if self.log.is_file() else ""
        last = text.splitlines()[-1] if text else "no output"
        state = "is not watching yet" if self.process.poll() is None else f"exited with {self.process.returncode}"
        return f"the reaper (pid {self.process.pid}) {state}: {last} (log: {self.log})"


def start_reaper(log: Path) -> Reaper:
    """The reaper of this process, logging into ``log``; it exits by itself when this process ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        process = subprocess.Popen([sys.executable, "-m", "selfplay.orchestration.cluster.reaper", str(os.getpid())],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # not in the driver's process group: a group kill spares it
    return Reaper(process, log)


def watch(driver_pid: int, interval_s: float = 1.0) -> None:
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        print(f"reaper: driver pid {driver_pid} was gone before the reaper started", flush=True)
        return
    print(f"{WATCHING} {driver_pid}", flush=True)
    me = os.getpid()
    started: dict[int, float] = {}  # pid -> create time (a pid reused by an unrelated process is spared)
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        try:
            for child in driver.children(recursive=True):
                if child.pid != me:
                    started.setdefault(child.pid, child.create_time())
        except psutil.Error:
            pass
        time.sleep(interval_s)
    killed = []
    for pid, created in started.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created:
                process.send_signal(signal.SIGKILL)
                killed.append(process)
        except psutil.Error:
            pass
    psutil.wait_procs(killed, timeout=10)
    from selfplay.rollout.transport.shm_files import remove_orphans

    remove_orphans()
    print(f"reaper: driver {driver_pid} gone; killed {len(killed)} of the {len(started)} processes it started "
          f"that were still running", flush=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
