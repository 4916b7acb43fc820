"""Build the embedded default policy offline: a tiny Llama-style causal LM with random weights and a
word-level tokenizer over the built-in task's words (the sorting task's, or the game task's), saved as a Hugging Face model directory that both
transformers and vLLM load.

vLLM's CPU attention refuses head_dim 16, so the model keeps head_dim 32 (hidden 64, 2 heads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from selfplay.tasks.sorting import PROMPT_PREFIX, alphabet

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]


@dataclass(frozen=True)
class TinyModelSpec:
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 2
    head_dim: int = 32
    alphabet_size: int = 16
    max_positions: int = 64
    seed: int = 0
    words: tuple[str, ...] = ()  # the task's words; empty: the sorting task's ("sort:" and the alphabet)


def vocabulary(spec: TinyModelSpec) -> list[str]:
    return SPECIAL_TOKENS + (list(spec.words) or [PROMPT_PREFIX] + alphabet(spec.alphabet_size))


def build_tokenizer(spec: TinyModelSpec):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(vocabulary(spec))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Metaspace-free word level: join words with a space when decoding.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", model_max_length=spec.max_positions)


def build_tiny_model_dir(out_dir: str | Path, spec: TinyModelSpec = TinyModelSpec(),
                         vocab_size: int | None = None) -> Path:
    """Write config, random weights (seeded) and tokenizer to ``out_dir``; returns the directory.
    ``vocab_size`` larger than the tokenizer's pads the embedding (benchmarks of realistic model sizes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    config = LlamaConfig(
        vocab_size=vocab_size or len(vocabulary(spec)),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "selfplay_tiny_spec.json").write_text(json.dumps({**spec.__dict__, "words": list(spec.words)}, indent=2))
    return out
