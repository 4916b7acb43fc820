"""The algorithm contract. Each algorithm declares, in its own module: what it samples, what it asks the
preference model, how it turns responses + preferences into training targets, and its loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from selfplay.learner.batch import TrainingBatch
from selfplay.rollout.records import PreferenceGroup


@dataclass(frozen=True)
class RolloutNeeds:
    """What an algorithm asks of the rollout and preference phases (orchestration/loop/experience.py obeys it)."""
    responses_per_prompt: int       # from the policy (or from the mixture when sample_from is "mixture")
    preferences: str = "matrix"     # "matrix": preference model, all pairs; "self_judge": the policy judges;
                                    # "dsat": DRIFT's (positive, rejected) pairs, scored only to filter
    sample_from: str = "policy"     # "policy" or "mixture" (IPO-MD draws both responses from pi^beta)
    opponent: str = "none"          # "mixture": one more response per prompt from pi^beta (Nash-MD)
    mixture_beta: float = 0.0


class Algorithm(Protocol):
    name: str
    needs: RolloutNeeds

    def sequences_per_step(self, prompts_per_step: int) -> int:
        """How many sequences one learner step trains on (sizes gradient accumulation)."""
        ...

    def build_batch(self, groups: list[PreferenceGroup], rng: np.random.Generator
                    ) -> tuple[TrainingBatch, dict[str, float]]:
        """Training targets from scored groups (pure logic, runs in the controller). ``rng`` is seeded from
        the run seed and the step, so a resumed run draws the same labels."""
        ...

    def loss(self, policy_logps: torch.Tensor, ref_logps: torch.Tensor, batch: TrainingBatch
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch (runs in the learner) and the terms it logs."""
        ...

    def reference_resets_after(self, step: int) -> bool:
        """Whether the reference policy becomes the current policy after learner step ``step``."""
        ...
