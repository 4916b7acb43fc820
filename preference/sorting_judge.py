"""Programmatic judge for the embedded sorting task: a soft Bradley-Terry preference on the task score.

P(a > b | x) = sigmoid(sharpness * (score(x, a) - score(x, b))). It is transitive; the intransitive
games of the algorithm tests live elsewhere.
"""

from __future__ import annotations

import math

from selfplay.rollout.chat_rendering import prompt_text
from selfplay.tasks.sorting import score


class SortingJudge:
    def __init__(self, sharpness: float = 20.0, alphabet_size: int = 16) -> None:
        self.sharpness = sharpness
        self.alphabet_size = alphabet_size

    score_based = True

    def score(self, prompt, response: str) -> float:
        """``prompt``: the task's string, or a chat holding it (DRIFT's conversations)."""
        return score(prompt_text(prompt), response, self.alphabet_size)

    def scores(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [self.score(x, y) for x, y in zip(prompts, responses, strict=True)]

    def probabilities(self, prompts: list[str], first: list[str], second: list[str]) -> list[float]:
        out = []
        for x, a, b in zip(prompts, first, second, strict=True):
            margin = self.sharpness * (self.score(x, a) - self.score(x, b))
            out.append(1.0 / (1.0 + math.exp(-margin)))
        return out
