"""The rollout engine contract, shared by the vLLM engine and the torch/transformers fallback."""

from __future__ import annotations

from typing import Protocol

from rollout.records import Completion, SamplingSpec


def render_chat(tokenizer, messages: list[dict]) -> str:
    """A conversation as the model's prompt text: its chat template when it has one, else the contents
    joined by newlines (the tiny embedded tokenizer has no template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in messages)


class TokenizerMethods:
    """``tokenize`` and ``render_chat`` for an engine that holds its Hugging Face tokenizer as ``_tokenizer``."""

    def tokenize(self, texts: list[str], special_tokens: bool = True) -> list[list[int]]:
        return [self._tokenizer(t, add_special_tokens=special_tokens).input_ids for t in texts]

    def render_chat(self, conversations: list[list[dict]]) -> list[str]:
        return [render_chat(self._tokenizer, c) for c in conversations]


class RolloutEngine(Protocol):
    """Generates responses with the current policy weights and loads new weights in place."""

    policy_version: int

    def generate(self, prompts: list[str], prompt_indices: list[int],
                 spec: SamplingSpec) -> list[list[Completion]]:
        """``spec.n`` completions for each prompt, in prompt order, tagged with ``policy_version``."""
        ...

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of each sequence: a behavioural weight fingerprint."""
        ...

    def next_token_logprobs(self, prefixes: list[str], token_ids: list[int]) -> list[list[float]]:
        """log p(token | prefix) for each prefix and candidate token (the self-judge's verdicts)."""
        ...

    def tokenize(self, texts: list[str], special_tokens: bool = True) -> list[list[int]]:
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

    def render_chat(self, conversations: list[list[dict]]) -> list[str]:
        """Message lists as prompt text, through the tokenizer's chat template when it has one."""
        ...


def build_engine(kind: str, model_path: str, dtype: str, seed: int, vllm_options: dict | None = None,
                 reference_path: str | None = None) -> RolloutEngine:
    if kind == "vllm":
        from rollout.vllm_engine import VLLMEngine
        return VLLMEngine(model_path, dtype=dtype, seed=seed, **(vllm_options or {}))
    if kind == "torch":
        from rollout.torch_engine import TorchEngine
        return TorchEngine(model_path, dtype=dtype, seed=seed, reference_path=reference_path)
    raise ValueError(f"unknown rollout engine {kind!r} (valid: vllm, torch)")
