"""Win-rate of the current policy against the initial one on held-out prompts, asked of the preference model."""

from __future__ import annotations

from rollout.records import Completion


def win_rate_pairs(current: list[list[Completion]], initial: list[list[Completion]]
                   ) -> tuple[list[Completion], list[Completion]]:
    """Every (current_i, initial_j) pair of responses to the same prompt, as (first, second)."""
    first, second = [], []
    for cur_group, init_group in zip(current, initial, strict=True):
        for a in cur_group:
            for b in init_group:
                first.append(a)
                second.append(b)
    return first, second


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
