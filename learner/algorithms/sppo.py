"""SPPO — Self-Play Preference Optimization (Wu et al., arXiv 2405.00675; reference code uclaml/SPPO).

Multiplicative weights toward the Nash equilibrium of the preference game,
pi_{t+1}(y) ∝ pi_t(y) exp(eta P(y > pi_t)), fitted by squared regression of the log-ratio:

    L(theta) = E_y [ ( log pi_theta(y|x) - log pi_t(y|x) - eta (P_hat(y > pi_t | x) - 1/2) )^2 ]

with pi_ref = pi_t, the policy at the start of the iteration (the reference moves every iteration).
Samples: K responses per prompt from the current policy. Preferences: the full K x K matrix, from
which P_hat(y_k > pi_t) = mean_j P[k, j] (diagonal 1/2). Uses the raw pairwise matrix, not per-response
averaged scores turned into pair probabilities (the bug of uclaml/SPPO issue 15).
"""

from __future__ import annotations

import numpy as np
import torch

from typing import Literal

from selfplay.config_fields import Section, _f
from selfplay.learner.algorithms.base import AlgorithmEntry, RolloutNeeds
from selfplay.learner.batch import TrainingBatch
from selfplay.preference.matrix import win_rates
from selfplay.rollout.records import PreferenceGroup


def sppo_loss(logratio: torch.Tensor, p_win: torch.Tensor, eta: float
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """mean (logratio - eta (p_win - 1/2))^2, with logratio = log pi_theta(y) - log pi_ref(y)."""
    target = eta * (p_win - 0.5)
    loss = ((logratio - target) ** 2).mean()
    return loss, {"loss": loss.item(), "target_mean": target.mean().item(),
                  "logratio_mean": logratio.mean().item(),
                  "regression_error": (logratio - target).abs().mean().item()}


class SPPO:
    name = "sppo"

    def __init__(self, eta: float, k: int, form: str = "all_k", iteration_steps: int = 1) -> None:
        if form not in ("all_k", "best_worst"):
            raise ValueError(f"unknown SPPO form {form!r} (valid: all_k, best_worst)")
        self.eta = eta
        self.form = form
        self.iteration_steps = iteration_steps
        self.needs = RolloutNeeds(responses_per_prompt=k, preferences="matrix")

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return prompts_per_step * (self.needs.responses_per_prompt if self.form == "all_k" else 2)

    def build_batch(self, groups: list[PreferenceGroup], rng: np.random.Generator | None = None
                    ) -> tuple[TrainingBatch, dict[str, float]]:
        prompts, responses, versions, p_win = [], [], [], []
        chosen, rejected = [], []
        for group in groups:
            rates = win_rates(group.matrix)
            if self.form == "all_k":
                keep = list(range(group.k))
            else:  # best and worst by win-rate, as the reference scripts train
                keep = [int(np.argmax(rates)), int(np.argmin(rates))]
            chosen.append(rates.max())
            rejected.append(rates.min())
            for i in keep:
                c = group.completions[i]
                prompts.append(c.prompt_token_ids)
                responses.append(c.response_token_ids)
                versions.append(c.policy_version)
                p_win.append(rates[i])
        batch = TrainingBatch(prompts, responses, versions, {"p_win": np.asarray(p_win, dtype=np.float32)})
        return batch, {"p_win_chosen": float(np.mean(chosen)), "p_win_rejected": float(np.mean(rejected))}

    def loss(self, policy_logps: torch.Tensor, ref_logps: torch.Tensor, batch: TrainingBatch
             ) -> tuple[torch.Tensor, dict[str, float]]:
        p_win = torch.tensor(batch.fields["p_win"], dtype=policy_logps.dtype, device=policy_logps.device)
        return sppo_loss(policy_logps - ref_logps, p_win, self.eta)

    def reference_resets_after(self, step: int) -> bool:
        return step % self.iteration_steps == 0


class SPPOConfig(Section):
    eta: float = _f(1000.0, "step size eta of the multiplicative-weights update (the paper's 1000 = 1/beta, with "
                            "summed log-probs; the embedded tiny model: 10)", gt=0)
    form: Literal["all_k", "best_worst"] = _f(
        "all_k", "train on all K responses, or on the best and worst as the reference scripts do")
    iteration_steps: int = _f(
        1250, "learner steps per SPPO iteration; the reference resets after each (the paper: one pass over ~20k "
              "prompts, 1250 steps of 16; the embedded tiny model: 10)", ge=1)


ENTRIES = (AlgorithmEntry(
    "sppo", "sppo", SPPOConfig,
    lambda o, run: SPPO(eta=o.eta, k=run.k, form=o.form, iteration_steps=o.iteration_steps),
    "Self-Play Preference Optimization (arXiv 2405.00675)",
    # sized to the tiny model's 6-token responses and short iterations
    embedded_preset={"eta": 10.0, "iteration_steps": 10}),)
