"""The rollout engines of a colocated run (rollout.colocate): one in each learner rank's actor, on its devices,
behind the interface of ``RolloutFleet`` so the loop does not tell the placements apart.

Generation is data parallel over the ranks: each samples a contiguous shard of the prompts, with the shard's own
seed (as the separate fleet seeds a worker's shard), so the batch does not depend on which rank drew which shard.
A push is a load inside each rank's process (``LearnerWorker.load_engine_weights``), versioned and, with
``verify``, checked: every rank must report the version and the same digest.

There are no restarts: an engine is part of its learner rank, whose state a restarted process would not have. A
rank that dies stops the run as a learner failure (``run.auto_resume`` restarts the whole run from its last
checkpoint)."""

from __future__ import annotations

import time

from selfplay.actors.learner_group import LearnerGroup
from selfplay.actors.preference_replicas import contiguous_shards
from selfplay.actors.rollout_fleet import shard_generate_call
from selfplay.rollout.records import Completion, SamplingSpec


class ColocatedFleet:
    restarts = 0   # engines restarted: never (see the module docstring)
    retries = 0
    endpoint = None  # no transport

    def __init__(self, learner: LearnerGroup, verify: bool) -> None:
        self.learner = learner
        self.verify = verify
        self.version = 0

    @property
    def workers(self) -> list:
        return self.learner.ranks

    def attach(self, kind: str, seed: int, mixture: bool, vllm_options: dict) -> None:
        """Build every rank's engine at once (vLLM's start-up is a collective of the ranks' world), rank r seeded
        ``seed + r`` as rollout worker r is."""
        self.learner.gather([rank.attach_engine.remote(kind, seed + r, mixture, vllm_options)
                             for r, rank in enumerate(self.workers)], "attach_engine")

    def open_transport(self) -> None:
        """Nothing to open: the weights never leave the process."""

    def generate(self, indices: list[int], token_ids: list[list[int]], prompts: list, spec: SamplingSpec,
                 mixture_beta: float | None = None, policy_n: int = 0) -> list[list[Completion]]:
        return self._sharded(len(token_ids), shard_generate_call(indices, token_ids, prompts, spec, mixture_beta,
                                                                 policy_n), "generate")

    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        return self._sharded(len(prefixes), lambda rank, shard: rank.next_token_logprobs.remote(
            [prefixes[i] for i in shard], token_ids), "next_token_logprobs")

    def _sharded(self, count: int, call, method: str) -> list:
        shards = contiguous_shards(count, len(self.workers))
        futures = [call(rank, shard) for rank, shard in zip(self.workers, shards)]
        return [item for part in self.learner.gather(futures, method) for item in part]

    def push(self, version: int) -> dict:
        start = time.perf_counter()
        loaded = self.learner.gather(self.learner.submit("load_engine_weights", version, self.verify),
                                     "load_engine_weights")
        if {v for v, _ in loaded} != {version} or len({d for _, d in loaded}) != 1:
            raise RuntimeError(f"colocated weight load {version} did not agree across the learner ranks: {loaded}")
        seconds = time.perf_counter() - start
        self.version = version
        return {"version": version, "backend": "in_process", "seconds": seconds, "bytes": 0, "buckets": 0,
                "tensors": 0, "digest": loaded[0][1], "wall_seconds": seconds}

    def shares_weights(self) -> list[bool]:
        """Each rank: does its engine generate with the learner's own parameters (no copy)?"""
        return self.learner.gather(self.learner.submit("engine_shares_weights"), "engine_shares_weights")

    def pids(self) -> list[int]:
        return []  # the learner ranks' processes, listed as such

    def shutdown(self) -> None:
        """The engines end with their learner ranks (``LearnerGroup.shutdown``)."""
