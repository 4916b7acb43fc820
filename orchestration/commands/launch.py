"""Start, resume and export runs: check every input before anything starts, then start Ray and the actors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from selfplay.orchestration.run import checkpoints as ckpt
from selfplay.orchestration.config.schema import Config
from selfplay.orchestration.config.loading import apply_overrides, config_from_dict, read_yaml, to_yaml
from selfplay.orchestration.config.resume_changes import structural_differences
from selfplay.orchestration.loop.controller import Controller
from selfplay.orchestration.health.heartbeat import recording_errors
from selfplay.errors import ConfigError, InputError, SelfplayError
from selfplay.orchestration.cluster.placement import plan_cluster, start_ray
from selfplay.orchestration.run.policy_model import resolve_policy_model
from selfplay.orchestration.telemetry.metrics import check_trackers_installed
from selfplay.orchestration.loop.run_checkpoint import restore_checkpoint, sink_states
from selfplay.orchestration.run.directory import archive_attempt, create_run_dir
from selfplay.orchestration.run.inputs import RunInputs, load_run_inputs


def _warn(message: str) -> None:
    print(f"selfplay: warning: {message}", file=sys.stderr, flush=True)


def prepare(config: Config) -> Controller:
    """A fresh run (or, with ``resume=auto`` and a usable checkpoint, the resumed one). Every input is read and
    checked before the run directory is made and before Ray starts."""
    check_trackers_installed(config.metrics)
    run_dir = Path(config.run.output_dir) / config.run.name
    if config.resume == "auto" and (run_dir / "config.yaml").is_file():
        found = ckpt.find_resumable(run_dir, warn=_warn)
        if found is not None:
            return prepare_resume(run_dir, config, found=found)  # verified once: each file is read once
        kept = archive_attempt(run_dir)
        _warn(f"resume=auto: {run_dir} has no complete checkpoint; starting it afresh (what the earlier attempt "
              f"left is in {kept})")
    inputs = load_run_inputs(config)
    run_dir = create_run_dir(config)
    inputs.model_path = inputs.model_path or resolve_policy_model(config, run_dir)
    _report_inputs(inputs)
    plan = plan_cluster(config)
    start_ray(config.ray, plan, reaper_log=run_dir / "reaper.log")
    with recording_errors(run_dir):  # the run directory is ours from here on: a failed start is recorded
        return Controller(config, run_dir, inputs, plan)


def _report_inputs(inputs: RunInputs) -> None:
    s = inputs.summary()
    over = [f"{s['dropped_overlong']} dropped" if s["dropped_overlong"] else "",
            f"{s['truncated_overlong']} truncated" if s["truncated_overlong"] else ""]
    over_text = f" ({', '.join(o for o in over if o)} as longer than {s['prompt_budget_tokens']} tokens)" \
        if any(over) else ""
    answers = s["trailing_answers_dropped"]
    answers_text = f"; {answers} chats ended with an assistant turn, dropped (task.trailing_assistant_turns)" \
        if answers else ""
    print(f"prompts: {s['train_prompts']} for training, {s['eval_prompts']} for evaluation{over_text}; "
          f"engine context {s['max_model_len']} tokens{answers_text}", flush=True)


def load_run_config(run_dir: Path, overrides: list[str]) -> tuple[Config, Config]:
    """(the saved config, the saved config with ``overrides``); overrides may not change what is learnt."""
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"{run_dir} is not a selfplay run directory (no config.yaml)")
    saved = config_from_dict(read_yaml(run_dir / "config.yaml"))
    data = apply_overrides(read_yaml(run_dir / "config.yaml"), overrides)
    data.setdefault("run", {}).update({"output_dir": str(run_dir.parent), "name": run_dir.name})
    new = config_from_dict(data)
    return saved, new


def prepare_resume(run_dir: Path, config: Config | None = None, overrides: list[str] = (),
                   found: tuple[ckpt.CheckpointRef, dict] | None = None) -> Controller:
    saved, new = load_run_config(run_dir, list(overrides))
    if config is not None:  # resume=auto from `selfplay train`: the given config must match the saved one
        new = config
    changed = structural_differences(saved, new)
    if changed:
        raise ConfigError(f"cannot resume {run_dir} with a different {', '.join(changed)} (it changes what the "
                          "run learns); start a new run instead")
    check_trackers_installed(new.metrics)
    found = found or ckpt.find_resumable(run_dir, warn=_warn)
    if found is None:
        raise InputError(f"{run_dir} has no complete checkpoint to resume from")
    ref, manifest = found
    meta = manifest["meta"]
    if meta.get("zero_stage") != new.learner.zero_stage:
        raise ConfigError(f"checkpoint {ref.path} was written with learner.zero_stage={meta.get('zero_stage')}; this "
                          f"run asks for learner.zero_stage={new.learner.zero_stage} (DeepSpeed's engine state is "
                          "laid out per stage)")
    model_path = meta["model_path"]
    if not Path(model_path).exists() and (run_dir / "initial_model").is_dir():
        model_path = str(run_dir / "initial_model")  # the run directory was moved
    inputs = load_run_inputs(new)
    inputs.model_path = model_path
    (run_dir / "config.yaml").write_text(to_yaml(new), encoding="utf-8")
    _report_inputs(inputs)
    plan = plan_cluster(new)
    start_ray(new.ray, plan, reaper_log=run_dir / "reaper.log")
    with recording_errors(run_dir):
        controller = Controller(new, run_dir, inputs, plan, metrics_from_step=ref.step,
                                sink_states=sink_states(ref))
        try:
            controller.phase("start-up: restore")
            restore_checkpoint(controller, ref, saved_ranks=meta.get("world_size"))
        except BaseException as exc:
            controller.shutdown(failed=True)
            controller.watchdog.check(exc)
            raise
    return controller


def run_to_end(controller: Controller, auto_resumes: int = 0) -> dict:
    """Run, then stop every actor; an error the run dies of is written to ``error.json`` (a stop by SIGTERM or
    Ctrl-C, which checkpoints, is not one)."""
    failed = True
    try:
        with recording_errors(controller.run_dir):
            summary = controller.run(auto_resumes)
        failed = False
        return summary
    finally:
        controller.shutdown(failed=failed)


def train(config: Config) -> dict:
    """Run a whole training job; returns the summary also written to ``summary.json``."""
    return run_with_auto_resume(prepare(config))


def resume(run_dir: str | Path, overrides: list[str]) -> dict:
    return run_with_auto_resume(prepare_resume(Path(run_dir), overrides=overrides))


def recoverable(exc: BaseException) -> bool:
    """A failure a restart from the last checkpoint may get past: an actor that died (a learner rank, or a worker
    past its restarts), an error from inside an actor, a hung step. Not a bad input or config (they would fail
    again), not a stop asked for."""
    import ray

    from selfplay.actors.actor_failures import ActorLost
    from selfplay.orchestration.health.watchdog import StepHung

    return isinstance(exc, (ray.exceptions.RayError, ActorLost, StepHung)) and not isinstance(exc, SelfplayError)


def run_with_auto_resume(controller: Controller) -> dict:
    """``run_to_end``; after a recoverable failure, up to ``run.auto_resume`` times: the whole run again (new
    actors and all) from its last complete checkpoint, or from the start when it has none."""
    config = controller.config
    for attempt in range(config.run.auto_resume + 1):
        try:
            return run_to_end(controller, attempt)
        except Exception as exc:
            if attempt == config.run.auto_resume or not recoverable(exc):
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _warn(f"the run failed ({type(exc).__name__}: {reason}); auto-resume {attempt + 1} of "
                  f"{config.run.auto_resume}: restarting it from its last complete checkpoint")
            # The next attempt resumes, or starts afresh beside this one's evidence: never over it.
            config = config.model_copy(update={"resume": "auto", "run": config.run.model_copy(update={"overwrite": False})})
            controller = prepare(config)
    raise AssertionError("unreachable")


def export(run_dir: str | Path, out_dir: str | Path, step: int | None = None) -> Path:
    """Copy a verified checkpoint's policy to ``out_dir`` as a Hugging Face model directory."""
    run_dir, out = Path(run_dir), Path(out_dir)
    if step is None:
        found = ckpt.find_resumable(run_dir, warn=_warn)
        if found is None:
            raise InputError(f"{run_dir} has no complete checkpoint to export")
        ref = found[0]
    else:
        ref = ckpt.CheckpointRef(step, ckpt.step_dir(run_dir, step))
        if not ref.path.is_dir():
            raise InputError(f"{run_dir} has no checkpoint at step {step}")
        try:
            ckpt.verify(ref.path)
        except ckpt.CheckpointError as exc:
            raise InputError(str(exc)) from None
    if out.exists() and any(out.iterdir()):
        raise InputError(f"export directory {out} exists and is not empty")
    shutil.copytree(ref.path / "policy", out, dirs_exist_ok=True)
    return out
