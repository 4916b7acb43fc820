"""Online DPO baseline (Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290; online with
fresh pairs from the policy as in Guo et al., arXiv 2402.04792).

With h = (log pi(y_1) - log mu(y_1)) - (log pi(y_2) - log mu(y_2)) and p the probability that y_1 is
preferred (p = 1 for a hard chosen/rejected pair, p = 1 - epsilon for label smoothing epsilon):

    L = -[ p log sigma(beta h) + (1 - p) log sigma(-beta h) ]

Its optimum on a Bradley-Terry preference sigma(s_1 - s_2) is pi ∝ mu exp(s / beta): it cannot represent a
preference cycle (tests/test_exact_game_convergence.py shows it settling on the Bradley-Terry favourite).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(h: torch.Tensor, beta: float, p: torch.Tensor | float = 1.0
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean -[p log sigma(beta h) + (1 - p) log sigma(-beta h)], h = r(chosen/first) - r(rejected/second)."""
    loss = -(p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h)).mean()
    return loss, {"loss": loss.item(), "margin_mean": h.mean().item(),
                  "reward_margin_mean": (beta * h).mean().item(), "accuracy": (h > 0).float().mean().item()}
