"""OSP — Online Self-Preferring language models (Zhai et al., arXiv 2405.14103).

K responses from pi_theta; the same model judges them (LLM-as-a-judge; the judge prompt is configured
elsewhere). The preference strength of a over b averages the judge's P("A") over both presentation orders,
which cancels a constant position bias. Ranked pairing sorts the K responses by score and pairs rank i with
rank K+1-i, giving floor(K/2) pairs of decreasing strength. Loss, the soft-preference cross-entropy with
h = r(winner) - r(loser) and p the strength of the winner over the loser (p = 1 gives DPO):

    L = -[ p log sigma(beta h) + (1 - p) log sigma(-beta h) ]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from learner.algorithms.base import RolloutNeeds
from learner.batch import TrainingBatch, first_second, pair_batch
from preference.matrix import win_rates
from rollout.records import PreferenceGroup


def osp_loss(h: torch.Tensor, p: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """mean -[p log sigma(beta h) + (1 - p) log sigma(-beta h)], h = r(winner) - r(loser), p its strength."""
    loss = -(p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h)).mean()
    return loss, {"loss": loss.item(), "margin_mean": h.mean().item(), "strength_mean": p.mean().item(),
                  "accuracy": (h > 0).float().mean().item()}


def ranked_pairs(scores: Sequence[float]) -> list[tuple[int, int]]:
    """(winner, loser) index pairs: best with worst, 2nd best with 2nd worst, ...; floor(K/2) pairs.

    Ties keep the original order (stable sort), so the pairing is deterministic."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(order[i], order[len(order) - 1 - i]) for i in range(len(order) // 2)]


def self_judge_strength(p_a_first, p_a_second):
    """Strength of a over b: 1/2 [P("A" | a shown as A, b as B) + 1 - P("A" | b shown as A, a as B)].

    Works elementwise on floats, numpy arrays or tensors."""
    return 0.5 * (p_a_first + (1 - p_a_second))


class OSP:
    """K responses from pi_theta judged by the policy itself (preference/self_judge.py builds the matrix);
    ranked pairs (best with worst, ...) with the judged strength as a soft label."""
    name = "osp"

    def __init__(self, beta: float, k: int, iteration_steps: int = 0) -> None:
        self.beta = beta
        self.iteration_steps = iteration_steps
        self.needs = RolloutNeeds(responses_per_prompt=k, preferences="self_judge")

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return prompts_per_step * 2 * (self.needs.responses_per_prompt // 2)

    def build_batch(self, groups: list[PreferenceGroup], rng=None) -> tuple[TrainingBatch, dict[str, float]]:
        pairs = []
        for g in groups:
            for w, l in ranked_pairs(win_rates(g.matrix).tolist()):
                pairs.append((g.completions[w], g.completions[l], float(g.matrix[w, l])))
        return pair_batch(pairs), {"strength_mean": float(np.mean([p for _, _, p in pairs]))}

    def loss(self, policy_logps, ref_logps, batch):
        first, second = first_second(policy_logps - ref_logps)
        p = torch.tensor(batch.fields["p"][0::2], dtype=policy_logps.dtype, device=policy_logps.device)
        return osp_loss(first - second, p, self.beta)

    def reference_resets_after(self, step: int) -> bool:
        return bool(self.iteration_steps) and step % self.iteration_steps == 0
