"""Online DPO baseline (Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290; online with
fresh pairs from the policy as in Guo et al., arXiv 2402.04792).

With h = (log pi(y_1) - log mu(y_1)) - (log pi(y_2) - log mu(y_2)) and p the probability that y_1 is
preferred (p = 1 for a hard chosen/rejected pair, p = 1 - epsilon for label smoothing epsilon):

    L = -[ p log sigma(beta h) + (1 - p) log sigma(-beta h) ]

Its optimum on a Bradley-Terry preference sigma(s_1 - s_2) is pi ∝ mu exp(s / beta): it cannot represent a
preference cycle (tests/test_exact_game_convergence.py shows it settling on the Bradley-Terry favourite).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from typing import Literal

from selfplay.config_fields import Section, _f
from selfplay.learner.algorithms.base import AlgorithmEntry, RolloutNeeds
from selfplay.learner.batch import TrainingBatch, first_second, labelled_pairs, pair_batch
from selfplay.rollout.records import PreferenceGroup


def dpo_loss(h: torch.Tensor, beta: float, p: torch.Tensor | float = 1.0
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean -[p log sigma(beta h) + (1 - p) log sigma(-beta h)], h = r(chosen/first) - r(rejected/second)."""
    loss = -(p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h)).mean()
    return loss, {"loss": loss.item(), "margin_mean": h.mean().item(),
                  "reward_margin_mean": (beta * h).mean().item(), "accuracy": (h > 0).float().mean().item()}


class OnlineDPO:
    """Online DPO baseline (Guo et al., arXiv 2402.04792): two responses from pi_theta, the preference
    model picks the winner (hard) or gives p (soft); fixed reference."""
    name = "dpo"

    def __init__(self, beta: float, labels: str) -> None:
        self.beta = beta
        self.labels = labels
        self.needs = RolloutNeeds(responses_per_prompt=2, preferences="matrix")

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return 2 * prompts_per_step

    def build_batch(self, groups: list[PreferenceGroup], rng: np.random.Generator
                    ) -> tuple[TrainingBatch, dict[str, float]]:
        pairs = labelled_pairs(groups, self.labels, rng)
        return pair_batch(pairs), {}

    def loss(self, policy_logps, ref_logps, batch):
        first, second = first_second(policy_logps - ref_logps)
        p = torch.tensor(batch.fields["p"][0::2], dtype=policy_logps.dtype, device=policy_logps.device)
        return dpo_loss(first - second, self.beta, p)

    def reference_resets_after(self, step: int) -> bool:
        return False


class DPOConfig(Section):
    beta: float = _f(0.1, "DPO inverse temperature beta", gt=0)
    labels: Literal["hard", "soft"] = _f("hard", "hard: winner by the preference; soft: cross-entropy on p")


ENTRIES = (AlgorithmEntry("dpo", "dpo", DPOConfig, lambda o, run: OnlineDPO(beta=o.beta, labels=o.labels),
                          "online DPO baseline (arXiv 2305.18290, 2402.04792)"),)
