"""Tiny preference models built offline with seeded random weights, for tests of the reward_model, pairwise and
judge kinds (a helper, not a test module).

Each is a ``Qwen2ForSequenceClassification`` with its OWN byte-level BPE tokenizer, unlike the policy's
(tasks/tiny_chat_model.py: Llama 3 special tokens): a different vocabulary size, Qwen's ChatML special tokens
``<|im_start|>``/``<|im_end|>`` and ``<|endoftext|>`` as the pad token, so a test can tell which tokenizer and
template rendered what a classifier read. The ChatML template here ends every message with ``<|im_end|>``, the
EOS, and adds no newline after the last one: a sequence's own last token is the EOS, the case where padding
with the EOS would make the head read the wrong token.

The judge (``build_judge_dir``) is a ``Qwen2ForCausalLM`` with the same ChatML tokenizer, in which " A" is one
token and " B" is a bare space then "B": its verdicts "A"/"B" have two and one first-token variants.
"""

from __future__ import annotations

from pathlib import Path

from selfplay.tasks.tiny_chat_model import CORPUS, train_byte_level_bpe

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' }}"
    "{% if not loop.last %}{{ '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n<|im_start|>assistant\n' }}{% endif %}"
)


def build_classifier_tokenizer(pad: bool = True, chat_template: bool = True, vocab_size: int = 400):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    core = train_byte_level_bpe(vocab_size, CORPUS)
    core.add_special_tokens([PAD, IM_START, IM_END])
    core.post_processor = processors.ByteLevel(trim_offsets=False)  # like Qwen: no BOS is added
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=IM_END, pad_token=PAD if pad else None,
        chat_template=CHATML_TEMPLATE if chat_template else None, clean_up_tokenization_spaces=False,
        model_max_length=1024)


def build_classifier_dir(out_dir: str | Path, num_labels: int = 1, pad: bool = True, chat_template: bool = True,
                         seed: int = 0) -> Path:
    """Write a tokenizer and a random-weight sequence classifier with ``num_labels`` labels to ``out_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    out = Path(out_dir)
    tokenizer = build_classifier_tokenizer(pad, chat_template)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, dtype="float32",
        # Large random weights: with the usual 0.02 the last token's state barely depends on the text before it,
        # so every pair would come out at P = 1/2 and a comparison of P values would test nothing.
        initializer_range=0.5)
    torch.manual_seed(seed)
    model = Qwen2ForSequenceClassification(config)
    with torch.no_grad():  # a small head, so sigmoid and softmax stay away from 0 and 1
        model.score.weight.normal_(0.0, 0.1)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_reward_model_dir(out_dir: str | Path, **kw) -> Path:
    """(a) A Bradley-Terry reward model: one label."""
    return build_classifier_dir(out_dir, num_labels=1, **kw)


def build_pairwise_classifier_dir(out_dir: str | Path, num_labels: int = 2, **kw) -> Path:
    """(b) A pairwise classifier of (prompt, a, b): one label (sigmoid) or two (softmax, label 0 = a wins)."""
    return build_classifier_dir(out_dir, num_labels=num_labels, **kw)


def build_two_label_reward_dir(out_dir: str | Path) -> Path:
    """(c) What a reward_model run must refuse: a classifier with two labels."""
    return build_classifier_dir(out_dir, num_labels=2)


def build_judge_dir(out_dir: str | Path, seed: int = 0) -> Path:
    """(d) A generative judge: a random-weight causal LM vLLM's CPU build loads (head_dim 32), weights large
    enough that its verdict probabilities depend on the responses."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tokenizer = build_classifier_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, dtype="float32",
        initializer_range=0.2)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
