"""Ray actor around one preference model: the K x K matrices of a batch (preference/matrix.py) and their stats."""

from __future__ import annotations

import numpy as np
import ray

from preference.stats import PreferenceStats
from rollout.records import Completion


@ray.remote
class PreferenceService:
    def __init__(self, kind: str, options: dict, truncated: str = "keep") -> None:
        from preference.model import build_preference_model

        self._model = build_preference_model(kind, **options)
        self._truncated = truncated  # preference.truncated: keep, or lose (a cut response loses to a finished one)

    def matrices(self, groups: list[list[Completion]]) -> tuple[list[np.ndarray], PreferenceStats]:
        """One K x K matrix per group, and what the batch cost (calls, seconds, ties, swap inconsistency)."""
        from preference.matrix import preference_matrices

        return preference_matrices(self._model, groups, self._truncated)

    def scores(self, prompts: list, responses: list[str]) -> list[float] | None:
        """Per-response scores when the model is score-based (task judges, score functions); None otherwise."""
        if not getattr(self._model, "score_based", False):
            return None
        return self._model.scores(prompts, responses)

    def rejected_values(self) -> int:
        """Answers of the model rejected so far (an exception, NaN, out of range): their groups were dropped."""
        return getattr(self._model, "rejected", 0)

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        return self._model.probabilities(prompts, first, second)
