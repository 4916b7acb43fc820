"""Per-sequence response log-probs log pi(y | x), summed (or averaged) over response tokens."""

from __future__ import annotations

import torch


def pad_sequences(prompts: list[list[int]], responses: list[list[int]], pad_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` [B, T], and ``response_mask`` [B, T-1] that marks
    the logit positions predicting a response token (position t predicts token t + 1)."""
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    response_mask = torch.zeros((len(seqs), width - 1), dtype=torch.float32)
    for row, (p, s) in enumerate(zip(prompts, seqs)):
        input_ids[row, :len(s)] = torch.tensor(s)
        attention[row, :len(s)] = 1
        response_mask[row, len(p) - 1:len(s) - 1] = 1.0
    return input_ids, attention, response_mask


def response_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention: torch.Tensor,
                      response_mask: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """[B] log-probs of the response tokens under ``model``; ``reduction`` is ``sum`` or ``mean``."""
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    total = (token_logps * response_mask).sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / response_mask.sum(-1).clamp(min=1.0)
    raise ValueError(f"unknown log-prob reduction {reduction!r} (valid: sum, mean)")
