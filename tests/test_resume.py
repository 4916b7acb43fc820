"""Crash, pre-emption and resume, through the real `selfplay` driver process: kill -9 at several moments
(fault-injection points and an external kill), SIGTERM, a corrupted checkpoint, structural changes.
Sync mode is deterministic, so every resumed run must end bitwise equal to an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from selfplay.orchestration.run import checkpoints as ckpt

pytestmark = pytest.mark.slow

STEPS = 16
BASE = [f"run.total_steps={STEPS}", "checkpoint.every_steps=4", "checkpoint.keep_last=3", "eval.every_steps=0",
        "task.num_eval_prompts=8", "run.log_every=1"]


def run_cli(cli, args, cwd, fault=None, timeout=300):
    env = dict(os.environ)
    env.pop("SELFPLAY_FAULT", None)
    if fault:
        env["SELFPLAY_FAULT"] = fault
    proc = subprocess.Popen([cli, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _kill_group(proc.pid)  # a killed driver leaves Ray's helper processes behind
    return proc.returncode, out, err


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def train(cli, tmp_path, name, *extra, fault=None):
    return run_cli(cli, ["train", *BASE, f"run.output_dir={tmp_path}", f"run.name={name}", *extra], tmp_path, fault)


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)), f"duplicate or out-of-order steps: {steps}"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def tensorboard_steps(run_dir, tag="loss"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def final(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def straight(selfplay_cli, tmp_path_factory):
    """The uninterrupted run every resumed run is compared with."""
    tmp = tmp_path_factory.mktemp("straight")
    rc, out, err = train(selfplay_cli, tmp, "straight")
    assert rc == 0, err[-2000:]
    run_dir = tmp / "straight"
    return run_dir, losses(run_dir), final(run_dir)


def assert_same_as_straight(run_dir, straight):
    _, straight_losses, straight_summary = straight
    assert losses(run_dir) == straight_losses  # bitwise: floats round-trip exactly through JSON
    assert tensorboard_steps(run_dir) == list(range(1, STEPS + 1))  # no gap, no duplicate after the resume
    summary = final(run_dir)
    assert summary["last_push"]["digest"] == straight_summary["last_push"]["digest"]
    for key in ("steps", "samples", "policy_version", "win_rate_vs_initial"):
        assert summary[key] == straight_summary[key], key


def test_kill_after_a_train_step_then_resume_is_bitwise_identical(selfplay_cli, tmp_path, straight):
    rc, _, _ = train(selfplay_cli, tmp_path, "r", fault="after_train_step@10")
    assert rc == -signal.SIGKILL
    run_dir = tmp_path / "r"
    assert ckpt.find_resumable(run_dir)[0].step == 8
    rc, out, err = run_cli(selfplay_cli, ["resume", str(run_dir)], tmp_path)
    assert rc == 0, err[-2000:]
    assert "resuming at step 8/16" in out
    assert_same_as_straight(run_dir, straight)


@pytest.mark.parametrize("point", ["checkpoint_after_engine", "checkpoint_before_manifest", "checkpoint_before_latest"])
def test_kill_during_a_checkpoint_write_never_loads_it(selfplay_cli, tmp_path, straight, point):
    rc, _, _ = train(selfplay_cli, tmp_path, "r", fault=f"{point}@8")
    assert rc == -signal.SIGKILL
    run_dir = tmp_path / "r"
    assert ckpt.step_dir(run_dir, 8).is_dir()  # the interrupted write left a directory behind...
    assert ckpt.find_resumable(run_dir, warn=lambda m: None)[0].step == 4  # ...which is never chosen
    if point == "checkpoint_before_latest":  # complete on disk, but the pointer never moved: resume from 4
        rc, out, err = run_cli(selfplay_cli, ["resume", str(run_dir)], tmp_path)
        assert rc == 0, err[-2000:]
        assert "resuming at step 4/16" in out
        assert_same_as_straight(run_dir, straight)


def test_kill_before_the_first_checkpoint(selfplay_cli, tmp_path, straight):
    rc, _, _ = train(selfplay_cli, tmp_path, "r", fault="after_push@2")
    assert rc == -signal.SIGKILL
    rc, _, err = run_cli(selfplay_cli, ["resume", str(tmp_path / "r")], tmp_path)
    assert rc == 2 and "has no complete checkpoint to resume from" in err
    # resume=auto on the same command starts the run afresh instead
    rc, _, err = train(selfplay_cli, tmp_path, "r", "resume=auto")
    assert rc == 0, err[-2000:]
    assert_same_as_straight(tmp_path / "r", straight)


def _wait_for_step(run_dir, step, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it was interrupted"
        path = run_dir / "metrics.jsonl"
        if path.exists():
            done = [json.loads(line)["step"] for line in path.read_text().splitlines()
                    if line.strip().endswith("}") and '"loss"' in line]
            if done and max(done) >= step:
                return max(done)
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached")


def _start(cli, tmp_path, name, *extra):
    args = ["train", *BASE, f"run.output_dir={tmp_path}", f"run.name={name}", *extra]
    return subprocess.Popen([cli, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_external_kill_9_then_resume_auto(selfplay_cli, tmp_path, straight):
    proc = _start(selfplay_cli, tmp_path, "r")
    try:
        _wait_for_step(tmp_path / "r", 9, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_group(proc.pid)
    ref, _ = ckpt.find_resumable(tmp_path / "r", warn=lambda m: None)
    assert ref.step in (8, 12)
    rc, out, err = train(selfplay_cli, tmp_path, "r", "resume=auto")
    assert rc == 0, err[-2000:]
    assert f"resuming at step {ref.step}/16" in out
    assert_same_as_straight(tmp_path / "r", straight)


def test_sigterm_checkpoints_and_exits_zero(selfplay_cli, tmp_path, straight):
    proc = _start(selfplay_cli, tmp_path, "r", "checkpoint.every_steps=100")
    try:
        _wait_for_step(tmp_path / "r", 6, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        _kill_group(proc.pid)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by SIGTERM after step" in out
    stopped_at = int(out.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert 6 <= stopped_at < STEPS
    assert ckpt.latest_pointer(tmp_path / "r") == stopped_at
    rc, _, err = run_cli(selfplay_cli, ["resume", str(tmp_path / "r"), "checkpoint.every_steps=4"], tmp_path)
    assert rc == 0, err[-2000:]
    assert_same_as_straight(tmp_path / "r", straight)


def test_corrupted_latest_checkpoint_falls_back(selfplay_cli, tmp_path, straight):
    run_dir = tmp_path / "r"
    shutil.copytree(straight[0], run_dir)
    latest = ckpt.latest_pointer(run_dir)
    assert latest == STEPS
    (ckpt.step_dir(run_dir, latest) / "controller.msgpack").write_bytes(b"garbage")
    rc, out, err = run_cli(selfplay_cli, ["resume", str(run_dir)], tmp_path)
    assert rc == 0, err[-2000:]
    assert "controller.msgpack does not match its checksum" in err
    assert "resuming at step 12/16" in out
    assert_same_as_straight(run_dir, straight)


@pytest.mark.parametrize("override, key", [("learner.zero_stage=2", "learner.zero_stage"),
                                           ("rollout.k=8", "rollout.k"),
                                           ("policy.model_path=/elsewhere", "policy.model_path")])
def test_structural_change_is_refused(selfplay_cli, tmp_path, straight, override, key):
    rc, _, err = run_cli(selfplay_cli, ["resume", str(straight[0]), override], tmp_path)
    assert rc == 2
    assert f"cannot resume {straight[0]} with a different {key}" in err
    assert len(err.strip().splitlines()) == 1


def test_resume_on_other_resources_and_a_smaller_micro_batch_continues_the_run(selfplay_cli, tmp_path, straight):
    """What a user changes after running out of memory or being given other nodes is accepted on resume; the
    smaller micro-batch sums the same gradients in another order, so the next steps equal the uninterrupted run's
    to float rounding, not bitwise."""
    rc, _, _ = train(selfplay_cli, tmp_path, "r", fault="after_train_step@14")
    assert rc == -signal.SIGKILL
    run_dir = tmp_path / "r"
    assert ckpt.find_resumable(run_dir)[0].step == 12
    rc, out, err = run_cli(selfplay_cli, [
        "resume", str(run_dir), "learner.micro_batch_size=8", "learner.gradient_checkpointing=true",
        "rollout.vllm.gpu_memory_utilization=0.3", "sync.verify_digest=false", "preference.num_cpus=0.5",
        "learner.num_cpus=1.5", "rollout.resources={}", "rollout.num_workers=1"], tmp_path)
    assert rc == 0, err[-2000:]
    assert "resuming at step 12/16" in out
    resumed, (_, straight_losses, _) = losses(run_dir), straight
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in range(13, STEPS + 1):
        assert resumed[step] == pytest.approx(straight_losses[step], rel=1e-4, abs=1e-5), step


def test_a_two_rank_zero2_run_resumes_on_one_rank(selfplay_cli, tmp_path):
    """A pre-empted job that comes back on fewer devices: `selfplay resume ... learner.num_ranks=1` reshapes the
    two ranks' ZeRO-2 state through DeepSpeed's universal checkpoint, optimizer state kept, and the next steps'
    losses equal the uninterrupted two-rank run's."""
    two = ["learner.num_ranks=2", "learner.zero_stage=2", "ray.num_cpus=4"]
    rc, _, err = train(selfplay_cli, tmp_path, "straight2", *two)
    assert rc == 0, err[-2000:]
    rc, _, _ = train(selfplay_cli, tmp_path, "r", *two, fault="after_train_step@10")
    assert rc == -signal.SIGKILL
    run_dir = tmp_path / "r"
    rc, out, err = run_cli(selfplay_cli, ["resume", str(run_dir), "learner.num_ranks=1"], tmp_path)
    assert rc == 0, err[-2000:]
    assert "resuming at step 8/16" in out and "written by 2 learner ranks; reshaping its ZeRO-2 state for 1" in out
    assert not (run_dir / "universal").exists()  # gone once the resumed run wrote a checkpoint of its own
    resumed, straight_losses = losses(run_dir), losses(tmp_path / "straight2")
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in range(9, STEPS + 1):
        assert resumed[step] == pytest.approx(straight_losses[step], rel=1e-4, abs=1e-5), step


def test_resume_can_extend_a_finished_run(selfplay_cli, tmp_path, straight):
    run_dir = tmp_path / "r"
    shutil.copytree(straight[0], run_dir)
    rc, out, err = run_cli(selfplay_cli, ["resume", str(run_dir), "run.total_steps=20"], tmp_path)
    assert rc == 0, err[-2000:]
    assert "resuming at step 16/20" in out
    assert sorted(losses(run_dir)) == list(range(1, 21))
    assert final(run_dir)["steps"] == 20 and final(run_dir)["policy_version"] == 20


def test_export_cli(selfplay_cli, tmp_path, straight):
    rc, out, err = run_cli(selfplay_cli, ["export", str(straight[0]), str(tmp_path / "m"), "--step", "12"], tmp_path)
    assert rc == 0, err
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    rc, _, err = run_cli(selfplay_cli, ["export", str(straight[0]), str(tmp_path / "n"), "--step", "7"], tmp_path)
    assert rc == 2 and "has no checkpoint at step 7" in err
    rc, _, err = run_cli(selfplay_cli, ["export", str(straight[0]), str(tmp_path / "m")], tmp_path)
    assert rc == 2 and "is not empty" in err
