"""`selfplay status` and `selfplay plot` read a run directory alone: the heartbeat says whether the run is alive,
error.json why it died, metrics.jsonl its numbers, the checkpoints what can be resumed; the plots follow the data.
Mostly synthetic run directories, plus one short real run."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from selfplay.orchestration.run import checkpoints as ckpt
from selfplay.orchestration.commands.cli import main
from selfplay.orchestration.health.heartbeat import ERROR_FILE, HEARTBEAT_FILE, Heartbeat, recording_errors, write_error
from selfplay.orchestration.telemetry.plots import draw_plots
from selfplay.orchestration.run.directory import write_json_atomic
from selfplay.orchestration.commands.status import format_status, read_status
from tests.conftest import run_in_process


@pytest.fixture(scope="module", autouse=True)
def _ray_closed_at_the_end(ray_session_per_module):
    """The real runs here share one Ray session."""


def _run_dir(tmp_path, total_steps=10, steps=5, name="run", loss=lambda i: 0.7 - 0.01 * i):
    run = tmp_path / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"run:\n  total_steps: {total_steps}\n")
    rows = [{"step": i, "loss": loss(i), "kl_to_ref": 0.001 * i, "samples_per_second": 100.0 + i,
             "policy_lag": 0, "policy_version": i, "wall_seconds": 2.0 * i} for i in range(1, steps + 1)]
    rows.insert(3, {"step": 3, "win_rate_vs_initial": 0.55})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "lo')
    return run


def _checkpoint(run, step, complete=True):
    directory = ckpt.step_dir(run, step)
    directory.mkdir(parents=True)
    (directory / "controller.msgpack").write_bytes(b"x")
    if complete:
        ckpt.write_manifest(directory, step, meta={"policy_version": step})
        ckpt.point_latest(run, step)


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_run_is_alive_with_step_eta_latest_metrics_and_checkpoints(tmp_path):
    run = _run_dir(tmp_path)
    _checkpoint(run, 2)
    _checkpoint(run, 4, complete=False)  # being written
    beat = Heartbeat(run, 10, lambda: 5, interval=0.1).start()
    try:
        beat.phase("train")
        first = json.loads((run / HEARTBEAT_FILE).read_text())
        time.sleep(0.35)
        assert json.loads((run / HEARTBEAT_FILE).read_text())["time"] > first["time"]  # refreshed by its thread
        status = read_status(run)
    finally:
        beat.stop()
    assert status["alive"] and status["state"] == "running" and status["phase"] == "train"
    assert (status["step"], status["total_steps"]) == (5, 10)
    assert status["steps_per_second"] == pytest.approx(0.5)  # wall_seconds: 2 s a step
    assert status["eta_seconds"] == pytest.approx(10.0)
    assert status["latest"]["loss"] == pytest.approx(0.65) and status["latest"]["policy_version"] == 5
    assert status["win_rate_curve"] == [[3, 0.55]]
    assert [c["step"] for c in status["checkpoints"]] == [2] and status["checkpoints"][0]["latest"]
    assert status["incomplete_checkpoints"] == [4]
    text = format_status(status)
    assert "running, alive" in text and "step 5/10 (50%)" in text and "ETA 10s" in text
    assert "checkpoints: step-2 (latest)" in text and "loss 0.6500" in text
    ended = read_status(run)  # after stop(): marked ended, no longer alive although this process lives on
    assert not ended["alive"] and ended["ended"]


def test_a_finished_run_says_finished(tmp_path):
    run = _run_dir(tmp_path, total_steps=5)
    _checkpoint(run, 5)
    beat = Heartbeat(run, 5, lambda: 5).start()
    write_json_atomic(run / "summary.json", {"steps": 5, "samples": 80, "win_rate_vs_initial": 0.6,
                                             "wall_seconds": 12.0})
    beat.phase("finished")
    beat.stop()
    status = read_status(run)
    assert status["state"] == "finished" and not status["alive"] and status["eta_seconds"] is None
    assert (status["step"], status["total_steps"]) == (5, 5) and status["summary"]["samples"] == 80
    text = format_status(status)
    assert text.splitlines()[0].startswith(f"{run}: finished at ")
    assert "finished in 12s" in text


def test_a_killed_run_is_not_alive_and_shows_its_last_error(tmp_path):
    run = _run_dir(tmp_path)
    stale = time.time() - 600
    write_json_atomic(run / HEARTBEAT_FILE, {"pid": _dead_pid(), "host": __import__("socket").gethostname(),
                                             "started": stale - 100, "time": stale, "step": 5, "total_steps": 10,
                                             "phase": "train", "phase_since": stale})
    try:
        raise RuntimeError("the engine died\nmore detail")
    except RuntimeError as exc:
        write_error(run, exc)
    status = read_status(run)
    assert status["state"] == "died" and not status["alive"] and status["pid_alive"] is False
    assert status["error"]["type"] == "RuntimeError" and status["error"]["message"] == "the engine died"
    text = format_status(status)
    assert "died, not alive since" in text and "its process is gone" in text
    assert "last error (" in text and "RuntimeError: the engine died" in text


def test_a_fresh_heartbeat_of_a_dead_process_is_not_alive_and_a_silent_death_says_died(tmp_path):
    run = _run_dir(tmp_path)
    now = time.time()
    write_json_atomic(run / HEARTBEAT_FILE, {"pid": _dead_pid(), "host": __import__("socket").gethostname(),
                                             "started": now - 10, "time": now, "step": 5, "total_steps": 10,
                                             "phase": "train"})
    status = read_status(run)
    assert not status["alive"] and status["state"] == "died" and status["error"] is None


def test_an_error_from_before_a_resume_is_not_this_attempts(tmp_path):
    run = _run_dir(tmp_path)
    try:
        raise ValueError("old")
    except ValueError as exc:
        write_error(run, exc)
    time.sleep(1.1)
    beat = Heartbeat(run, 10, lambda: 5).start()
    beat.phase("stopped")
    beat.stop()
    assert read_status(run)["state"] == "stopped" and read_status(run)["error"] is None


def test_status_json_and_a_directory_that_is_not_a_run(tmp_path, capsys):
    run = _run_dir(tmp_path)
    assert main(["status", str(run), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"run_dir", "state", "alive", "step", "total_steps", "eta_seconds", "steps_per_second", "latest",
            "win_rate_curve", "checkpoints", "error", "last_seen", "phase"} <= set(status)
    assert status["state"] == "unknown" and status["step"] == 5  # no heartbeat yet: the step from the metrics
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"selfplay: error: {tmp_path} is not a selfplay run directory (no config.yaml)"
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_writes_pngs_that_follow_the_data(tmp_path, capsys):
    first = _run_dir(tmp_path, name="a/run")
    second = _run_dir(tmp_path, name="b/run", loss=lambda i: 0.7 + 0.05 * i * i)  # same name: same titles
    assert main(["plot", str(first)]) == 0
    names = {p.name for p in (first / "plots").iterdir()}
    assert names == {"win_rate.png", "loss.png", "kl.png", "throughput.png", "policy_lag.png"}  # no exploitability
    draw_plots(second)
    from matplotlib.image import imread
    a, b = imread(first / "plots" / "loss.png"), imread(second / "plots" / "loss.png")
    assert a.shape == b.shape and a.shape[2] in (3, 4) and a.std() > 0
    assert np.abs(a - b).sum() > 100  # different losses, different pixels
    np.testing.assert_array_equal(imread(first / "plots" / "kl.png"), imread(second / "plots" / "kl.png"))


class _FailingController:
    def __init__(self, run_dir, error):
        self.run_dir, self.error, self.shut = run_dir, error, None

    def run(self, auto_resumes=0):
        raise self.error

    def shutdown(self, failed=False):
        self.shut = "failed" if failed else "ok"


def test_a_run_that_raises_writes_error_json_and_a_stop_does_not(tmp_path):
    from selfplay.orchestration.commands.launch import run_to_end

    controller = _FailingController(tmp_path, ValueError("bad batch\nwith detail"))
    with pytest.raises(ValueError):
        run_to_end(controller)
    error = json.loads((tmp_path / ERROR_FILE).read_text())
    assert controller.shut == "failed" and error["type"] == "ValueError" and error["message"] == "bad batch"
    assert any("ValueError: bad batch" in line for line in error["traceback_tail"]) and error["time"] > 0
    (tmp_path / ERROR_FILE).unlink()
    with pytest.raises(KeyboardInterrupt), recording_errors(tmp_path):
        raise KeyboardInterrupt
    assert not (tmp_path / ERROR_FILE).exists()


@pytest.mark.slow
def test_a_short_run_beats_plots_at_its_checkpoint_and_reports_finished(tmp_path, capsys):
    run_dir, summary = run_in_process(tmp_path, "watched", "run.total_steps=4", "checkpoint.every_steps=2")
    beat = json.loads((run_dir / HEARTBEAT_FILE).read_text())
    assert beat["phase"] == "finished" and beat["step"] == 4 and beat["ended"] and beat["total_steps"] == 4
    assert {"win_rate.png", "loss.png", "throughput.png"} <= {p.name for p in (run_dir / "plots").iterdir()}
    assert main(["status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["state"] == "finished" and not status["alive"]
    assert (status["step"], status["total_steps"]) == (4, 4)
    assert status["checkpoints"][0]["step"] == 4 and status["win_rate_curve"][-1][0] == 4
    assert not (run_dir / ERROR_FILE).exists()
