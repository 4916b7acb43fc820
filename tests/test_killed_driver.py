"""``kill -9`` of the ``selfplay train`` process itself: nothing it started may run on.

In a module of its own, with no Ray in this process: another cluster started on the machine while an in-process
driver is connected cuts that driver off its GCS here (see tests/test_remote_preference.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO
from tests.test_fault_tolerance import last_step

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_ray_in_this_process():
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_a_killed_driver_leaves_no_process_behind(tmp_path):
    """``kill -9`` of ``selfplay train`` itself: its reaper kills Ray's daemons, the actors and vLLM's engine
    cores, which would otherwise run on with nobody to stop them, and no file of the run is left in /dev/shm."""
    shm_before = set(os.listdir("/dev/shm"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SELFPLAY_FAULT")}
    env["PYTHONPATH"] = str(REPO)
    driver = subprocess.Popen([sys.executable, "-m", "selfplay.orchestration.commands.cli", "train", f"run.output_dir={tmp_path}",
                               "run.name=killed", "run.total_steps=2000", "eval.every_steps=0",
                               "sync.transport=shared_memory"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while last_step(tmp_path / "killed") < 3:
            assert driver.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        started = psutil.Process(driver.pid).children(recursive=True)
        titles = {" ".join(p.cmdline())[:40] for p in started}
        assert any(t.startswith("ray::RolloutWorker") for t in titles), titles
        driver.kill()
        driver.wait()
        gone, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, [(p.pid, " ".join(p.cmdline())[:60]) for p in alive]
        deadline = time.monotonic() + 30  # the reaper sweeps /dev/shm after its kills
        while (left := set(os.listdir("/dev/shm")) - shm_before) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, sorted(left)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever is left of the group this test started
        except ProcessLookupError:
            pass
