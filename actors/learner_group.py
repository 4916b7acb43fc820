"""The learner's DeepSpeed ranks as one handle for the controller.

Each rank is a ``LearnerWorker`` actor in one bundle of the learner's Ray placement group. Every call goes to all ranks,
because under ZeRO-3 even a forward pass or a weight gather is a collective; the answer is rank 0's (the
others compute the same thing). ``train_step`` is the exception: it is data parallel, each rank gets a
contiguous shard of the batch's groups and DeepSpeed averages the gradients.
"""

from __future__ import annotations

import ray

from selfplay.actors.actor_failures import ACTOR_FAILURES, ActorLost
from selfplay.actors.learner_worker import LearnerWorker
from selfplay.learner.batch import TrainingBatch
from selfplay.learner.spec import LearnerSpec


class LearnerGroup:
    def __init__(self, spec: LearnerSpec, model_path: str, sequences_per_rank: int, rank_options: list[dict]) -> None:
        """``rank_options``: each rank's Ray options (its resources and its bundle in the learner's placement
        group, reserved by the controller with the other roles')."""
        n = len(rank_options)
        self.num_ranks = n
        self.micro_batch_size = spec.options["micro_batch_size"]
        self.ranks = [LearnerWorker.options(**options).remote(spec, model_path, rank, n, sequences_per_rank)
                      for rank, options in enumerate(rank_options)]
        endpoint = ray.get(self.ranks[0].host_rendezvous.remote())
        ray.get([r.start.remote(endpoint) for r in self.ranks])

    def submit(self, method: str, *args) -> list[ray.ObjectRef]:
        """``method`` on every rank, not waited for: rank 0's ref first."""
        return [getattr(r, method).remote(*args) for r in self.ranks]

    def call(self, method: str, *args):
        """``method`` on every rank; rank 0's answer."""
        return self.gather(self.submit(method, *args), method)[0]

    def gather(self, futures: list, method: str) -> list:
        """Every rank's answer; a rank that died is named (the learner has no restarts: its state would be lost,
        so the run stops, and ``run.auto_resume`` restarts it from a checkpoint)."""
        answers = []
        for rank, future in enumerate(futures):
            try:
                answers.append(ray.get(future))
            except ACTOR_FAILURES as exc:
                raise ActorLost(f"learner rank {rank} died during {method}: {str(exc).splitlines()[0]}") from exc
        return answers

    def train_step(self, batch: TrainingBatch) -> dict[str, float]:
        """One optimizer step of every rank over its shard of ``batch``. Shards are equal when the batch is
        whole; a batch shortened by rejected groups gives some ranks fewer (or, below one group a rank, a
        zero-weighted copy), and each rank's loss is scaled by n * its share so that DeepSpeed's gradient
        mean over ranks is still the mean over the batch's groups. Every rank runs as many micro-batches as
        the largest shard needs (zero-weight passes on the others): under ZeRO-3 each pass is a collective."""
        shards = batch.split(self.num_ranks)
        total = len(batch) // batch.group_size
        shares = [len(s) // batch.group_size / total for s in shards]
        shards += [shards[-1]] * (self.num_ranks - len(shards))
        shares += [0.0] * (self.num_ranks - len(shares))
        passes = max(s.micro_batch_count(self.micro_batch_size) for s in shards)
        results = self.gather([r.train_step.remote(shard, self.num_ranks * share, passes)
                               for r, shard, share in zip(self.ranks, shards, shares)], "train_step")
        # Share-weighted means; a term only some shards have (OSP's judge loss) is averaged over those. Memory is
        # the most any rank holds.
        merged = {"learner/peak_memory_gib": max(m["learner/peak_memory_gib"] for m in results)}
        for k in {k for m in results for k in m} - set(merged):
            have = [(share, m[k]) for share, m in zip(shares, results) if k in m and share > 0]
            weight = sum(share for share, _ in have)
            if weight > 0:
                merged[k] = sum(share * v for share, v in have) / weight
        return merged

    def shutdown(self) -> None:
        for r in self.ranks:
            ray.kill(r)
