"""Nothing outlives a killed run: a small process started next to the driver, before Ray, that watches it. While the
driver lives it notes every process the driver started (Ray's daemons, the actors, vLLM's engine cores); once the
driver is gone (``kill -9``, OOM killer, a crash that skipped every ``finally``), it kills those that are still
running, and removes the weight transport's ``/dev/shm`` files a learner killed mid-push left. A run that ends
normally stops its own actors and Ray, and then the reaper only exits.

``python -m orchestration.reaper DRIVER_PID``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def start_reaper() -> subprocess.Popen:
    """The reaper of this process; it exits by itself when this process ends."""
    return subprocess.Popen([sys.executable, "-m", "orchestration.reaper", str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # not in the driver's process group: a group kill spares it


def watch(driver_pid: int, interval_s: float = 1.0) -> None:
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return
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
    from rollout.transport.shm_files import remove_orphans

    remove_orphans()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
