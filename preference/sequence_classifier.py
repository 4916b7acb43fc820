"""A Hugging Face sequence classifier as the reward_model and pairwise kinds use it: its config checked before
anything starts, its inputs rendered with its OWN tokenizer and chat template (never the policy's rendered
string), and its logits computed in right-padded batches of ``batch_size`` sequences.

HF's ``*ForSequenceClassification`` heads read the logit at the rightmost token that is not
``config.pad_token_id``, so padding must use exactly that id, and that id must not be a sequence's own last
token.
"""

from __future__ import annotations

from itertools import chain

from selfplay.errors import InputError


def check_classifier_dir(path: str, key: str, num_labels: tuple[int, ...]) -> None:
    """``path`` (a local model directory) holds a ``*ForSequenceClassification`` config with one of
    ``num_labels`` labels; otherwise an InputError naming ``key``."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:  # transformers raises many types for a broken model directory
        raise InputError(f"{key} {path}: cannot load its config ({type(exc).__name__})") from None
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise InputError(f"{key} {path} is not a sequence classifier (architectures: {architectures or 'none'}; "
                         "expected a *ForSequenceClassification model)")
    if config.num_labels not in num_labels:
        raise InputError(f"{key} {path} has {config.num_labels} labels; this preference kind needs "
                         f"{' or '.join(map(str, num_labels))}")


def chat_messages(record) -> list[dict]:
    """A prompt record's messages: a string is one user message."""
    return [{"role": "user", "content": record}] if isinstance(record, str) else list(record)


class SequenceClassifier:
    def __init__(self, model_path: str, batch_size: int = 16) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        # The saved dtype on a GPU; float32 on a CPU, where bfloat16 matmuls are slow or missing.
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path, dtype="auto" if self.device == "cuda" else torch.float32).to(self.device).eval()
        self.batch_size = batch_size
        self.has_template = bool(getattr(self.tokenizer, "chat_template", None))
        # The model's own pad id first: its head was trained reading the last token before that id.
        config_pad = self.model.config.get_text_config().pad_token_id
        self.pad_id = config_pad if config_pad is not None else self.tokenizer.pad_token_id

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    def render(self, messages: list[dict], text: str) -> list[int]:
        """Token ids of ``messages`` through the chat template (the whole conversation, no generation prompt),
        or of ``text`` with the tokenizer's special tokens when it has no template."""
        if self.has_template:
            return list(self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False,
                                                           add_generation_prompt=False))
        return list(self.tokenizer(text, add_special_tokens=True).input_ids)

    def logits(self, sequences: list[list[int]]):
        """[len(sequences), num_labels] float64 logits (CPU), in the order given."""
        import torch

        out = torch.empty(len(sequences), self.num_labels, dtype=torch.float64)
        # Similar lengths share a batch: less padding to compute.
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._forward([sequences[i] for i in rows])
        return out

    def _forward(self, batch: list[list[int]]):
        import torch

        pad = self._batch_pad_id(batch)
        self.model.config.get_text_config().pad_token_id = pad
        longest = max(map(len, batch))
        ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, seq in enumerate(batch):  # right padding: real tokens never attend to pads (causal + mask)
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return logits.to("cpu", torch.float64)

    def _batch_pad_id(self, batch: list[list[int]]) -> int:
        if self.pad_id is not None:
            return self.pad_id
        # No pad token: the padded positions are masked, so any id will do, except one that ends a sequence
        # (the head would then read the token before it). EOS when it ends none, like HF's usual fallback.
        ends = {seq[-1] for seq in batch}
        eos = self.tokenizer.eos_token_id
        return next(i for i in chain([eos] if eos is not None else [], range(len(self.tokenizer))) if i not in ends)
