"""The rollout engine contract, shared by the vLLM engine and the torch/transformers fallback."""

from __future__ import annotations

from typing import Protocol

from rollout.records import Completion, SamplingSpec, WeightBucket


class RolloutEngine(Protocol):
    """Generates responses with the current policy weights and loads new weights in place."""

    policy_version: int

    def generate(self, prompts: list[str], prompt_indices: list[int],
                 spec: SamplingSpec) -> list[list[Completion]]:
        """``spec.n`` completions for each prompt, in prompt order, tagged with ``policy_version``."""
        ...

    def load_weights(self, buckets: list[WeightBucket]) -> str:
        """Load a full set of weights in place; returns the digest of what was loaded."""
        ...

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of each sequence: a behavioural weight fingerprint."""
        ...


def build_engine(kind: str, model_path: str, dtype: str, seed: int, vllm_options: dict | None = None
                 ) -> RolloutEngine:
    if kind == "vllm":
        from rollout.vllm_engine import VLLMEngine
        return VLLMEngine(model_path, dtype=dtype, seed=seed, **(vllm_options or {}))
    if kind == "torch":
        from rollout.torch_engine import TorchEngine
        return TorchEngine(model_path, dtype=dtype, seed=seed)
    raise ValueError(f"unknown rollout engine {kind!r} (valid: vllm, torch)")
