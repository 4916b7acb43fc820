"""Write and restore a whole run's checkpoint: each owner writes its own part (the learner its engine state,
reference and policy; the controller its counters, data position and the initial policy's eval samples),
then the manifest and the ``latest`` pointer. The controller's state is msgpack, never pickle."""

from __future__ import annotations

import shutil
import time
from dataclasses import fields


from selfplay.learner.checkpoint_files import file_digest
from selfplay.learner.checkpoint_reshape import to_universal
from selfplay.orchestration.run import checkpoints as ckpt
from selfplay.orchestration.loop.pipeline import ExperienceItem
from selfplay.orchestration.health.faults import fault_point
from selfplay.orchestration.loop.prompt_stream import PromptStream
from selfplay.rollout.records import decode, encode

CONTROLLER_FILE = "controller.msgpack"


def save_checkpoint(controller) -> None:
    s = controller.state
    c = controller.config
    directory = ckpt.step_dir(controller.run_dir, s.step)
    if directory.exists():  # left over from a crash at this step: never trusted, rewritten
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    started = time.perf_counter()
    # async: pause the producer between batches; what it made but the learner has not trained on is saved
    queued = controller.pipeline.pause_and_snapshot() if controller.pipeline else []
    if controller.pipeline:
        s.next_tag = controller.pipeline.next_tag
    learner = controller.learner
    digests = {k: v for answer in learner.gather(learner.submit("save_checkpoint", str(directory)),
                                                   "save_checkpoint") for k, v in answer.items()}
    fault_point("checkpoint_after_engine", s.step)
    # Field by field, not dataclasses.asdict: that would turn the Completion records into plain dicts.
    run_state = {f.name: getattr(s, f.name) for f in fields(s)} | {"checkpoint_step": s.step}
    state = {"run_state": run_state, "stream": controller.stream.state(), "metrics": controller.metrics.state(),
             "queued": [{"tag": q.tag, "indices": q.indices, "groups": q.groups, "metrics": q.metrics,
                         "counts": dict(q.counts)}
                        for q in queued]}
    (directory / CONTROLLER_FILE).write_bytes(encode(state))
    digests[CONTROLLER_FILE] = file_digest(directory / CONTROLLER_FILE)
    fault_point("checkpoint_before_manifest", s.step)
    ckpt.write_manifest(directory, s.step, meta={
        "world_size": c.learner.num_ranks, "zero_stage": c.learner.zero_stage, "algorithm": c.algorithm.name,
        "policy_version": s.policy_version, "model_path": controller.model_path}, digests=digests)
    fault_point("checkpoint_before_latest", s.step)
    ckpt.point_latest(controller.run_dir, s.step)
    shutil.rmtree(controller.run_dir / "universal", ignore_errors=True)  # a reshaped older checkpoint
    s.checkpoint_step = s.step
    ckpt.apply_retention(controller.run_dir, c.checkpoint.keep_last, c.checkpoint.keep_every)
    controller.metrics.write(s.step, {"time/checkpoint": time.perf_counter() - started})
    if controller.pipeline:
        controller.pipeline.resume()
    fault_point("after_checkpoint", s.step)


def universal_dir(run_dir, step: int):
    return run_dir / "universal" / f"step-{step}"


def sink_states(ref: ckpt.CheckpointRef) -> dict:
    """The metrics sinks' states a checkpoint kept (tracking run ids), needed before the controller builds
    its sinks."""
    return decode((ref.path / CONTROLLER_FILE).read_bytes()).get("metrics", {})


def restore_checkpoint(controller, ref: ckpt.CheckpointRef, saved_ranks: int | None = None) -> None:
    """Learner state from the checkpoint, controller state likewise, then the weights pushed to every
    rollout engine before anything is sampled. A ZeRO checkpoint of another number of ranks (``saved_ranks``)
    is first reshaped into DeepSpeed's universal form, under ``<run>/universal/`` until the next checkpoint."""
    learner = controller.config.learner
    universal = None
    if saved_ranks is not None and saved_ranks != learner.num_ranks and learner.zero_stage > 0:
        print(f"checkpoint step-{ref.step} was written by {saved_ranks} learner ranks; reshaping its ZeRO-"
              f"{learner.zero_stage} state for {learner.num_ranks} (DeepSpeed universal checkpoint)", flush=True)
        universal = str(to_universal(ref.path / "engine" / "state", universal_dir(controller.run_dir, ref.step)))
    controller.learner.call("load_checkpoint", str(ref.path), universal)
    state = decode((ref.path / CONTROLLER_FILE).read_bytes())
    known = {f.name for f in fields(controller.state)}
    for key, value in state["run_state"].items():
        if key in known:
            setattr(controller.state, key, value)
    controller.stream = PromptStream.from_state(state["stream"])
    controller.restored_queue = [ExperienceItem(**q) for q in state.get("queued", [])]
    controller.push_current_weights()
