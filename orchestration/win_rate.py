"""Win-rate of the current policy against the initial one on held-out prompts, asked of the preference model."""

from __future__ import annotations

from rollout.records import Completion


def win_rate_pairs(current: list[list[Completion]], initial: list[list[Completion]]
                   ) -> tuple[list[str], list[str], list[str]]:
    """Every (current_i, initial_j) pair of responses to the same prompt, as (prompts, first, second)."""
    prompts, first, second = [], [], []
    for cur_group, init_group in zip(current, initial, strict=True):
        for a in cur_group:
            for b in init_group:
                prompts.append(a.prompt)
                first.append(a.response_text)
                second.append(b.response_text)
    return prompts, first, second


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
