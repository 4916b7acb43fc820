"""Ray actor around one preference model: the K x K matrices of a batch (preference/matrix.py) and their stats."""

from __future__ import annotations

import numpy as np
import ray

from selfplay.actors.startup_gc import collector_paused
from selfplay.preference.stats import PreferenceStats
from selfplay.rollout.records import Completion


@ray.remote
class PreferenceService:
    def __init__(self, kind: str, options: dict, truncated: str = "keep") -> None:
        from selfplay.preference.model import build_preference_model

        with collector_paused():  # a reward model or judge imports transformers or vLLM
            self._model = build_preference_model(kind, **options)
        self._truncated = truncated  # preference.truncated: keep, or lose (a cut response loses to a finished one)
        self._calls = 0  # model calls this replica answered (the controller checks the load is spread)
        self._sharpness = getattr(self._model, "sharpness", None)

    def matrices(self, groups: list[list[Completion]]) -> tuple[list[np.ndarray], PreferenceStats]:
        """One K x K matrix per group, and what the batch cost (calls, seconds, ties, swap inconsistency)."""
        from selfplay.preference.matrix import preference_matrices

        matrices, stats = preference_matrices(self._model, groups, self._truncated)
        self._calls += stats.calls
        return matrices, stats

    def compare(self, first: list[Completion], second: list[Completion]) -> tuple[list[float], PreferenceStats]:
        """P(first[i] > second[i]), two responses to the same prompt each, by the rules of the matrices."""
        from selfplay.preference.matrix import pair_probabilities

        probabilities, stats = pair_probabilities(self._model, first, second, self._truncated)
        self._calls += stats.calls
        return probabilities, stats

    def scale_scores(self, spread: float) -> None:
        """preference.normalize_scores: P(a > b) = sigmoid(sharpness (s_a - s_b) / spread)."""
        if self._sharpness is not None:
            self._model.sharpness = self._sharpness / spread

    def calls(self) -> int:
        return self._calls

    def pid(self) -> int:
        import os

        return os.getpid()

    def scores(self, prompts: list, responses: list[str]) -> list[float] | None:
        """Per-response scores when the model is score-based (task judges, score functions); None otherwise."""
        if not getattr(self._model, "score_based", False):
            return None
        self._calls += len(responses)
        return self._model.scores(prompts, responses)

    def exploitability(self, responses: list[str]) -> float | None:
        """For a game: how far the policy that wrote ``responses`` is from the Nash equilibrium; None otherwise."""
        measure = getattr(self._model, "exploitability", None)
        return None if measure is None else measure(responses)

    def rejected_values(self) -> int:
        """Answers of the model rejected so far (an exception, NaN, out of range): their groups were dropped."""
        return getattr(self._model, "rejected", 0)

    def rejection_report(self) -> tuple[str, list[str]]:
        """(how the user's code is named, the first reasons its answers were rejected); ("", []) for a model
        that does not record them."""
        rejections = getattr(self._model, "rejections", None)
        return ("", []) if rejections is None else (rejections.source, list(rejections.reasons))

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        return self._model.probabilities(prompts, first, second)
