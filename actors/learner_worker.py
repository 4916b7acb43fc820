"""Ray actor around one DeepSpeed learner rank."""

from __future__ import annotations

import ray

from learner.batch import TrainingBatch


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

    # -- weight transport (see actors/weight_transport.py for the calling order) ----------------------

    def open_weight_transport(self, kind: str, num_receivers: int, bucket_bytes: int,
                              timeout_s: float = 600.0) -> dict:
        """Prepare transport ``kind`` for ``num_receivers`` engines; returns the endpoint they connect with.
        Only rank 0 sends; other ranks only take part in the parameter gathers of each push."""
        from rollout.transport import build_sender

        self.close_weight_transport()
        self._transport_open = True
        if self._rank != 0:
            return {}
        self._sender = build_sender(kind, bucket_bytes=bucket_bytes, timeout_s=timeout_s)
        return self._sender.open(num_receivers, host=ray.util.get_node_ip_address())

    def connect_weight_transport(self) -> None:
        """Join the group as rank 0: a collective with every rollout worker's ``connect_weight_transport``."""
        if getattr(self, "_sender", None) is not None:
            self._sender.connect()

    def send_weights(self, version: int):
        """Push the current policy as ``version``: a collective with every rollout worker's ``receive_weights``
        for the broadcast transport. Returns ``rollout.transport.PushStats`` (``.as_dict()`` for metrics)."""
        if not getattr(self, "_transport_open", False):
            raise RuntimeError("open_weight_transport was not called on this learner")
        if self._rank != 0:
            for _ in self._learner.full_parameters():  # ZeRO-3 gathers are collectives of every learner rank
                pass
            return None
        return self._learner.send_weights(self._sender, version)

    def close_weight_transport(self) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.close()
        self._sender = None
        self._transport_open = False

    def weights_digest(self) -> str:
        return self._learner.weights_digest()

    def reset_reference(self) -> None:
        self._learner.reset_reference()

    def policy_and_reference_logprobs(self, prompts: list[list[int]], responses: list[list[int]]
                                      ) -> tuple[list[float], list[float]]:
        return self._learner.policy_and_reference_logprobs(prompts, responses)

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
