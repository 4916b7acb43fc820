"""OSP — Online Self-Preferring language models (Zhai et al., arXiv 2405.14103).

K responses from pi_theta; the same model judges them (LLM-as-a-judge; the judge prompt is configured
elsewhere). The preference strength of a over b averages the judge's P("A") over both presentation orders,
which cancels a constant position bias. Ranked pairing sorts the K responses by score and pairs rank i with
rank K+1-i, giving floor(K/2) pairs of decreasing strength. Loss, the soft-preference cross-entropy with
h = r(winner) - r(loser) and p the strength of the winner over the loser (p = 1 gives DPO):

    L = -[ p log sigma(beta h) + (1 - p) log sigma(-beta h) ]

Judge warm-up (``judge_warmup_steps``, off by default): a randomly initialised policy cannot judge, so OSP on
it only sharpens noise. For the first steps the batch also holds the judged presentations labelled by the
preference model, and the policy learns to judge by the cross-entropy of its verdict tokens,

    L_judge = -[ q log pi("A" | judge prompt) + (1 - q) log pi("B" | judge prompt) ],  q = P(first shown > second)

standing in for the judging skill an instruction-tuned policy brings to OSP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from typing import Literal

from pydantic import model_validator

from selfplay.config_fields import KeyProblem, Section, _f
from selfplay.learner.algorithms.base import AlgorithmEntry, RolloutNeeds, missing_fields
from selfplay.learner.batch import TrainingBatch, first_second, pair_batch
from selfplay.preference.matrix import win_rates
from selfplay.rollout.records import PreferenceGroup


def osp_loss(h: torch.Tensor, p: torch.Tensor, beta: float, weight: torch.Tensor | float = 1.0
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean -[p log sigma(beta h) + (1 - p) log sigma(-beta h)], h = r(winner) - r(loser), p its strength
    (each pair's term times ``weight``)."""
    loss = -(weight * (p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h))).mean()
    return loss, {"loss": loss.item(), "margin_mean": h.mean().item(), "strength_mean": p.mean().item(),
                  "accuracy": (h > 0).float().mean().item()}


def judge_loss(logp_a: torch.Tensor, logp_b: torch.Tensor, q: torch.Tensor, weight: torch.Tensor | float = 1.0
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean -[q log pi(A) + (1 - q) log pi(B)]: the verdict tokens' cross-entropy against the label q (each
    example's term times ``weight``)."""
    loss = -(weight * (q * logp_a + (1 - q) * logp_b)).mean()
    return loss, {"judge_loss": loss.item(),
                  "judge_accuracy": ((logp_a > logp_b) == (q > 0.5)).float().mean().item()}


def ranked_pairs(scores: Sequence[float]) -> list[tuple[int, int]]:
    """(winner, loser) index pairs: best with worst, 2nd best with 2nd worst, ...; floor(K/2) pairs.

    Ties keep the original order (stable sort), so the pairing is deterministic."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(order[i], order[len(order) - 1 - i]) for i in range(len(order) // 2)]


class OSP:
    """K responses from pi_theta judged by the policy itself (preference/self_judge.py builds the matrix);
    ranked pairs (best with worst, ...) with the judged strength as a soft label."""
    name = "osp"

    def __init__(self, beta: float, k: int, iteration_steps: int = 0, labels: str = "soft") -> None:
        self.beta = beta
        self.labels = labels
        self.iteration_steps = iteration_steps
        self.needs = RolloutNeeds(responses_per_prompt=k, preferences="self_judge")

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return prompts_per_step * 2 * (self.needs.responses_per_prompt // 2)

    def build_batch(self, groups: list[PreferenceGroup], rng=None) -> tuple[TrainingBatch, dict[str, float]]:
        pairs, strengths = [], []
        for g in groups:
            for w, l in ranked_pairs(win_rates(g.matrix).tolist()):
                strengths.append(float(g.matrix[w, l]))
                pairs.append((g.completions[w], g.completions[l], 1.0 if self.labels == "hard" else strengths[-1]))
        batch = pair_batch(pairs)
        batch.fields["judge"] = np.zeros(len(batch), dtype=np.float32)
        metrics = {"strength_mean": float(np.mean(strengths))}
        examples = [(ex, g.completions[0].policy_version) for g in groups for ex in g.judge_examples]
        # The step's loss is mean(OSP term over its pairs) + mean(judge term over its examples), while the
        # learner averages micro-batches by their share of all pairs: each term is weighted by
        # all pairs / its own pairs, so the split into micro-batches (and ranks) does not change the sum.
        total = len(pairs) + len(examples)
        batch.fields["weight"] = np.full(len(batch), total / max(len(pairs), 1), dtype=np.float32)
        if examples:  # judge warm-up: (prompt -> verdict A, prompt -> verdict B) pairs labelled q
            n = len(examples)
            judge = TrainingBatch(
                [ids for (ids, _, _, _), _ in examples for _ in range(2)],
                [[token] for (_, a, b, _), _ in examples for token in (a, b)],
                [version for _, version in examples for _ in range(2)],
                {"p": np.repeat([q for (_, _, _, q), _ in examples], 2).astype(np.float32),
                 "length": np.ones(2 * n, dtype=np.float32), "judge": np.ones(2 * n, dtype=np.float32),
                 "weight": np.full(2 * n, total / n, dtype=np.float32)},
                group_size=2)
            batch = TrainingBatch.concat([batch, judge])
            metrics["osp/judge_examples"] = n
        return batch, metrics

    def loss(self, policy_logps, ref_logps, batch):
        as_tensor = lambda x: torch.tensor(x, dtype=policy_logps.dtype, device=policy_logps.device)  # noqa: E731
        first, second = first_second(policy_logps - ref_logps)
        p = as_tensor(batch.fields["p"][0::2])
        judge = torch.tensor(batch.fields["judge"][0::2] > 0, device=policy_logps.device)
        weight = as_tensor(batch.fields["weight"][0::2]) if "weight" in batch.fields else torch.ones_like(p)
        share = lambda mask: mask.float().mean()  # noqa: E731  (this micro-batch's pairs in each term)
        total, terms = policy_logps.new_zeros(()), {}
        if (~judge).any():
            pair_term, terms = osp_loss((first - second)[~judge], p[~judge], self.beta, weight[~judge])
            total = pair_term * share(~judge)
            terms["loss"] = (pair_term / weight[~judge].mean()).item()  # the unweighted mean, as logged before
        if judge.any():
            logp_a, logp_b = first_second(policy_logps)
            judged, judge_terms = judge_loss(logp_a[judge], logp_b[judge], p[judge], weight[judge])
            total = total + judged * share(judge)
            judge_terms["judge_loss"] = (judged / weight[judge].mean()).item()
            terms = {**terms, **judge_terms, "loss": total.item()}
        return total, terms

    def reference_resets_after(self, step: int) -> bool:
        return bool(self.iteration_steps) and step % self.iteration_steps == 0


class OSPConfig(Section):
    beta: float = _f(0.1, "inverse temperature of the soft-preference loss", gt=0)
    judge_template: str = _f("{prompt} {a} {b}", "self-judge prompt; {prompt}, {a}, {b} are filled in")
    verdict_a: str = _f("a", "the word (one token) by which the judge prefers the first response")
    verdict_b: str = _f("b", "the word (one token) by which the judge prefers the second response")
    iteration_steps: int = _f(0, "reset the reference to the policy every N steps (0: fixed reference)", ge=0)
    labels: Literal["soft", "hard"] = _f(
        "soft", "soft: the judged strength is the label (the paper); hard: the self-judged winner with p = 1")
    judge_warmup_steps: int = _f(
        0, "for the first N steps also teach the policy to judge: cross-entropy of its verdict tokens against "
           "the preference model's label of the same judged pairs; stands in for the judging skill an "
           "instruction-tuned policy brings (0: pure OSP)", ge=0)

    @model_validator(mode="after")
    def _template(self) -> OSPConfig:
        if problem := missing_fields(self.judge_template, ("prompt", "a", "b")):
            raise KeyProblem("judge_template", problem)
        return self


ENTRIES = (AlgorithmEntry(
    "osp", "osp", OSPConfig,
    lambda o, run: OSP(beta=o.beta, k=run.k, iteration_steps=o.iteration_steps, labels=o.labels),
    "Online Self-Preferring: the policy judges its own responses (arXiv 2405.14103)",
    # the random tiny model cannot judge: a warm-up teaches it, hard labels train on its verdicts, and it judges
    # in words of its own, which the embedded vocabulary then holds (orchestration/run/policy_model.py)
    embedded_preset={"labels": "hard", "judge_warmup_steps": 120, "verdict_a": "first", "verdict_b": "second",
                     "judge_template": "{prompt} first: {a} second: {b} better:"}),)
