"""The rollout engine contract, shared by the vLLM engine and the torch/transformers fallback."""

from __future__ import annotations

from typing import Protocol

from selfplay.rollout.records import Completion, SamplingSpec


def resolve_dtype(name: str) -> str:
    """``auto``: bfloat16 on a GPU that supports it, float32 otherwise (CPUs: fp32 kernels are the fast and
    exact ones). Engines and learner ranks resolve it where they run, so a CPU driver does not decide for GPUs."""
    if name != "auto":
        return name
    import torch
    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


class RolloutEngine(Protocol):
    """Generates responses with the current policy weights and loads new weights in place."""

    policy_version: int

    def generate(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                 prompts: list | None = None) -> list[list[Completion]]:
        """``spec.n`` completions for each prompt (token ids, rendered once by the caller), in prompt order,
        tagged with ``policy_version``; each stops at any EOS id of the model or a ``spec.stop`` string unless
        ``spec.ignore_eos``, and records its finish reason. ``prompts`` (the records) are attached as given."""
        ...

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of each sequence: a behavioural weight fingerprint."""
        ...

    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        """log p(token | prefix) for each prefix (token ids) and candidate token (the self-judge's verdicts)."""
        ...

    # Weight transport (rollout/transport): join the learner's group once, then receive each push in place.
    def connect_weight_transport(self, kind: str, endpoint: dict, rank: int) -> None:
        ...

    def receive_weights(self, version: int, source: list | None = None, verify: bool = True) -> str:
        """Receive push ``version`` and load it in place; returns the digest of the loaded tensors ("" when
        ``verify`` is off: hashing costs a device-to-host copy of the model per push on GPUs)."""
        ...

    def close_weight_transport(self) -> None:
        ...


def build_engine(kind: str, model_path: str, dtype: str, seed: int, vllm_options: dict | None = None,
                 reference_path: str | None = None) -> RolloutEngine:
    if kind == "vllm":
        from selfplay.rollout.vllm_engine import VLLMEngine
        return VLLMEngine(model_path, dtype=dtype, seed=seed, **(vllm_options or {}))
    if kind == "torch":
        from selfplay.rollout.torch_engine import TorchEngine
        return TorchEngine(model_path, dtype=dtype, seed=seed, reference_path=reference_path)
    raise ValueError(f"unknown rollout engine {kind!r} (valid: vllm, torch)")
