"""The preference service's replicas (``preference.num_replicas``) as one handle for the controller.

Every batch is split into contiguous shards, one per replica, asked at once and put back together in order, so a
batch costs the time of its largest shard. Each replica holds its own copy of the model (a reward model, a judge
with its own vLLM engine) and its own resources.
"""

from __future__ import annotations

import time

import numpy as np
import ray

from selfplay.actors.actor_failures import get_with_restarts
from selfplay.preference.stats import PreferenceStats
from selfplay.rollout.records import Completion


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
    """``max_restarts``: how often each replica may die (Ray restarts it, made with the same ``max_restarts``); a
    shard in flight on a replica that died is asked again once it is back."""

    def __init__(self, replicas: list, max_restarts: int = 0) -> None:
        self.replicas = replicas
        self.max_restarts = max_restarts
        self.restarts = 0  # replica deaths survived, all replicas together
        self._spread_of_scores: float | None = None  # scale_scores, applied again to a restarted replica

    def _call(self, i: int, method: str, *args):
        """``method`` on replica ``i``, waited for; asked again on the restarted replica if it died."""
        replica = self.replicas[i]
        return self._get(i, getattr(replica, method).remote(*args), lambda: getattr(replica, method).remote(*args))

    def _get(self, i: int, future, resubmit):
        value, restarts = get_with_restarts(future, resubmit, self.max_restarts, f"preference replica {i}",
                                            on_restart=lambda: self._restore(i))
        self.restarts += restarts
        return value

    def _restore(self, i: int) -> None:
        """What a restarted replica (fresh from ``__init__``) must hold again before answering."""
        if self._spread_of_scores is not None:
            ray.get(self.replicas[i].scale_scores.remote(self._spread_of_scores))

    def _spread(self, method: str, count: int, args_of_shard) -> tuple[list, float]:
        """Call ``method`` on each replica with its shard's arguments; (the answers in shard order, seconds)."""
        started = time.perf_counter()
        shards = contiguous_shards(count, len(self.replicas)) if count else []
        calls = [(lambda replica=replica, shard=shard: getattr(replica, method).remote(*args_of_shard(shard)))
                 for replica, shard in zip(self.replicas, shards)]
        futures = [call() for call in calls]  # all at once; then each waited for (and asked again if it died)
        answers = [self._get(i, future, call) for i, (future, call) in enumerate(zip(futures, calls))]
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
            return self._call(0, "scores", [], [])
        answers, _ = self._spread("scores", len(responses),
                                  lambda s: ([prompts[i] for i in s], [responses[i] for i in s]))
        return None if answers[0] is None else [score for part in answers for score in part]

    def exploitability(self, responses: list[str]) -> float | None:
        return self._call(0, "exploitability", responses)  # one number over all responses

    def rejected_values(self) -> int:
        return sum(self._call(i, "rejected_values") for i in range(len(self.replicas)))

    def rejection_report(self) -> tuple[str, list[str]]:
        """The preference code's name and the first reasons any replica rejected its answers for."""
        source, reasons = "", []
        for i in range(len(self.replicas)):
            name, theirs = self._call(i, "rejection_report")
            source = source or name
            reasons += [r for r in theirs if r not in reasons]
        return source, reasons

    def scale_scores(self, spread: float) -> None:
        self._spread_of_scores = spread
        for i in range(len(self.replicas)):
            self._call(i, "scale_scores", spread)

    def calls_per_replica(self) -> list[int]:
        """Calls each replica answered (a restarted replica counts from its restart)."""
        return [self._call(i, "calls") for i in range(len(self.replicas))]

    def pids(self) -> list[int]:
        return [self._call(i, "pid") for i in range(len(self.replicas))]

    def kill(self) -> None:
        for replica in self.replicas:
            ray.kill(replica)
