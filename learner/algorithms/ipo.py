"""Online IPO and IPO-MD (Calandriello et al., "Human Alignment of Large Language Models through Online
Preference Optimisation", arXiv 2403.08635).

Both responses come from sg(pi_theta) (online IPO) or from the geometric mixture pi^beta (IPO-MD; beta = 0
is online IPO); one preference p = P(y > y') per pair; mu = pi_ref is the fixed starting model. With
h = (log pi(y) - log mu(y)) - (log pi(y') - log mu(y')):

    soft label:  L = mean (h - (p - 1/2) / tau)^2
    hard label:  L = mean (h_wl - 1 / (2 tau))^2,   h_wl = h(winner, loser)

The hard form equals the soft one in expectation (up to a constant) when the winner is DRAWN with
probability p; taking the argmax of p instead is a different (biased) target. The fixed point of online IPO
is the Nash equilibrium of the tau-regularised game; IPO-MD with a fixed beta > 0 lands elsewhere, on
preference.games.mixture_fixed_point (tests/test_exact_game_convergence.py). Whether h sums or averages token log-probs changes
what tau means (offline IPO code averages, online code sums): the caller chooses, explicitly.
"""

from __future__ import annotations

import torch


def ipo_loss(h: torch.Tensor, p: torch.Tensor, tau: float) -> tuple[torch.Tensor, dict[str, float]]:
    """mean (h - (p - 1/2) / tau)^2, h = r(first) - r(second), p = P(first > second)."""
    target = (p - 0.5) / tau
    loss = ((h - target) ** 2).mean()
    return loss, _terms(loss, h, target, agrees=(h > 0) == (p > 0.5))


def ipo_hard_loss(h_w_l: torch.Tensor, tau: float) -> tuple[torch.Tensor, dict[str, float]]:
    """mean (h_w_l - 1/(2 tau))^2, h_w_l = r(winner) - r(loser), the winner drawn with probability p."""
    target = torch.full_like(h_w_l, 0.5 / tau)
    loss = ((h_w_l - target) ** 2).mean()
    return loss, _terms(loss, h_w_l, target, agrees=h_w_l > 0)


def _terms(loss: torch.Tensor, h: torch.Tensor, target: torch.Tensor, agrees: torch.Tensor) -> dict[str, float]:
    return {"loss": loss.item(), "margin_mean": h.mean().item(), "target_mean": target.mean().item(),
            "accuracy": agrees.float().mean().item()}
