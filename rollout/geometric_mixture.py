"""The geometric mixture pi^beta(y) ∝ pi(y)^(1-beta) mu(y)^beta that Nash-MD and IPO-MD sample opponents from
(Munos et al., arXiv 2312.00886; Calandriello et al., arXiv 2403.08635), in two ways.

(a) Token level (TRL's GeometricMixtureWrapper): at every step sample from softmax((1-beta) logits_pi +
    beta logits_mu). Needs both models at every decoding step. It renormalises at every step, so over
    sequences it is prod_t pi_t^(1-beta) mu_t^beta / Z_t(prefix): NOT pi^(1-beta) mu^beta / Z in general
    (the two agree for one-token responses, or when Z_t does not depend on the prefix).
(b) Sequence level, by self-normalised importance resampling of candidates drawn from pi with weights
    ∝ exp(beta (log mu(y) - log pi(y))): needs only the sequence log-probs the learner computes anyway, and
    targets pi^(1-beta) mu^beta / Z exactly as the number of candidates grows (biased for few candidates;
    watch the effective sample size). If the candidates come from another proposal q (temperature, top-p),
    pass its log-probs: the weights become pi^(1-beta) mu^beta / q.

Logit functions map ids [B, T] to next-token logits [B, V], so HF models can be wrapped later.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch

from selfplay.rollout.categorical import sample_categorical

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def mix_logits(policy_logits: torch.Tensor, ref_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """(1 - beta) * policy_logits + beta * ref_logits (softmax of it ∝ pi_t^(1-beta) mu_t^beta)."""
    return (1 - beta) * policy_logits + beta * ref_logits


@torch.no_grad()
def sample_token_mixture(policy_fn: LogitsFn, ref_fn: LogitsFn, prefix_ids: torch.Tensor, length: int,
                         beta: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n responses of exactly ``length`` tokens (no EOS stop) after the 1-D prompt ``prefix_ids``,
    sampled token by token from the mixed logits; returns the response ids [n, length]."""
    ids = prefix_ids.reshape(1, -1).repeat(n, 1)
    for _ in range(length):
        scores = mix_logits(policy_fn(ids), ref_fn(ids), beta)
        ids = torch.cat([ids, sample_categorical(scores, generator)], dim=1)
    return ids[:, prefix_ids.numel():]


@torch.no_grad()
def sample_token_mixture_cached(policy, reference, prompts: list[list[int]], length: int, beta: float, n: int,
                                pad_id: int, temperature: float = 1.0, generator: torch.Generator | None = None,
                                device: str | torch.device = "cpu") -> torch.Tensor:
    """What ``sample_token_mixture`` draws, for Hugging Face causal LMs: ``n`` responses of exactly ``length``
    tokens after each prompt, every prompt's rows in one left-padded batch, each model decoding one new token
    per step over its own KV cache (instead of the whole sequence again). Returns ids [len(prompts), n, length]."""
    return sample_policy_and_mixture_cached(policy, reference, prompts, length, beta, n, 0, pad_id, temperature,
                                            generator, device)[1]


@torch.no_grad()
def sample_policy_and_mixture_cached(policy, reference, prompts: list[list[int]], length: int, beta: float,
                                     n_mixture: int, n_policy: int, pad_id: int, temperature: float = 1.0,
                                     generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                                     stop_ids: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_policy`` responses per prompt from the policy alone and ``n_mixture`` from the token-level mixture, in
    one decoding loop: the policy decodes every row, the reference only the mixture rows. A small batch's decode
    step is mostly reading the weights, so the policy's rows cost less inside the mixture's pass than in a pass of
    their own (Nash-MD at ~66M on 2 cores: 16 + 16 rows in 3.8 s, against 5.2 s in two calls). With
    ``n_mixture=0`` it is plain sampling from the policy, and ``reference`` may be None.
    Returns ids ([len(prompts), n_policy, T], [len(prompts), n_mixture, T]): T is ``length``, or fewer once
    every row has drawn one of ``stop_ids`` (a row goes on decoding after its own stop; the caller cuts it)."""
    width = max(len(p) for p in prompts)
    rows = [p for p in prompts for _ in range(n_mixture)] + [p for p in prompts for _ in range(n_policy)]
    mixed = len(prompts) * n_mixture  # the first rows sample the mixture, the rest the policy
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in rows], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    caches = [None, None]
    passes = [(policy, len(rows), _last_logits_only(policy))]
    if mixed:
        passes.append((reference, mixed, _last_logits_only(reference)))
    stops = torch.tensor(list(stop_ids), dtype=torch.long)
    stopped = torch.zeros(len(rows), dtype=torch.bool)
    drawn = []
    for _ in range(length):
        logits = []
        for i, (model, take, keep) in enumerate(passes):
            out = model(input_ids=ids[:take], attention_mask=mask[:take], position_ids=positions[:take],
                        past_key_values=caches[i], use_cache=True, **keep)
            caches[i] = out.past_key_values
            logits.append(out.logits[:, -1].float().cpu() / temperature)
        scores = logits[0] if mixed == 0 else torch.cat([mix_logits(logits[0][:mixed], logits[1], beta),
                                                         logits[0][mixed:]])
        token = sample_categorical(scores, generator)
        drawn.append(token)
        if len(stops):
            stopped |= torch.isin(token[:, 0], stops)
            if bool(stopped.all()):
                break
        ids = token.to(device)
        mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
        positions = positions[:, -1:] + 1
    out = torch.cat(drawn, dim=1)
    steps = out.shape[1]
    return (out[mixed:].reshape(len(prompts), n_policy, steps),
            out[:mixed].reshape(len(prompts), n_mixture, steps))


def _last_logits_only(model) -> dict:
    """The prompt's pass computes the head only at the last position, where the model takes ``logits_to_keep``."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def mixture_weights(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float,
                    proposal_logps: torch.Tensor | None = None) -> torch.Tensor:
    """Self-normalised weights of candidates for the target pi^(1-beta) mu^beta: with candidates from pi,
    ∝ exp(beta (ref_logps - policy_logps)); from a proposal q, ∝ pi^(1-beta) mu^beta / q. Log-sum-exp stable."""
    if proposal_logps is None:
        log_w = beta * (ref_logps - policy_logps)
    else:
        log_w = (1 - beta) * policy_logps + beta * ref_logps - proposal_logps
    return torch.softmax(log_w.double(), dim=0)


def effective_sample_size(weights: torch.Tensor) -> float:
    """1 / sum w^2 for normalised weights: K for equal weights, 1 when one candidate takes all the mass."""
    return float(1.0 / (weights ** 2).sum())


def resample_sequence_mixture(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float,
                              num_draws: int, generator: torch.Generator | None = None,
                              proposal_logps: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Indices of ``num_draws`` candidates resampled (with replacement) by their mixture weights, and the
    effective sample size of those weights."""
    weights = mixture_weights(policy_logps, ref_logps, beta, proposal_logps)
    indices = torch.multinomial(weights, num_draws, replacement=True, generator=generator)
    return indices, effective_sample_size(weights)


@torch.no_grad()
def step_logps(logits_fn: LogitsFn, prefix_ids: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """log softmax(logits_fn(prefix + y_<t))[y_t] for every response and step: [n, length] (no gradient)."""
    ids = torch.cat([prefix_ids.reshape(1, -1).expand(len(responses), -1), responses], dim=1)
    start = prefix_ids.numel()
    return torch.stack([torch.log_softmax(logits_fn(ids[:, :start + t]), dim=-1)
                        .gather(1, responses[:, t:t + 1]).squeeze(1)
                        for t in range(responses.shape[1])], dim=1)


def sequence_logps(logits_fn: LogitsFn, prefix_ids: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """log p(y | prefix) summed over response tokens: [n]."""
    return step_logps(logits_fn, prefix_ids, responses).sum(dim=1)


def all_sequences(vocab_size: int, length: int) -> torch.Tensor:
    """Every response of ``length`` tokens, in lexicographic order: [vocab_size ** length, length]."""
    return torch.cartesian_prod(*[torch.arange(vocab_size)] * length).reshape(-1, length)


@torch.no_grad()
def exact_sequence_mixture(policy_fn: LogitsFn, ref_fn: LogitsFn, prefix_ids: torch.Tensor, length: int,
                           beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(all responses, pi^(1-beta) mu^beta / Z over them) by enumeration, for a tiny vocab and length."""
    ys = all_sequences(policy_fn(prefix_ids.reshape(1, -1)).shape[-1], length)
    log_pi, log_mu = sequence_logps(policy_fn, prefix_ids, ys), sequence_logps(ref_fn, prefix_ids, ys)
    log_target = (1 - beta) * log_pi + beta * log_mu
    return ys, torch.softmax(log_target.double(), dim=0)


@torch.no_grad()
def exact_token_mixture(policy_fn: LogitsFn, ref_fn: LogitsFn, prefix_ids: torch.Tensor, length: int,
                        beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(all responses, prod_t softmax(mix_logits)[y_t]) by enumeration: what sample_token_mixture draws."""
    ys = all_sequences(policy_fn(prefix_ids.reshape(1, -1)).shape[-1], length)

    def mixed(ids: torch.Tensor) -> torch.Tensor:
        return mix_logits(policy_fn(ids), ref_fn(ids), beta)

    return ys, sequence_logps(mixed, prefix_ids, ys).double().exp()
