"""Nash-MD — Nash Learning from Human Feedback (Munos et al., arXiv 2312.00886), policy-gradient form.

Target: the Nash equilibrium of the tau-regularised preference game
P_tau(pi > pi') = P(pi > pi') - tau KL(pi || mu) + tau KL(pi' || mu). Per prompt, y ~ pi_theta and
y' ~ pi^beta, the geometric mixture pi^beta ∝ pi_theta^(1-beta) mu^beta (rollout/geometric_mixture.py);
one preference p = P(y > y'). No gradient flows through y' or p. With a fixed beta > 0 (TRL's
mixture_coef) the stationary point is pi ∝ mu exp(P(· > pi^beta) / tau), not the regularised equilibrium;
the theory ties beta = eta tau to the step size, so beta -> 0 (preference.games.mixture_fixed_point).

Sequence-level form (what this module computes). The gradient of the regularised objective
J(theta) = E_{y~pi_theta}[P(y > pi^beta)] - tau KL(pi_theta || mu), with the opponent held fixed, is
E_y[(p - 1/2 - tau (log pi(y) - log mu(y))) grad log pi(y)] (the constant -tau of the KL gradient and the
1/2 control variate vanish because E[grad log pi] = 0). The surrogate loss
    L = mean( sg(tau (log pi(y) - log mu(y)) - (p - 1/2)) * log pi(y) )
has exactly that gradient, negated, so it is the unbiased score-function estimator of -grad J. It needs
log pi(y) SUMMED over response tokens (an average over tokens is not log pi(y) and breaks the identity).

TRL's NashMDTrainer is token-level: tau sum_t sg(log pi_t - log ref_t) log pi_t - (p - 1/2) sum_t log pi_t.
Its preference term is the same as ours. Its KL term pairs each token's score grad log pi_t only with that
token's log-ratio; ours pairs it with the whole sequence's log-ratio. The pairs with earlier tokens (s < t)
vanish in expectation, so ours is the full REINFORCE gradient of KL(pi||mu) (with extra variance from
those terms), while TRL's keeps only s = t and drops the later tokens' log-ratios (s > t). The two agree
in expectation for one-token responses and whenever later log-ratios do not depend on earlier tokens;
in general TRL's KL gradient is the gradient of the per-step KLs with the prefix distribution frozen
(tests/test_pair_losses.py enumerates a two-token case where they differ).
"""

from __future__ import annotations

import numpy as np
import torch


from selfplay.config_fields import Section, _f
from selfplay.learner.algorithms.base import AlgorithmEntry, RolloutNeeds
from selfplay.learner.algorithms.mixture import MIXTURE_PRESET, MixtureConfig
from selfplay.learner.batch import TrainingBatch
from selfplay.rollout.records import PreferenceGroup


def nash_md_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, p_win: torch.Tensor, tau: float
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean( sg(tau (log pi(y) - log mu(y)) - (p_win - 1/2)) * log pi(y) ), y ~ pi_theta, p_win = P(y > y')."""
    logratio = (policy_logps - ref_logps).detach()
    coefficient = tau * logratio - (p_win - 0.5)
    loss = (coefficient * policy_logps).mean()
    return loss, {"loss": loss.item(), "logratio_mean": logratio.mean().item(),
                  "p_win_mean": p_win.mean().item(),
                  "regularised_score_mean": -coefficient.mean().item()}


class NashMD:
    """Per prompt: y ~ pi_theta (trained on) and y' ~ pi^beta (the opponent, not trained on); p = P(y > y').
    The reference mu is the starting policy and never moves."""
    name = "nash_md"

    def __init__(self, tau: float, mixture_beta: float, mixture_sampler: str = "auto",
                 mixture_candidates: int = 8) -> None:
        self.tau = tau
        self.needs = RolloutNeeds(responses_per_prompt=1, preferences="matrix", opponent="mixture",
                                  mixture_beta=mixture_beta, mixture_sampler=mixture_sampler,
                                  mixture_candidates=mixture_candidates)

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return prompts_per_step

    def build_batch(self, groups: list[PreferenceGroup], rng=None) -> tuple[TrainingBatch, dict[str, float]]:
        ys = [g.completions[0] for g in groups]
        p_win = np.asarray([g.matrix[0, 1] for g in groups], dtype=np.float32)
        batch = TrainingBatch([y.prompt_token_ids for y in ys], [y.response_token_ids for y in ys],
                              [y.policy_version for y in ys], {"p_win": p_win})
        return batch, {"p_win_vs_mixture": float(p_win.mean())}

    def loss(self, policy_logps, ref_logps, batch):
        p_win = torch.tensor(batch.fields["p_win"], dtype=policy_logps.dtype, device=policy_logps.device)
        return nash_md_loss(policy_logps, ref_logps, p_win, self.tau)

    def reference_resets_after(self, step: int) -> bool:
        return False


class NashMDConfig(Section):
    tau: float = _f(0.1, "KL regularisation tau (TRL: beta)", gt=0)
    mixture: MixtureConfig = _f(MixtureConfig, "the opponent's geometric mixture")


ENTRIES = (AlgorithmEntry(
    "nash_md", "nash_md", NashMDConfig,
    lambda o, run: NashMD(tau=o.tau, mixture_beta=o.mixture.beta, mixture_sampler=o.mixture.sampler,
                          mixture_candidates=o.mixture.candidates),
    "Nash-MD, policy-gradient form, against the geometric mixture (arXiv 2312.00886)", preset=MIXTURE_PRESET),)
