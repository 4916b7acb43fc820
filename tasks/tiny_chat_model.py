"""Build, offline, a tiny chat model directory shaped like a Llama 3.x instruct model, so tests and examples
meet the properties of real chat models that the tiny sorting model (tasks/tiny_model.py) does not have:

- a byte-level BPE tokenizer (trained here with `tokenizers` on a small built-in corpus): any text, unicode
  included, round-trips exactly and words split into several tokens;
- Llama 3's special tokens, with the tokenizer's post-processor adding BOS *and* the chat template starting
  with ``{{ bos_token }}``: rendering the template to text and re-tokenizing it gives two BOS tokens, while
  ``apply_chat_template(..., tokenize=True)`` gives one — the trap real Llama 3 models set;
- no pad token, like Llama's: code must not assume ``tokenizer.pad_token_id`` exists;
- two EOS ids in generation_config.json (``<|eot_id|>`` ends a turn, ``<|end_of_text|>`` is the tokenizer's
  ``eos_token``): stopping only on ``tokenizer.eos_token_id`` runs past the end of every reply.

The model is a random-weight (seeded) LlamaForCausalLM with tied embeddings; head_dim is 32 because vLLM's CPU
attention refuses 16. Run ``python -m selfplay.tasks.tiny_chat_model DIR`` to write it to DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
START_HEADER, END_HEADER, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
SPECIAL_TOKENS = [BOS, EOS, START_HEADER, END_HEADER, EOT]

# Llama 3's template, less its date/tool handling.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# A small, varied English corpus: enough for BPE to learn common words and pieces; fixed, so training is
# deterministic.
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "How many legs does a spider have? A spider has eight legs.",
    "Please write a short poem about the sea.",
    "The sea is wide and blue, and the waves roll in at night.",
    "Can you explain what a prime number is?",
    "A prime number has exactly two divisors: one and itself.",
    "Sort these words: banana, apple, cherry. Apple, banana, cherry.",
    "Translate 'good morning' into Spanish. Buenos dias.",
    "Summarize the story in one sentence.",
    "The quick brown fox jumps over the lazy dog.",
    "I think the answer is 42, but let me check again.",
    "Thank you for your help! You're welcome, happy to help.",
    "What time is it in Tokyo when it is noon in London?",
    "Water boils at 100 degrees Celsius at sea level.",
    "Why is the sky blue? Sunlight scatters off the air, and blue light scatters most.",
    "List three fruits that are red: strawberry, cherry and apple.",
    "Write a function that returns the sum of a list of numbers.",
    "def add(a, b):\n    return a + b",
    "The meeting starts at 9:30 tomorrow morning in room 12.",
    "She opened the window because the room was too warm.",
    "Is it better to be kind or to be right? Usually it is better to be kind.",
    "How do I make a cup of tea? Boil water, add the tea, and wait three minutes.",
    "Tell me a joke. Why did the chicken cross the road? To get to the other side.",
    "Explain the difference between weather and climate.",
    "Climate is the average weather over many years.",
    "My favourite books are about history, science and travel.",
    "Reply with yes or no: is ice colder than steam? Yes.",
    "Numbers: one, two, three, four, five, six, seven, eight, nine, ten.",
    "You are a helpful assistant. Answer briefly and honestly.",
    "The train to the city leaves every twenty minutes.",
    "Could you recommend a good film for the weekend?",
    "Rewrite this sentence so that it is more polite.",
    "Café, naïve and résumé keep their accents; 東京 and emoji 🙂 are bytes too.",
    "In 2024 the team shipped version 3.1 with many small fixes.",
    "Good night, and sleep well!",
]


def train_byte_level_bpe(vocab_size: int, corpus: list[str] = CORPUS):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``corpus``: the 256 byte symbols are the initial
    alphabet, so nothing is ever unknown (as in GPT-2, Llama 3 and Qwen tokenizers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(corpus, trainer=trainer)
    return core


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    core = train_byte_level_bpe(vocab_size)
    # Added after training so their ids come last, as in Llama 3 (128000+).
    core.add_special_tokens(SPECIAL_TOKENS)
    # Like Llama 3: encoding with special tokens prepends BOS (the chat template adds one too).
    core.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1",
                                      special_tokens=[(BOS, core.token_to_id(BOS))]),
    ])
    # No pad token, and no clean-up of spaces, so decode(encode(text)) == text.
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=512)


def build_tiny_chat_model_dir(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tokenizer, config, generation config and seeded random weights to ``out_dir``; returns it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    eos_ids = [tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(EOS)]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,  # Llama 3.1/3.2 instruct list the end-of-turn id here too
        tie_word_embeddings=True,  # as in small Llama 3.2 models: lm_head shares the embedding
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m selfplay.tasks.tiny_chat_model DIR")
    print(build_tiny_chat_model_dir(sys.argv[1]))
