"""Ray actor around one DeepSpeed learner rank."""

from __future__ import annotations

import ray

from learner.batch import TrainingBatch
from rollout.records import WeightBucket


@ray.remote
class LearnerWorker:
    def __init__(self, config_dict: dict, model_path: str, rank: int, world_size: int,
                 master_addr: str, master_port: int, sequences_per_step: int) -> None:
        from learner.algorithms.registry import build_algorithm
        from learner.policy_learner import PolicyLearner, init_distributed
        from orchestration.config import config_from_dict

        config = config_from_dict(config_dict)
        lc = config.learner
        init_distributed(rank, world_size, master_addr, master_port, _backend(lc.backend))
        self._rank = rank
        self._learner = PolicyLearner(
            model_path, build_algorithm(config), lr=lc.lr, weight_decay=lc.weight_decay,
            grad_clip=lc.grad_clip, micro_batch_size=lc.micro_batch_size,
            sequences_per_step=sequences_per_step, zero_stage=lc.zero_stage, dtype=config.policy.dtype,
            reduction=config.algorithm.logprob_reduction, seed=config.run.seed + rank)

    def train_step(self, batch: TrainingBatch) -> dict[str, float]:
        return self._learner.train_step(batch)

    def export_weights(self, version: int, bucket_bytes: int) -> list[WeightBucket]:
        return self._learner.export_weights(version, bucket_bytes)

    def weights_digest(self) -> str:
        return self._learner.weights_digest()

    def reset_reference(self) -> None:
        self._learner.reset_reference()

    def save_checkpoint(self, directory: str) -> None:
        self._learner.save_checkpoint(directory, self._rank)

    def load_checkpoint(self, directory: str) -> None:
        self._learner.load_checkpoint(directory, self._rank)

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        return self._learner.sequence_logprobs(token_ids)


def _backend(name: str) -> str:
    if name != "auto":
        return name
    import torch
    return "nccl" if torch.cuda.is_available() else "gloo"
