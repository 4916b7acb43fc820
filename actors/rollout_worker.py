"""Ray actor around one rollout engine (vLLM or torch)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import ray

from selfplay.actors.actor_failures import exit_for_restart
from selfplay.actors.startup_gc import collector_paused

from selfplay.rollout.records import Completion, SamplingSpec


@ray.remote
class RolloutWorker:
    def __init__(self, engine: str, model_path: str, dtype: str, seed: int, vllm_options: dict,
                 reference_path: str | None = None, metrics_tags: dict[str, str] | None = None) -> None:
        """``metrics_tags`` (``run``, ``engine``): forward the vLLM engine's statistics to Prometheus through Ray's
        metrics (actors/ray_metrics.py); None: off."""
        from selfplay.rollout.engine import build_engine

        cores = os.environ.get("SELFPLAY_CPU_CORES")  # rollout.cpu_threads_bind (orchestration/cluster/placement.py)
        if cores:  # vLLM binds threads only in its multiprocess engines; this one computes in this process
            os.sched_setaffinity(0, [int(c) for c in cores.split(",")])
        export = metrics_tags is not None and engine == "vllm"
        options = {**vllm_options, "log_stats": True} if export else vllm_options
        with collector_paused():
            self._engine = build_engine(engine, model_path, dtype, seed, options, reference_path)
        self._digest = ""
        if export:
            from selfplay.actors.ray_metrics import EngineStatsExporter
            self._stats = EngineStatsExporter(self._engine.stats, metrics_tags)

    def generate(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                 prompts: list | None = None) -> list[list[Completion]]:
        with engine_alive():
            return self._engine.generate(prompt_token_ids, prompt_indices, spec, prompts)

    def pid(self) -> int:
        return os.getpid()

    # -- weight transport (see actors/weight_transport.py for the calling order) ----------------------

    def connect_weight_transport(self, kind: str, endpoint: dict, rank: int) -> None:
        """Join the learner's transport as ``rank`` (1..number of rollout workers). A collective: the learner's
        ``connect_weight_transport`` and every other worker's must be submitted before any is awaited."""
        self._engine.connect_weight_transport(kind, endpoint, rank)

    def receive_weights(self, version: int, source: list | None = None, verify: bool = True) -> tuple[int, str]:
        """Receive push ``version``; returns (policy version, digest of the loaded tensors). ``source``:
        ``[learner.send_weights.remote(version)]``, the ObjectRef wrapped in a list so Ray hands it over
        unresolved (broadcast ignores it; the object store reads the buckets through it)."""
        self._digest = self._engine.receive_weights(version, source, verify)
        return self._engine.policy_version, self._digest

    def close_weight_transport(self) -> None:
        self._engine.close_weight_transport()

    def weights_state(self) -> tuple[int, str]:
        return self._engine.policy_version, self._digest

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        return self._engine.sequence_logprobs(token_ids)

    def generate_mixture(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                         beta: float, prompts: list | None = None, policy_n: int = 0) -> list[list[Completion]]:
        with engine_alive():
            return self._engine.generate_mixture(prompt_token_ids, prompt_indices, spec, beta, prompts, policy_n)

    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        return self._engine.next_token_logprobs(prefixes, token_ids)


@contextmanager
def engine_alive():
    """vLLM's engine core is a process of its own; once it has died every call fails with ``EngineDeadError``
    while this actor lives on. Exit instead, so that Ray restarts the worker with a new engine."""
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ == "EngineDeadError":
            exit_for_restart(f"the vLLM engine died ({exc})")
        raise
