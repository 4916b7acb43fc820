"""Scoring functions to start from: ``preference.function=reward_functions:plain_english`` with this folder as the
working directory (or ``examples.reward_functions:plain_english`` from the repository root).

A scoring function takes the prompt as the data holds it (a string, or a chat: a list of {role, content}
messages) and the response text, and returns a float; selfplay turns two scores into
P(a > b) = sigmoid(preference.sharpness * (s_a - s_b)). An exception or a NaN drops that prompt's group.
"""

import re


def plain_english(prompt, response: str) -> float:
    """A format check: the share of the response's characters that are lowercase letters or spaces, so plain
    English prose scores near 1 and byte garbage, digits and markup score low. Empty responses score 0."""
    if not response:
        return 0.0
    return sum(ch.islower() and ch.isascii() or ch == " " for ch in response) / len(response)


def exact_answer(prompt, response: str) -> float:
    """A verifiable reward: 1 if the last number in the response equals the number after 'answer:' in the
    prompt's last message (e.g. a math question with its reference answer appended), else 0."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    wanted = re.search(r"answer:\s*(-?\d+(?:\.\d+)?)", text)
    got = re.findall(r"-?\d+(?:\.\d+)?", response)
    return float(bool(wanted and got and float(got[-1]) == float(wanted.group(1))))


def well_formed(prompt, response: str) -> float:
    """A format reward for open-ended chat: 1 for an answer of 20-300 words that ends a sentence and repeats no
    line, less for each rule it breaks (a common first reward before a reward model is at hand)."""
    words = response.split()
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    score = 1.0
    score -= 0.4 * (not 20 <= len(words) <= 300)
    score -= 0.3 * (not response.rstrip().endswith((".", "!", "?", "```")))
    score -= 0.3 * (len(lines) != len(set(lines)))
    return score
