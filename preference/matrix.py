"""K x K preference matrices for groups of responses to the same prompt, all prompts of a batch in one model call.

P[i, j] = P(y_i > y_j | x); the diagonal is 1/2 and P[j, i] = 1 - P[i, j]. Some pairs need no model:

- identical responses (the same text) tie: P = 1/2;
- with ``truncated="lose"`` (``preference.truncated``), a response cut at max_tokens (finish reason "length")
  loses to a finished one: P = 0. Two cut ones, or two finished ones, go to the model as usual.

The other pairs cost, by kind: a score-based model scores each distinct response of a group once (at most K
calls) and P = sigmoid(sharpness (s_i - s_j)); an order-averaged model (``order_averaged``: the pairwise
classifier, the LLM judge) reads each pair in both orders (2 calls a pair); any other model is asked each
unordered pair once. The batch's ``PreferenceStats`` come back with the matrices.
"""

from __future__ import annotations

import time

import numpy as np

from selfplay.preference.function_model import bradley_terry
from selfplay.preference.model import PreferenceModel
from selfplay.preference.stats import PreferenceStats
from selfplay.rollout.records import Completion

Pair = tuple[int, int, int]  # (group, i, j) with i < j


def unordered_pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def preference_matrices(model: PreferenceModel, groups: list[list[Completion]], truncated: str = "keep"
                        ) -> tuple[list[np.ndarray], PreferenceStats]:
    """One matrix per group of completions (same prompt), and what the batch cost."""
    started = time.perf_counter()
    stats = PreferenceStats(order_averaged=bool(getattr(model, "order_averaged", False)))
    matrices = [np.full((len(group), len(group)), 0.5) for group in groups]
    ask: list[Pair] = []
    for g, group in enumerate(groups):
        for i, j in unordered_pairs(len(group)):
            p = decided_without_model(group[i], group[j], truncated)
            if p is None:
                ask.append((g, i, j))
            else:
                matrices[g][i, j], matrices[g][j, i] = p, 1.0 - p
    if ask:
        fill = _from_scores if getattr(model, "score_based", False) else _from_pairs
        for (g, i, j), p in zip(ask, fill(model, groups, ask, stats), strict=True):
            matrices[g][i, j], matrices[g][j, i] = p, 1.0 - p
    stats.seconds = time.perf_counter() - started
    stats.count_ties(matrices)
    return matrices, stats


def pair_probabilities(model: PreferenceModel, first: list[Completion], second: list[Completion],
                       truncated: str = "keep") -> tuple[list[float], PreferenceStats]:
    """P(first[i] > second[i]) for responses to the same prompt (a win-rate evaluation, DRIFT's filter), by the
    rules of the matrices: identical responses tie, ``truncated`` applies, order-averaged models read both
    orders."""
    matrices, stats = preference_matrices(model, [[a, b] for a, b in zip(first, second, strict=True)], truncated)
    return [float(m[0, 1]) for m in matrices], stats


def decided_without_model(a: Completion, b: Completion, truncated: str) -> float | None:
    """P(a > b) where the model is not asked: a cut response loses to a finished one (``truncated="lose"``),
    identical responses tie; None otherwise. Truncation first: it is the user's explicit rule."""
    if truncated == "lose" and a.finished != b.finished:
        return 1.0 if a.finished else 0.0
    if a.response_text == b.response_text:
        return 0.5
    return None


def _from_scores(model, groups: list[list[Completion]], ask: list[Pair], stats: PreferenceStats) -> list[float]:
    # Each distinct response a pair needs is scored once; identical texts share one score.
    index: dict[tuple[int, str], int] = {}
    prompts, texts = [], []
    for g, i, j in ask:
        for c in (groups[g][i], groups[g][j]):
            if (g, c.response_text) not in index:
                index[g, c.response_text] = len(texts)
                prompts.append(c.prompt)
                texts.append(c.response_text)
    scores = model.scores(prompts, texts)
    stats.calls += len(texts)
    # A NaN score makes its pairs NaN, so the group is rejected as a whole.
    return [bradley_terry(model.sharpness, scores[index[g, groups[g][i].response_text]],
                          scores[index[g, groups[g][j].response_text]]) for g, i, j in ask]


def _from_pairs(model, groups: list[list[Completion]], ask: list[Pair], stats: PreferenceStats) -> list[float]:
    prompts = [groups[g][i].prompt for g, i, _ in ask]
    first = [groups[g][i].response_text for g, i, _ in ask]
    second = [groups[g][j].response_text for g, _, j in ask]
    if not stats.order_averaged:
        stats.calls += len(ask)
        return list(model.probabilities(prompts, first, second))
    probabilities, disagree = model.both_orders(prompts, first, second)
    stats.calls += 2 * len(ask)
    stats.asked_both_orders += int(np.isfinite(probabilities).sum())
    stats.swap_disagreements += int(np.sum(disagree))
    return list(probabilities)


def win_rates(matrix: np.ndarray) -> np.ndarray:
    """P_hat(y_k > pi) = (1/K) sum_j P[k, j], with the diagonal counted as 1/2 (SPPO's convention)."""
    return matrix.mean(axis=1)
