"""The failure paths next to the tested one: a cluster address that answers nothing, the reaper that must be seen
to run, ``run.step_timeout_s=0``, a hang during start-up, and a restart from nothing that keeps the evidence."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from selfplay.orchestration.cluster.probe import check_cluster_answers, host_and_port
from selfplay.orchestration.config.loading import load_config
from selfplay.errors import ConfigError


def test_ray_addresses_are_parsed_to_what_is_probed(tmp_path, monkeypatch):
    assert host_and_port("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert host_and_port("ray://head") == ("head", 10001)
    assert host_and_port("headnode") == ("headnode", 6379)
    assert host_and_port("[::1]:6379") == ("::1", 6379)
    monkeypatch.setattr("selfplay.orchestration.cluster.probe.RAY_CURRENT_CLUSTER", tmp_path / "none")
    assert host_and_port("auto") is None  # ray.init says at once that no cluster runs
    noted = tmp_path / "ray_current_cluster"
    noted.write_text("127.0.0.1:6390\n")
    monkeypatch.setattr("selfplay.orchestration.cluster.probe.RAY_CURRENT_CLUSTER", noted)
    assert host_and_port("auto") == ("127.0.0.1", 6390)
    with pytest.raises(ConfigError, match="'x6379' is not a number"):
        host_and_port("head:x6379")


def test_a_listening_address_passes_and_a_silent_one_fails_in_bounded_time():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_cluster_answers(f"127.0.0.1:{server.getsockname()[1]}", "ray.address", within_s=2)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"^no Ray cluster answers at 127.0.0.1:1 \(from RAY_ADDRESS\): \d+ TCP "
                                          r"connection\(s\) to 127.0.0.1:1 over 2 s failed .*ray start --head"):
        check_cluster_answers("127.0.0.1:1", "RAY_ADDRESS", within_s=2)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("how", ["ray.address", "RAY_ADDRESS", "--address"])
def test_selfplay_train_at_a_dead_address_fails_in_one_line_within_15_s(selfplay_cli, tmp_path, how):
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"} if how == "RAY_ADDRESS" else dict(os.environ)
    env.pop("RAY_ADDRESS", None) if how != "RAY_ADDRESS" else None
    args = {"ray.address": ["ray.address=127.0.0.1:1"], "--address": ["--address", "127.0.0.1:1"],
            "RAY_ADDRESS": []}[how]
    started = time.monotonic()
    done = subprocess.run([selfplay_cli, "train", *args, f"run.output_dir={tmp_path}"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 15 + 10  # the probe's 10 s, plus the CLI's imports on 2 busy cores
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "no Ray cluster answers at 127.0.0.1:1" in line]
    source = "RAY_ADDRESS" if how == "RAY_ADDRESS" else "ray.address"
    assert len(errors) == 1 and f"(from {source})" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_the_reaper_logs_that_it_watches_and_a_dead_one_is_reported(tmp_path):
    from selfplay.orchestration.cluster.reaper import start_reaper

    reaper = start_reaper(tmp_path / "run" / "reaper.log")
    try:
        assert reaper.running(within_s=30)
        assert f"reaper: watching driver pid {os.getpid()}" in (tmp_path / "run" / "reaper.log").read_text()
    finally:
        reaper.process.kill()
        reaper.process.wait()
    assert not reaper.running(within_s=1)
    assert reaper.problem().startswith(f"the reaper (pid {reaper.process.pid}) exited with -9")
    # One that cannot start (here: no such module in the interpreter it runs) is named with its own last line.
    broken = subprocess.Popen([sys.executable, "-c", "import no_such_module_for_the_reaper"],
                              stdout=(tmp_path / "broken.log").open("w"), stderr=subprocess.STDOUT)
    from selfplay.orchestration.cluster.reaper import Reaper

    failed = Reaper(broken, tmp_path / "broken.log")
    assert not failed.running(within_s=30)
    assert "ModuleNotFoundError: No module named 'no_such_module_for_the_reaper'" in failed.problem()


def test_psutil_is_a_declared_dependency():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("psutil") for r in project["dependencies"])


def test_step_timeout_zero_means_no_limit_for_the_collectives_too():
    from selfplay.orchestration.loop.learner_spec import learner_spec
    from selfplay.orchestration.health.watchdog import NO_LIMIT_S, collective_timeout_s

    assert collective_timeout_s(0) == NO_LIMIT_S and collective_timeout_s(45.0) == 45.0
    assert learner_spec(load_config(None, ["run.step_timeout_s=0"])).collective_timeout_s == NO_LIMIT_S
    assert learner_spec(load_config(None, ["run.step_timeout_s=90"])).collective_timeout_s == 90.0


def test_a_hung_start_up_phase_dumps_the_stacks_and_stops_the_actors(tmp_path):
    """Before any actor answers, the watchdog still fires: the driver's stacks (and those of any ray:: process
    this driver started) are written, named after the start-up phase."""
    import threading

    from selfplay.orchestration.health.watchdog import StepWatchdog

    stopped = threading.Event()
    watchdog = StepWatchdog(1.0, tmp_path, processes=lambda: {}, stop_actors=stopped.set)
    watchdog.start()
    watchdog.step(0)
    watchdog.phase("start-up: weight transport")
    assert stopped.wait(10), "the watchdog did not fire"
    watchdog.stop()
    stacks = (tmp_path / "stacks" / "start-up-start-up: weight transport.txt").read_text()
    assert stacks.startswith("start-up hung in phase 'start-up: weight transport'")
    assert "== driver (this process)" in stacks and "test_a_hung_start_up_phase" in stacks
    assert watchdog.hung.startswith("start-up hung in phase 'start-up: weight transport': no progress for")


def test_a_restart_from_nothing_keeps_each_attempt_and_never_replaces_a_run_unasked(tmp_path):
    from selfplay.orchestration.run.directory import archive_attempt, create_run_dir
    from selfplay.errors import InputError

    config = load_config(None, [f"run.output_dir={tmp_path}", "run.name=r"])
    run_dir = create_run_dir(config)
    (run_dir / "error.json").write_text("{}")
    (run_dir / "stacks").mkdir()
    (run_dir / "stacks" / "step-3-push.txt").write_text("stacks")
    with pytest.raises(InputError, match="exists; set run.overwrite=true"):
        create_run_dir(config)
    assert archive_attempt(run_dir) == run_dir / "attempts" / "1"
    assert create_run_dir(config) == run_dir  # only earlier attempts there: kept
    (run_dir / "error.json").write_text("{}")
    assert archive_attempt(run_dir) == run_dir / "attempts" / "2"
    assert (run_dir / "attempts" / "1" / "stacks" / "step-3-push.txt").read_text() == "stacks"
    assert (run_dir / "attempts" / "2" / "error.json").is_file()
    assert (run_dir / "attempts" / "1" / "config.yaml").is_file()
