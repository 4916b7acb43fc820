"""The algorithm contract. Each algorithm declares, in its own module: what it samples, what it asks the
preference model, how it turns responses + preferences into training targets, and its loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from learner.batch import TrainingBatch
from rollout.records import PreferenceGroup


@dataclass(frozen=True)
class RolloutNeeds:
    responses_per_prompt: int
    preferences: str  # "matrix": the full K x K matrix per prompt


class Algorithm(Protocol):
    name: str
    needs: RolloutNeeds

    def sequences_per_step(self, prompts_per_step: int) -> int:
        """How many sequences one learner step trains on (sizes gradient accumulation)."""
        ...

    def build_batch(self, groups: list[PreferenceGroup]) -> tuple[TrainingBatch, dict[str, float]]:
        """Training targets from scored groups (pure logic, runs in the controller)."""
        ...

    def loss(self, policy_logps: torch.Tensor, ref_logps: torch.Tensor, batch: TrainingBatch
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch (runs in the learner) and the terms it logs."""
        ...

    def reference_resets_after(self, step: int) -> bool:
        """Whether the reference policy becomes the current policy after learner step ``step``."""
        ...
