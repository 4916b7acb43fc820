"""DRIFT — Dissatisfaction-Refined Iterative preFerence Training (arXiv 2510.02341; repo cacayaya/DRIFT).

Pairs (x, y+ > y_DSAT): y_DSAT is a real dissatisfying reply, y+ ~ pi_t an improved answer the policy
writes after seeing the user's complaint. DPO with an NLL term on the chosen response, with
h = (log pi(y+) - log mu(y+)) - (log pi(y_DSAT) - log mu(y_DSAT)):

    L = mean[ -log sigma(beta h) - alpha * log pi(y+|x) / |y+| ]    (paper: beta = 0.1, alpha = 0.001)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def drift_loss(h: torch.Tensor, chosen_logps_mean: torch.Tensor, beta: float, alpha: float
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean[-log sigma(beta h) - alpha * chosen_logps_mean], chosen_logps_mean = log pi(y+|x) / |y+|."""
    preference = -F.logsigmoid(beta * h)
    nll = -chosen_logps_mean
    loss = (preference + alpha * nll).mean()
    return loss, {"loss": loss.item(), "dpo_loss": preference.mean().item(), "chosen_nll": nll.mean().item(),
                  "margin_mean": h.mean().item(), "accuracy": (h > 0).float().mean().item()}
