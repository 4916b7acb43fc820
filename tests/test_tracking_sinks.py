"""The metrics sinks: TensorBoard read back with its own reader equals the JSONL, evaluation samples reach every
sink, and the trackers (W&B offline, MLflow with a local SQLite store) keep one run across a resume, each step
logged once. The end-to-end test stops a real run with SIGTERM and resumes it through the `selfplay` CLI."""

import json
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.telemetry.metrics import MetricsLog, check_trackers_installed
from selfplay.errors import ConfigError

SAMPLES = [{"prompt_index": i, "prompt": f"sort: c a {i}", "current": "a c", "initial": "c | a",
            "p_current_wins": 0.25 * i} for i in range(3)]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path / "wandb_dir"


def metrics_config(*overrides):
    return load_config(None, list(overrides)).metrics


def rows(step):
    return {"loss": 1.0 / step, "samples": 16.0 * step, "time/train": 0.5 + step}


def wandb_history(run_folder: Path, exit_codes: list | None = None) -> tuple[str, list[dict], bool]:
    """(run id, history rows, finished) of one W&B offline run folder, read from its ``.wandb`` transaction log: a W&B
    header, then LevelDB log records (32 KiB blocks; each chunk: crc32, length, type) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_folder.glob("run-*.wandb")
    data, pos, pending, run_id, history, finished = path.read_bytes(), 7, b"", None, [], False
    exit_codes = [] if exit_codes is None else exit_codes  # the exit records' codes, appended
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        pending, pos = pending + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind not in (1, 4):  # FULL or LAST ends a record
            continue
        record = pb.Record()
        record.ParseFromString(pending)
        pending = b""
        if record.WhichOneof("record_type") == "run":
            run_id = record.run.run_id
        elif record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                     for item in record.history.item}
            history.append({k: v for k, v in items.items() if not k.startswith("_") or k == "_step"})
        if record.WhichOneof("record_type") == "exit":
            finished = True
            exit_codes.append(record.exit.exit_code)
    return run_id, history, finished


def wandb_history_when_written(run_folder: Path, timeout: float = 30) -> tuple[str, list[dict]]:
    """W&B's service may still be writing the log when ``finish`` returns: wait for its exit record."""
    deadline = time.time() + timeout
    while True:
        run_id, history, finished = wandb_history(run_folder)
        if finished or time.time() > deadline:
            return run_id, history
        time.sleep(0.2)


def test_tensorboard_events_equal_the_jsonl_and_samples_reach_every_sink(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path)
    for step in range(1, 5):
        log.write(step, {**rows(step), "nan_metric": float("nan")})
    log.write_samples(3, SAMPLES)
    log.close()
    jsonl = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    for key in ("loss", "samples", "time/train"):
        assert [(e.step, e.value) for e in events.Scalars(key)] == \
            [(r["step"], float(np.float32(r[key]))) for r in jsonl]  # TensorBoard stores float32
    assert "nan_metric" not in events.Tags()["scalars"] and all("nan_metric" not in r for r in jsonl)
    (text,) = events.Tensors("eval/samples/text_summary")
    assert text.step == 3 and "c \\| a" in text.tensor_proto.string_val[0].decode()
    written = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert written == [{"step": 3, **s} for s in SAMPLES]


def test_mlflow_resume_continues_the_run_with_each_step_once(tmp_path):
    from mlflow.tracking import MlflowClient

    config = metrics_config("metrics.mlflow.enabled=true")
    log = MetricsLog(tmp_path, config=config)
    for step in range(1, 6):
        log.write(step, rows(step))
    log.write_samples(3, SAMPLES)
    state = log.state()  # a checkpoint at step 4 kept this; the process then crashed after step 5
    assert set(state) == {"mlflow"}
    resumed = MetricsLog(tmp_path, resume_after_step=4, sink_states=state, config=config)
    for step in range(5, 8):
        resumed.write(step, {**rows(step), "loss": 2.0 / step})
    resumed.close()
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("selfplay").experiment_id])
    assert run.info.run_id == state["mlflow"]["run_id"] and run.info.status == "FINISHED"
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4, 5, 6, 7]
    assert history[5] == 1.0 / 5 and history[6] == 2.0 / 6  # step 5 keeps the value logged first
    assert json.loads((Path(client.download_artifacts(run.info.run_id, "samples/step_3.json",
                                                      str(tmp_path / "dl")))).read_text()) == SAMPLES


def test_wandb_offline_resume_keeps_the_run_id(tmp_path, offline_wandb):
    config = metrics_config("metrics.wandb.enabled=true")
    log = MetricsLog(tmp_path, config=config, run_config={"run": {"name": "t"}})
    for step in range(1, 4):
        log.write(step, rows(step))
    log.write_samples(3, SAMPLES)
    state = log.state()
    log.close()
    resumed = MetricsLog(tmp_path, resume_after_step=3, sink_states=state, config=config)
    for step in range(4, 6):
        resumed.write(step, rows(step))
    resumed.close()
    folders = sorted((offline_wandb / "wandb").glob("offline-run-*"))
    run_id = state["wandb"]["run_id"]
    # A resume within the same second as the start gets W&B's ``-1`` suffix on the folder name.
    assert len(folders) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", f.name)
                                     for f in folders), folders
    histories = [wandb_history_when_written(f) for f in folders]
    assert [h[0] for h in histories] == [run_id, run_id]
    steps = [row["_step"] for _, history in histories for row in history]
    assert steps == [1, 2, 3, 4, 5]
    first = histories[0][1]
    assert first[2]["eval/samples/_type"] == "table-file" and first[0]["loss"] == 1.0


def test_a_failed_run_closes_its_trackers_as_failed_and_a_failing_sink_never_stops_it(tmp_path, offline_wandb,
                                                                                       capsys):
    from mlflow.tracking import MlflowClient

    class BrokenTracker:  # a tracker whose service is gone: every call raises
        name = "broken"

        def write(self, step, row):
            raise ConnectionError("tracker unreachable\nretry later")

        write_samples = close = write

        def state(self):
            return {}

        def where(self):
            return None

    config = metrics_config("metrics.mlflow.enabled=true", "metrics.wandb.enabled=true")
    log = MetricsLog(tmp_path, config=config, run_config={})
    log.sinks.append(BrokenTracker())
    for step in range(1, 4):
        log.write(step, rows(step))
    log.close(failed=True)
    log.close(failed=True)  # every exit path may call it: once is what happens
    assert log.errors == {"broken": 4}  # three writes and the close; warned about once
    warnings = [line for line in capsys.readouterr().err.splitlines() if "metrics sink broken failed" in line]
    assert len(warnings) == 1 and "ConnectionError: tracker unreachable" in warnings[0]
    jsonl = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("metrics/sink_errors") for r in jsonl] == [None, 1, 2]
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("selfplay").experiment_id])
    assert run.info.status == "FAILED"
    (folder,) = (offline_wandb / "wandb").glob("offline-run-*")
    deadline, codes = time.time() + 30, []
    while not codes and time.time() < deadline:
        codes.clear()
        wandb_history(folder, codes)
        time.sleep(0.2)
    assert codes == [1]


def test_an_enabled_tracker_that_is_not_installed_is_one_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"metrics.wandb.enabled.*pip install wandb"):
        check_trackers_installed(metrics_config("metrics.wandb.enabled=true"))
    check_trackers_installed(metrics_config("metrics.mlflow.enabled=true"))


@pytest.mark.slow
def test_sigterm_then_resume_continues_one_wandb_and_one_mlflow_run(selfplay_cli, tmp_path):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir"), "WANDB_SILENT": "true"}
    env.pop("SELFPLAY_FAULT", None)
    run_dir = tmp_path / "r"
    args = ["train", f"run.output_dir={tmp_path}", "run.name=r", "run.total_steps=6", "checkpoint.every_steps=2",
            "eval.every_steps=3", "task.num_eval_prompts=8", "run.log_every=1", "metrics.wandb.enabled=true",
            "metrics.mlflow.enabled=true"]
    proc = subprocess.Popen([selfplay_cli, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _logged_steps(run_dir) or max(_logged_steps(run_dir)) < 1:
            assert proc.poll() is None and time.time() < deadline, "the run ended before it was interrupted"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        _kill_group(proc.pid)
    assert proc.returncode == 0, err[-2000:]
    stopped_at = int(out.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert 1 <= stopped_at < 6
    resume = subprocess.run([selfplay_cli, "resume", str(run_dir)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300, start_new_session=True)
    assert resume.returncode == 0, resume.stderr[-2000:]

    # MLflow: one run, every step of the loss once, the evaluation samples as artifacts
    client = MlflowClient(f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("selfplay").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "win_rate_vs_initial")] == [3, 6]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "samples")} == \
        {"samples/step_3.json", "samples/step_6.json"}
    # W&B offline: one folder per process, under one run id; together every step once
    folders = sorted((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))
    histories = [wandb_history_when_written(f) for f in folders]
    assert len(folders) == 2 and {h[0] for h in histories} == {folders[0].name.rsplit("-", 1)[1]}
    loss_steps = [row["_step"] for _, history in histories for row in history if "loss" in row]
    assert loss_steps == [1, 2, 3, 4, 5, 6]
    assert [row["_step"] for _, history in histories for row in history
            if "eval/samples/_type" in row] == [3, 6]
    # the JSONL rows and the samples, each step once
    assert _logged_steps(run_dir) == [1, 2, 3, 4, 5, 6]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [3] * 8 + [6] * 8
    assert all(0 <= s["p_current_wins"] <= 1 and s["current"] and s["initial"] for s in samples)


def _logged_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines()
            if line.strip().endswith("}") and '"loss"' in line]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
