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

import numpy as np
import torch

from typing import Literal

from selfplay.config_fields import Section, _f
from selfplay.learner.algorithms.base import AlgorithmEntry, RolloutNeeds
from selfplay.learner.algorithms.mixture import MIXTURE_PRESET, MixtureConfig
from selfplay.learner.batch import TrainingBatch, first_second, labelled_pairs, pair_batch
from selfplay.rollout.records import PreferenceGroup


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


class OnlineIPO:
    """Pairs (y, y') from sg(pi_theta) (online IPO) or from pi^beta (IPO-MD); one preference per pair;
    soft labels regress on p, hard labels draw the winner with probability p. mu is fixed."""

    def __init__(self, tau: float, labels: str, mixture_beta: float = 0.0, mixture_sampler: str = "auto",
                 mixture_candidates: int = 8) -> None:
        self.tau = tau
        self.labels = labels
        self.name = "ipo_md" if mixture_beta > 0 else "online_ipo"
        self.needs = RolloutNeeds(responses_per_prompt=2, preferences="matrix",
                                  sample_from="mixture" if mixture_beta > 0 else "policy",
                                  mixture_beta=mixture_beta, mixture_sampler=mixture_sampler,
                                  mixture_candidates=mixture_candidates)

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return 2 * prompts_per_step

    def build_batch(self, groups: list[PreferenceGroup], rng: np.random.Generator
                    ) -> tuple[TrainingBatch, dict[str, float]]:
        pairs = labelled_pairs(groups, self.labels, rng)
        return pair_batch(pairs), {"p_first_mean": float(np.mean([g.matrix[0, 1] for g in groups]))}

    def loss(self, policy_logps, ref_logps, batch):
        first, second = first_second(policy_logps - ref_logps)
        if self.labels == "hard":
            return ipo_hard_loss(first - second, self.tau)
        p = torch.tensor(batch.fields["p"][0::2], dtype=policy_logps.dtype, device=policy_logps.device)
        return ipo_loss(first - second, p, self.tau)

    def reference_resets_after(self, step: int) -> bool:
        return False


class IPOConfig(Section):
    tau: float = _f(0.1, "IPO regularisation tau; the target margin is (p - 1/2)/tau", gt=0)
    labels: Literal["soft", "hard"] = _f("soft", "soft: regress on p; hard: winner drawn with probability p")
    mixture: MixtureConfig = _f(MixtureConfig, "IPO-MD's sampling mixture (online_ipo samples the policy: beta 0)")


ENTRIES = (
    AlgorithmEntry("online_ipo", "ipo", IPOConfig, lambda o, run: OnlineIPO(tau=o.tau, labels=o.labels),
                   "online IPO: both responses from the policy (arXiv 2403.08635)"),
    AlgorithmEntry("ipo_md", "ipo", IPOConfig,
                   lambda o, run: OnlineIPO(tau=o.tau, labels=o.labels, mixture_beta=o.mixture.beta,
                                            mixture_sampler=o.mixture.sampler,
                                            mixture_candidates=o.mixture.candidates),
                   "IPO-MD: both responses from the geometric mixture (arXiv 2403.08635)", preset=MIXTURE_PRESET),
)
