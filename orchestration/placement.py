"""Ray start-up and where each actor runs: the same code on one CPU machine and on a GPU cluster."""

from __future__ import annotations

import os
import time

import ray

from orchestration.config import Config
from tasks.errors import SelfplayError

# Environment every actor gets: quiet engines, and DeepSpeed's CPU accelerator when there is no GPU.
_CPU_ENV = {"DS_ACCELERATOR": "cpu"}
# vLLM warns on every in-place reload that the rotary cache has no weights to load; ERROR keeps the console
# readable (set VLLM_LOGGING_LEVEL to see more).
_COMMON_ENV = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
               "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}


def start_ray(config: Config) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if config.ray.address:
        ray.init(address=config.ray.address, runtime_env={"env_vars": _COMMON_ENV})
        return
    # The in-process cluster listens on this machine only; token auth protects shared clusters.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = dict(_COMMON_ENV)
    if not _has_local_gpu():
        env.update(_CPU_ENV)
    ray.init(num_cpus=config.ray.num_cpus, object_store_memory=int(config.ray.object_store_gib * 2**30),
             include_dashboard=False, runtime_env={"env_vars": env}, logging_level="WARNING")


def _has_local_gpu() -> bool:
    import torch
    return torch.cuda.is_available()


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def check_capacity(config: Config) -> None:
    """Fail fast, naming the keys to change, when the actors cannot all be placed (Ray would wait forever).
    Only for the in-process cluster: an autoscaling cluster may still grow."""
    if config.ray.address:
        return
    roles = [actor_options("learner")] * config.learner.num_ranks + [actor_options("rollout")] * \
        config.rollout.num_workers + [preference_actor_options(config)] * config.preference.num_replicas
    need_cpu = sum(options["num_cpus"] for options in roles)
    need_gpu = sum(options["num_gpus"] for options in roles)
    deadline = time.monotonic() + 30  # actors killed a moment ago release their resources asynchronously
    free = ray.available_resources()
    while (need_cpu > free.get("CPU", 0) or need_gpu > free.get("GPU", 0)) and time.monotonic() < deadline:
        time.sleep(0.5)
        free = ray.available_resources()
    if need_cpu > free.get("CPU", 0) or need_gpu > free.get("GPU", 0):
        raise SelfplayError(
            f"the Ray cluster has {free.get('CPU', 0):g} free CPUs and {free.get('GPU', 0):g} GPUs, but "
            f"{config.learner.num_ranks} learner rank(s), {config.preference.num_replicas} preference replica(s) "
            f"and {config.rollout.num_workers} rollout worker(s) need {need_cpu:g} CPUs and "
            f"{need_gpu:g} GPUs: raise ray.num_cpus or lower rollout.num_workers, learner.num_ranks or "
            "preference.num_replicas")


def actor_options(role: str, cpu_threads_bind: str = "auto") -> dict:
    """Ray options for one actor of ``role`` (learner, rollout, preference, or preference_model: a preference
    replica with a neural model). ``cpu_threads_bind``: a rollout worker's core list for vLLM's CPU build
    (``VLLM_CPU_OMP_THREADS_BIND``)."""
    gpus = cluster_has_gpus()
    if role in ("learner", "rollout", "preference_model"):
        options: dict = {"num_cpus": 1, "num_gpus": 1 if gpus else 0}
    else:
        options = {"num_cpus": 0.5, "num_gpus": 0}
    if not gpus:
        env = {**_COMMON_ENV, **_CPU_ENV}
        if role == "rollout" and cpu_threads_bind != "auto":
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_threads_bind
        options["runtime_env"] = {"env_vars": env}
    return options


# Kinds that run a neural model of their own: on a GPU where the cluster has GPUs.
_MODEL_KINDS = ("reward_model", "pairwise", "judge")


def preference_actor_options(config: Config) -> dict:
    """Ray options for one preference replica: ``preference.num_cpus`` / ``num_gpus``, or the kind's default."""
    p = config.preference
    options = actor_options("preference_model" if p.kind in _MODEL_KINDS else "preference")
    if p.num_cpus != "auto":
        options["num_cpus"] = p.num_cpus
    if p.num_gpus != "auto":
        options["num_gpus"] = p.num_gpus
    return options


def learner_placement_group(num_ranks: int, timeout_s: float = 600.0):
    """One bundle per learner rank, packed onto as few nodes as possible (the ranks' collectives are the
    chattiest traffic); waits until Ray can place it and says so if it cannot."""
    from ray.util import placement_group, remove_placement_group

    bundle = {"CPU": actor_options("learner")["num_cpus"]}
    if actor_options("learner")["num_gpus"]:
        bundle["GPU"] = actor_options("learner")["num_gpus"]
    group = placement_group([dict(bundle) for _ in range(num_ranks)], strategy="PACK", name="")
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        raise SelfplayError(f"Ray could not place {num_ranks} learner rank(s) of {bundle} within {timeout_s:g} s: "
                            "lower learner.num_ranks or add nodes")
    return group
