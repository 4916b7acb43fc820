"""The tiny chat model has the properties of a real Llama 3 chat model that it exists to exercise."""

import json

import pytest

from selfplay.tasks.tiny_chat_model import BOS, EOS, EOT, build_tiny_chat_model_dir

MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Spain?"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_chat_model_dir(tmp_path_factory.mktemp("chat") / "m", seed=0)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir)


def test_template_renders_llama3_headers(tokenizer):
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text == (f"{BOS}<|start_header_id|>system<|end_header_id|>\n\nBe brief.{EOT}"
                    f"<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?{EOT}"
                    f"<|start_header_id|>assistant<|end_header_id|>\n\nParis.{EOT}"
                    f"<|start_header_id|>user<|end_header_id|>\n\nAnd of Spain?{EOT}"
                    f"<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_tokenized_template_has_one_bos(tokenizer):
    # transformers 5 returns a BatchEncoding here by default; return_dict=False gives the plain list of ids.
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    as_dict = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    assert list(as_dict["input_ids"]) == ids


def test_rendered_text_retokenized_has_two_bos(tokenizer):
    """The trap: the template writes BOS as text and encoding with special tokens adds another."""
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    bos = tokenizer.bos_token_id
    assert tokenizer(text)["input_ids"][:2] == [bos, bos]
    # Tokenizing the rendered text without special tokens is the safe way back to one BOS.
    once = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert once.count(bos) == 1 and once == tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)


def test_no_pad_token(model_dir, tokenizer):
    assert tokenizer.pad_token is None and tokenizer.pad_token_id is None
    for name in ("config.json", "generation_config.json"):
        assert json.loads((model_dir / name).read_text()).get("pad_token_id") is None


def test_generation_config_has_two_eos_ids(model_dir, tokenizer):
    from transformers import GenerationConfig
    eos_ids = GenerationConfig.from_pretrained(model_dir).eos_token_id
    eot, eos = tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(EOS)
    assert eos_ids == [eot, eos] and eot != eos
    assert tokenizer.eos_token == EOS and tokenizer.eos_token_id == eos != eot  # end of turn is not eos_token


def test_model_loads_with_tied_embeddings(model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config.head_dim >= 32 and model.config.vocab_size == len(tokenizer)
    ids = torch.tensor([tokenizer("Hello there")["input_ids"]])
    assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_byte_level_bpe_round_trips_any_text(tokenizer):
    assert 300 <= len(tokenizer) <= 1000
    # Learned merges: common words are single tokens, rarer ones split into pieces.
    assert tokenizer.tokenize("The capital of France") == ["The", "Ġcapital", "Ġof", "ĠFrance"]
    assert len(tokenizer.tokenize(" zebra")) > 1
    texts = ["Héllo wörld", "東京タワー 🙂🚀", "  two  spaces\tand\ttabs\n\nnewlines ", "x<y && y>z", ""]
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text


def test_build_is_deterministic_per_seed(tmp_path):
    a = build_tiny_chat_model_dir(tmp_path / "a", seed=0)
    b = build_tiny_chat_model_dir(tmp_path / "b", seed=0)
    c = build_tiny_chat_model_dir(tmp_path / "c", seed=1)
    for name in ("tokenizer.json", "model.safetensors", "config.json", "generation_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
