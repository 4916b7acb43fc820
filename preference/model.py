"""The preference-model contract: batched P(a > b | prompt)."""

from __future__ import annotations

from typing import Protocol


class PreferenceModel(Protocol):
    def probabilities(self, prompts: list[str], first: list[str], second: list[str]) -> list[float]:
        """P(first[i] is preferred to second[i] | prompts[i]) for every i, each in [0, 1]."""
        ...


def build_preference_model(kind: str, **options) -> PreferenceModel:
    if kind == "sorting":
        from preference.sorting_judge import SortingJudge
        return SortingJudge(**options)
    raise ValueError(f"unknown preference model {kind!r} (valid: sorting)")
