import numpy as np
import pytest

from selfplay.preference.matrix import preference_matrices, unordered_pairs, win_rates
from selfplay.preference.sorting_judge import SortingJudge
from selfplay.rollout.records import Completion


class CountingModel:
    """A small fake preference model: P(a > b) = 0.8 when a sorts before b alphabetically, else 0.2."""

    def __init__(self):
        self.asked = []

    def probabilities(self, prompts, first, second):
        self.asked.extend(zip(first, second))
        return [0.8 if a < b else 0.2 for a, b in zip(first, second)]


def _group(texts, prompt="x"):
    return [Completion(0, prompt, [1], [2], t, 0) for t in texts]


def test_each_unordered_pair_asked_once_and_batched():
    model = CountingModel()
    matrices, stats = preference_matrices(model, [_group(["a", "b", "c", "d"]), _group(["x", "y"])])
    assert stats.calls == 6 + 1 == len(model.asked)
    assert len(set(model.asked)) == len(model.asked)
    m = matrices[0]
    np.testing.assert_allclose(np.diag(m), 0.5)
    np.testing.assert_allclose(m + m.T, 1.0)
    assert m[0, 1] == pytest.approx(0.8) and m[1, 0] == pytest.approx(0.2)


def test_win_rates_count_self_as_half():
    m = np.array([[0.5, 1.0], [0.0, 0.5]])
    np.testing.assert_allclose(win_rates(m), [0.75, 0.25])
    assert unordered_pairs(3) == [(0, 1), (0, 2), (1, 2)]


def test_sorting_judge_prefers_the_sorted_answer():
    judge = SortingJudge(sharpness=20.0)
    prompt = "sort: d a c b"
    p = judge.probabilities([prompt, prompt], ["a b c d", "a b c d"], ["d c b a", "a b c d"])
    # score("d c b a") = 1 - (3+1+1+3)/15/4, so the margin is 20 * 8/60 and P = sigmoid(8/3)
    assert p[0] == pytest.approx(1 / (1 + np.exp(-8 / 3)))
    assert p[1] == pytest.approx(0.5)
