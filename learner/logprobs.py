"""Per-sequence response log-probs log pi(y | x), summed (or averaged) over response tokens.

log pi(y_t | x, y_<t) = z[y_t] - logsumexp(z), z = lm_head(h_t), h_t the final hidden state at position t.
The full [batch, tokens, vocab] float32 logits are gigabytes per micro-batch for a 150k vocabulary, so the
head runs only on the positions that predict a response token, ``chunk_tokens`` of them at a time; under
autograd each chunk of several is recomputed in the backward pass, so at most one chunk's logits exist at any time.
Models whose logits are not a plain linear head on the last hidden state (soft-capped, scaled) take the
full-logits path, which is also the reference the tests compare with.
"""

from __future__ import annotations

import inspect
import math
from functools import partial

import torch
from torch.utils.checkpoint import checkpoint


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
                      response_mask: torch.Tensor, reduction: str = "sum", chunk_tokens: int | None = 1024,
                      num_chunks: int | None = None) -> torch.Tensor:
    """[B] log-probs of the response tokens under ``model`` (an HF causal LM or a DeepSpeed engine around
    one); ``reduction`` is ``sum`` or ``mean``. See ``token_logprobs`` for the chunking arguments."""
    total = token_logprobs(model, input_ids, attention, response_mask, chunk_tokens, num_chunks).sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / response_mask.sum(-1).clamp(min=1.0)
    raise ValueError(f"unknown log-prob reduction {reduction!r} (valid: sum, mean)")


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention: torch.Tensor,
                   response_mask: torch.Tensor, chunk_tokens: int | None = 1024, num_chunks: int | None = None
                   ) -> torch.Tensor:
    """[B, T-1] float32 log-prob of token t + 1 at each position t that ``response_mask`` marks, 0 elsewhere.

    ``chunk_tokens``: positions whose logits are computed at once (None: the full-logits path).
    ``num_chunks``: at least this many head calls, even if fewer positions would do. Under ZeRO-3 each head
    call gathers the head's weight, a collective, so data-parallel ranks must make the same number of calls."""
    if chunk_tokens is None or not linear_head_on_last_hidden(model):
        return _full_logits_token_logprobs(model, input_ids, attention, response_mask)
    return _chunked_token_logprobs(model, input_ids, attention, response_mask, chunk_tokens, num_chunks)


def linear_head_on_last_hidden(model: torch.nn.Module) -> bool:
    """Whether the logits are ``lm_head(last hidden state)`` and nothing more, so the head can run apart."""
    hf = getattr(model, "module", model)  # a DeepSpeed engine wraps the HF model as .module
    config = getattr(hf, "config", None)
    if config is None or not hasattr(hf, "get_output_embeddings"):
        return False
    configs = [config, config.get_text_config()] if hasattr(config, "get_text_config") else [config]
    if any(getattr(c, "final_logit_softcapping", None) is not None or getattr(c, "logit_scale", None) is not None
           for c in configs):
        return False
    prefix = getattr(hf, "base_model_prefix", "")
    return (isinstance(getattr(hf, prefix, None), torch.nn.Module) if prefix else False) \
        and isinstance(hf.get_output_embeddings(), torch.nn.Linear) \
        and "logits_to_keep" in inspect.signature(hf.forward).parameters


def _full_logits_token_logprobs(model, input_ids, attention, response_mask) -> torch.Tensor:
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return token_logps * response_mask


def _chunked_token_logprobs(model, input_ids, attention, response_mask, chunk_tokens: int,
                            num_chunks: int | None) -> torch.Tensor:
    hf = getattr(model, "module", model)
    hidden = _last_hidden_states(model, hf, input_ids, attention)  # [B, T, H]
    batch, width = input_ids.shape
    rows, cols = response_mask.nonzero(as_tuple=True)  # positions t that predict a response token t + 1
    n = rows.numel()
    chunks = max(num_chunks or 1, math.ceil(n / chunk_tokens))
    # Fewer positions than chunks: dummy rows (position 0, written to a slot that is dropped) keep every chunk
    # a real head call whose backward runs too, so each rank makes the same collectives.
    dummies = max(chunks - n, 0)
    source = torch.cat([rows * width + cols, rows.new_zeros(dummies)])
    target = torch.cat([rows * (width - 1) + cols, rows.new_full((dummies,), batch * (width - 1))])
    states = hidden.reshape(batch * width, -1).index_select(0, source)
    next_tokens = input_ids.reshape(-1).index_select(0, source + 1)
    head = partial(_head_logprobs, hf.get_output_embeddings())
    # One chunk: its logits would be alive at the start of the backward pass with or without recomputation (the
    # head's backward comes first, beside every activation of the body), so recomputing it saves no peak memory.
    recompute = torch.is_grad_enabled() and chunks > 1
    pieces = [checkpoint(head, h, y, use_reentrant=False) if recompute else head(h, y)
              for h, y in zip(states.tensor_split(chunks), next_tokens.tensor_split(chunks))]
    flat = states.new_zeros(batch * (width - 1) + 1, dtype=torch.float32).index_add(0, target, torch.cat(pieces))
    return flat[:-1].view(batch, width - 1)


def _head_logprobs(head: torch.nn.Module, states: torch.Tensor, next_tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(head(states))[next_tokens], the logits upcast to float32 as the full path does."""
    logits = head(states).float()
    return logits.gather(-1, next_tokens[:, None]).squeeze(-1) - logits.logsumexp(-1)


def _last_hidden_states(model, hf, input_ids, attention) -> torch.Tensor:
    """The backbone's final (normed) hidden states [B, T, H]. The whole model is called, not the backbone
    alone: a DeepSpeed engine registers its backward bookkeeping on the outputs of its own forward and ZeRO-3
    resets its parameter-fetch trace there. Its head is cut to one position (``logits_to_keep=1``), and a
    hook hands the backbone's ``last_hidden_state`` out as the output's ``hidden_states`` (only that one,
    where ``output_hidden_states`` would keep every layer's)."""
    def expose(module, args, output):
        output.hidden_states = (output.last_hidden_state,)
        return output

    handle = getattr(hf, hf.base_model_prefix).register_forward_hook(expose)
    try:
        out = model(input_ids=input_ids, attention_mask=attention, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    return out.hidden_states[-1]
