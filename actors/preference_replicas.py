"""The preference service's replicas (``preference.num_replicas``) as one handle for the controller.

Every batch is split into contiguous shards, one per replica, asked at once and put back together in order, so a
batch costs the time of its largest shard. Each replica holds its own copy of the model (a reward model, a judge
with its own vLLM engine) and its own resources.
"""

from __future__ import annotations

import time

import numpy as np
import ray

from preference.stats import PreferenceStats
from rollout.records import Completion


def contiguous_shards(count: int, parts: int) -> list[range]:
    """``count`` items in at most ``parts`` contiguous, non-empty shards whose sizes differ by at most one."""
    parts = max(1, min(parts, count))
    size, extra = divmod(count, parts)
    shards, start = [], 0
    for p in range(parts):
        end = start + size + (1 if p < extra else 0)
        shards.append(range(start, end))
        start = end
    return shards


class PreferenceReplicas:
    def __init__(self, replicas: list) -> None:
        self.replicas = replicas

    def _spread(self, method: str, count: int, args_of_shard) -> tuple[list, float]:
        """Call ``method`` on each replica with its shard's arguments; (the answers in shard order, seconds)."""
        started = time.perf_counter()
        shards = contiguous_shards(count, len(self.replicas)) if count else []
        answers = ray.get([getattr(replica, method).remote(*args_of_shard(shard))
                           for replica, shard in zip(self.replicas, shards)])
        return answers, time.perf_counter() - started

    def matrices(self, groups: list[list[Completion]]) -> tuple[list[np.ndarray], PreferenceStats]:
        answers, seconds = self._spread("matrices", len(groups), lambda s: ([groups[i] for i in s],))
        return [m for matrices, _ in answers for m in matrices], PreferenceStats.combined(
            [stats for _, stats in answers], seconds)

    def compare(self, first: list[Completion], second: list[Completion]) -> tuple[list[float], PreferenceStats]:
        answers, seconds = self._spread("compare", len(first),
                                        lambda s: ([first[i] for i in s], [second[i] for i in s]))
        return [p for probabilities, _ in answers for p in probabilities], PreferenceStats.combined(
            [stats for _, stats in answers], seconds)

    def scores(self, prompts: list, responses: list[str]) -> list[float] | None:
        """One score per response for a score-based model; None for the others."""
        if not responses:
            return ray.get(self.replicas[0].scores.remote([], []))
        answers, _ = self._spread("scores", len(responses),
                                  lambda s: ([prompts[i] for i in s], [responses[i] for i in s]))
        return None if answers[0] is None else [score for part in answers for score in part]

    def exploitability(self, responses: list[str]) -> float | None:
        return ray.get(self.replicas[0].exploitability.remote(responses))  # one number over all responses

    def rejected_values(self) -> int:
        return sum(ray.get([r.rejected_values.remote() for r in self.replicas]))

    def scale_scores(self, spread: float) -> None:
        ray.get([r.scale_scores.remote(spread) for r in self.replicas])

    def calls_per_replica(self) -> list[int]:
        return ray.get([r.calls.remote() for r in self.replicas])

    def kill(self) -> None:
        for replica in self.replicas:
            ray.kill(replica)
