"""K x K preference matrices from a pairwise preference model, asking each unordered pair once.

P[i, j] = P(y_i > y_j | x); the diagonal is 1/2 and P[j, i] = 1 - P[i, j], so a prompt with K responses
costs K(K-1)/2 model calls instead of K(K-1). Pairs of all prompts go to the model in one batch.
"""

from __future__ import annotations

import numpy as np

from preference.model import PreferenceModel
from rollout.records import Completion


def unordered_pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def preference_matrices(model: PreferenceModel, groups: list[list[Completion]]
                        ) -> tuple[list[np.ndarray], int]:
    """One matrix per group of completions (same prompt); also returns the number of model calls. A
    score-based model (``score_based``, with ``scores`` and ``sharpness``) scores each response once, K calls
    a group, and P[i, j] = sigmoid(sharpness (s_i - s_j)); others are asked each unordered pair once."""
    if getattr(model, "score_based", False):
        return _from_scores(model, groups)
    prompts, first, second, where = [], [], [], []
    for g, group in enumerate(groups):
        for i, j in unordered_pairs(len(group)):
            prompts.append(group[i].prompt)
            first.append(group[i].response_text)
            second.append(group[j].response_text)
            where.append((g, i, j))
    probs = model.probabilities(prompts, first, second) if prompts else []
    matrices = [np.full((len(group), len(group)), 0.5) for group in groups]
    for (g, i, j), p in zip(where, probs, strict=True):
        matrices[g][i, j] = p
        matrices[g][j, i] = 1.0 - p
    return matrices, len(prompts)


def _from_scores(model, groups: list[list[Completion]]) -> tuple[list[np.ndarray], int]:
    flat = [c for group in groups for c in group]
    scores = np.asarray(model.scores([c.prompt for c in flat], [c.response_text for c in flat]) if flat else [],
                        dtype=float)
    matrices, start = [], 0
    for group in groups:
        s = scores[start:start + len(group)]
        start += len(group)
        # NaN scores stay NaN in their rows and columns, so the group is rejected as a whole.
        matrices.append(1.0 / (1.0 + np.exp(-model.sharpness * (s[:, None] - s[None, :]))))
    return matrices, len(flat)


def win_rates(matrix: np.ndarray) -> np.ndarray:
    """P_hat(y_k > pi) = (1/K) sum_j P[k, j], with the diagonal counted as 1/2 (SPPO's convention)."""
    return matrix.mean(axis=1)
