"""Ray actor around one preference model."""

from __future__ import annotations

import numpy as np
import ray

from rollout.records import Completion


@ray.remote
class PreferenceService:
    def __init__(self, kind: str, options: dict) -> None:
        from preference.model import build_preference_model

        self._model = build_preference_model(kind, **options)
        self.calls = 0

    def matrices(self, groups: list[list[Completion]]) -> tuple[list[np.ndarray], int]:
        """One K x K matrix per group and the number of model calls it took."""
        from preference.matrix import preference_matrices

        matrices, calls = preference_matrices(self._model, groups)
        self.calls += calls
        return matrices, calls

    def scores(self, prompts: list, responses: list[str]) -> list[float] | None:
        """Per-response scores when the model is score-based (task judges, score functions); None otherwise."""
        if not getattr(self._model, "score_based", False):
            return None
        return self._model.scores(prompts, responses)

    def rejected_values(self) -> int:
        """Answers of the model rejected so far (an exception, NaN, out of range): their groups were dropped."""
        return getattr(self._model, "rejected", 0)

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        self.calls += len(prompts)
        return self._model.probabilities(prompts, first, second)
