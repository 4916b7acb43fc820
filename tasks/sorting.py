"""The embedded verifiable task: sort the prompt's letters.

A prompt is ``"sort: d a k b f c"``; the ideal response is the same letters in ascending order
(``"a b c d f k"``). The score of a response is dense, so a random policy gets a learning signal from
its first step: one minus the mean alphabet distance between each response letter and the letter the
sorted answer has at that position (a missing or non-letter token counts as the largest distance).
"""

from __future__ import annotations

import random
import string

PROMPT_PREFIX = "sort:"
DEFAULT_ALPHABET_SIZE = 16
DEFAULT_PROMPT_LETTERS = 6


def alphabet(size: int = DEFAULT_ALPHABET_SIZE) -> list[str]:
    if not 2 <= size <= 26:
        raise ValueError(f"alphabet size must be in [2, 26], got {size}")
    return list(string.ascii_lowercase[:size])


def make_prompts(count: int, seed: int, letters: int = DEFAULT_PROMPT_LETTERS,
                 alphabet_size: int = DEFAULT_ALPHABET_SIZE) -> list[str]:
    """``count`` prompts drawn from ``seed``; the same seed always gives the same prompts."""
    rng = random.Random(seed)
    letters_pool = alphabet(alphabet_size)
    return [f"{PROMPT_PREFIX} " + " ".join(rng.choice(letters_pool) for _ in range(letters))
            for _ in range(count)]


def prompt_letters(prompt: str) -> list[str]:
    """The letters a prompt asks to sort; raises ValueError for a prompt of another form."""
    words = prompt.split()
    if not words or words[0] != PROMPT_PREFIX or len(words) < 2:
        raise ValueError(f"not a sorting prompt: {prompt!r}")
    return words[1:]


def score(prompt: str, response: str, alphabet_size: int = DEFAULT_ALPHABET_SIZE) -> float:
    """Score in [0, 1]; 1 exactly for the sorted letters (extra trailing words are ignored)."""
    target = sorted(prompt_letters(prompt))
    index = {letter: i for i, letter in enumerate(alphabet(alphabet_size))}
    words = response.split()
    largest = alphabet_size - 1
    distance = 0.0
    for position, wanted in enumerate(target):
        got = words[position] if position < len(words) else None
        if got not in index:
            distance += 1.0
        else:
            distance += abs(index[got] - index[wanted]) / largest
    return 1.0 - distance / len(target)
