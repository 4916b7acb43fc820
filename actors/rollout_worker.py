"""Ray actor around one rollout engine (vLLM or torch)."""

from __future__ import annotations

import ray

from rollout.records import Completion, SamplingSpec, WeightBucket


@ray.remote
class RolloutWorker:
    def __init__(self, engine: str, model_path: str, dtype: str, seed: int, vllm_options: dict) -> None:
        from rollout.engine import build_engine

        self._engine = build_engine(engine, model_path, dtype, seed, vllm_options)
        self._digest = ""

    def generate(self, prompts: list[str], prompt_indices: list[int], spec: SamplingSpec
                 ) -> list[list[Completion]]:
        return self._engine.generate(prompts, prompt_indices, spec)

    def load_weights(self, buckets: list[WeightBucket]) -> tuple[int, str]:
        """Returns (policy version, digest of the loaded tensors)."""
        self._digest = self._engine.load_weights(buckets)
        return self._engine.policy_version, self._digest

    def weights_state(self) -> tuple[int, str]:
        return self._engine.policy_version, self._digest

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        return self._engine.sequence_logprobs(token_ids)
