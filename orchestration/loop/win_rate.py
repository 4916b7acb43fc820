"""Win-rate of the current policy against the initial one on held-out prompts, asked of the preference model."""

from __future__ import annotations

from selfplay.rollout.records import Completion


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


def eval_samples(current: list[list[Completion]], initial: list[list[Completion]], probabilities: list[float],
                 count: int) -> list[dict]:
    """The first ``count`` prompts: the current policy's first response, the initial policy's first, and
    P(current > initial) from the win-rate's own comparison of that pair (``win_rate_pairs`` order)."""
    samples, offset = [], 0
    for cur_group, init_group in zip(current[:count], initial[:count]):
        a, b = cur_group[0], init_group[0]
        samples.append({"prompt_index": a.prompt_index, "prompt": _text(a.prompt), "current": a.response_text,
                        "initial": b.response_text, "p_current_wins": float(probabilities[offset])})
        offset += len(cur_group) * len(init_group)
    return samples


def _text(prompt) -> str:
    """A prompt record as text: a string as is, a chat as its last user turn."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else str(prompt)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
