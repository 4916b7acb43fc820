"""The built-in game task: every prompt asks the policy to play one strategy of an intransitive game.

A prompt is ``"play: scissors rock paper"`` (the strategies in a seeded order, so prompts differ in form but not
in meaning); the response's first word is the strategy played, judged by ``preference.kind=game``. It makes the
Nash convergence of a self-play algorithm measurable on the live system: the policy's strategy distribution has
an exact exploitability (preference/games.py).
"""

from __future__ import annotations

import random

PROMPT_PREFIX = "play:"


def make_prompts(count: int, seed: int, strategies: list[str]) -> list[str]:
    """``count`` prompts drawn from ``seed``; the same seed always gives the same prompts."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        order = list(strategies)
        rng.shuffle(order)
        prompts.append(" ".join([PROMPT_PREFIX, *order]))
    return prompts
