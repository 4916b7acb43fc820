"""The algorithm contract. Each algorithm declares, in its own module: its config section, how it is built from
it, what it samples, what it asks the preference model, how it turns responses + preferences into training
targets, its loss, and the presets it needs (``AlgorithmEntry``); learner/algorithms/registry.py lists the
modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    mixture_sampler: str = "auto"   # "token", "sequence" or "auto" (token with the torch engine)
    mixture_candidates: int = 8     # sequence sampler: policy samples to resample each mixture response from

    @property
    def uses_mixture(self) -> bool:
        return self.sample_from == "mixture" or self.opponent == "mixture"


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


@dataclass(frozen=True)
class BuildContext:
    """What an algorithm is built from besides its own section: the run's other settings it depends on."""
    k: int                          # rollout.k, responses sampled per prompt
    logprob_reduction: str          # algorithm.logprob_reduction: "sum" or "mean"


@dataclass(frozen=True)
class AlgorithmEntry:
    """One algorithm as its module declares it. Several names may share one section (online_ipo and ipo_md read
    ``algorithm.ipo``). ``options`` is the section's dataclass (``selfplay.config_fields._f`` fields, with their
    bounds); an optional ``problems()`` returns (key, what) for each rule a bound cannot say (a template's
    fields). ``embedded_preset`` fills the section for the embedded tiny model (under what the user
    sets); ``preset`` fills any part of the config when this algorithm is chosen (e.g. the engine it needs)."""
    name: str
    section: str
    options: type
    build: Callable[[Any, BuildContext], Algorithm]
    summary: str
    embedded_preset: dict = field(default_factory=dict)
    preset: dict = field(default_factory=dict)


def missing_fields(template: str, fields: tuple[str, ...]) -> str | None:
    """What a template's check says when it lacks one of its ``{field}``s, else None."""
    if all("{" + f + "}" in template for f in fields):
        return None
    return "must contain " + ", ".join("{" + f + "}" for f in fields)
