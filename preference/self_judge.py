"""The policy as its own judge (OSP): the probability of the verdict token for "the first is better"
versus "the second is better" under a judge prompt, averaged over both presentation orders.

The order-averaging math here is shared by every judge that reads a pair in some order: OSP's self-judge, the
pairwise classifier (preference/pairwise_model.py) and the LLM judge (preference/llm_judge.py)."""

from __future__ import annotations

import numpy as np

from selfplay.preference.function_model import bradley_terry
from selfplay.preference.matrix import unordered_pairs
from selfplay.rollout.chat_rendering import prompt_text
from selfplay.rollout.records import Completion


def judge_pairs(template: str, groups: list[list[Completion]]) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Judge prompts for every unordered pair of every group, in both orders: texts[2n] shows (i, j),
    texts[2n + 1] shows (j, i); ``where[n]`` = (group, i, j)."""
    texts, where = [], []
    for g, group in enumerate(groups):
        for i, j in unordered_pairs(len(group)):
            a, b, prompt = group[i], group[j], prompt_text(group[i].prompt)
            texts.append(template.format(prompt=prompt, a=a.response_text, b=b.response_text))
            texts.append(template.format(prompt=prompt, a=b.response_text, b=a.response_text))
            where.append((g, i, j))
    return texts, where


def self_judge_strength(p_a_first, p_a_second):
    """Strength of a over b: 1/2 [P("A" | a shown as A, b as B) + 1 - P("A" | b shown as A, a as B)].

    Works elementwise on floats, numpy arrays or tensors."""
    return 0.5 * (p_a_first + (1 - p_a_second))


def ask_both_orders(first_wins, prompts: list, first: list[str], second: list[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """P(first_i > second_i) = self_judge_strength(f(a, b), f(b, a)) with ``first_wins`` = f, asked for both
    orders in one call (they share batches), and whether the two orders disagreed on the winner,
    (f(a, b) - 1/2)(f(b, a) - 1/2) > 0: a judge that mostly prefers whichever it reads first is position-biased."""
    n = len(prompts)
    both = np.asarray(first_wins(list(prompts) * 2, list(first) + list(second), list(second) + list(first)),
                      dtype=float)
    f_ab, f_ba = both[:n], both[n:]
    return self_judge_strength(f_ab, f_ba), (f_ab - 0.5) * (f_ba - 0.5) > 0


def verdict_probability(logprob_a: float, logprob_b: float) -> float:
    """P("A") renormalised over the two verdict tokens: sigmoid(logprob_a - logprob_b), without overflow."""
    return bradley_terry(1.0, logprob_a, logprob_b)


def judge_matrix(groups: list[list[Completion]], where: list[tuple[int, int, int]],
                 logprobs: list[list[float]]) -> list[np.ndarray]:
    matrices = [np.full((len(g), len(g)), 0.5) for g in groups]
    for n, (g, i, j) in enumerate(where):
        first = verdict_probability(*logprobs[2 * n])
        second = verdict_probability(*logprobs[2 * n + 1])
        strength = self_judge_strength(first, second)
        matrices[g][i, j] = strength
        matrices[g][j, i] = 1.0 - strength
    return matrices
