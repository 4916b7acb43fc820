"""The preference-model contract: batched P(a > b | prompt)."""

from __future__ import annotations

from typing import Protocol


class PreferenceModel(Protocol):
    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        """P(first[i] is preferred to second[i] | prompts[i]) for every i, each in [0, 1] (NaN: rejected).
        A prompt is the record as the data holds it: a string or a chat."""
        ...


class ScoreModel(PreferenceModel, Protocol):
    """A Bradley-Terry model: one score per response, P(a > b) = sigmoid(sharpness (s_a - s_b))."""
    score_based: bool
    sharpness: float

    def scores(self, prompts: list, responses: list[str]) -> list[float]:
        ...


def build_preference_model(kind: str, **options) -> PreferenceModel:
    if kind == "sorting":
        from preference.sorting_judge import SortingJudge
        return SortingJudge(options["sharpness"], options["alphabet_size"])
    if kind == "function":
        from preference.function_model import FunctionPreference
        return FunctionPreference(options["function"], options["function_kind"], options["sharpness"],
                                  options.get("search_path"))
    raise ValueError(f"unknown preference model {kind!r} (valid: sorting, function)")
