import numpy as np
import pytest
import torch

from selfplay.learner.algorithms.sppo import SPPO, sppo_loss
from selfplay.rollout.records import Completion, PreferenceGroup


def test_sppo_loss_hand_computed():
    # targets: eta (p - 1/2) = 2 * (0.75 - 0.5) = 0.5 and 2 * (0.25 - 0.5) = -0.5
    logratio = torch.tensor([1.0, 0.0])
    p_win = torch.tensor([0.75, 0.25])
    loss, terms = sppo_loss(logratio, p_win, eta=2.0)
    # ((1 - 0.5)^2 + (0 + 0.5)^2) / 2 = 0.25
    assert loss.item() == pytest.approx(0.25)
    assert terms["target_mean"] == pytest.approx(0.0)
    assert terms["logratio_mean"] == pytest.approx(0.5)


def test_sppo_gradient_raises_the_winner_and_lowers_the_loser():
    logratio = torch.zeros(2, requires_grad=True)
    loss, _ = sppo_loss(logratio, torch.tensor([0.9, 0.1]), eta=1.0)
    loss.backward()
    # gradient descent moves against the gradient: the winner's log-ratio rises, the loser's falls
    assert logratio.grad[0] < 0 < logratio.grad[1]


def _group(matrix):
    k = len(matrix)
    completions = [Completion(0, "p", [1], [10 + i], f"r{i}", policy_version=3) for i in range(k)]
    return PreferenceGroup(completions, np.array(matrix, dtype=float))


MATRIX = [[0.5, 0.9, 0.7],
          [0.1, 0.5, 0.4],
          [0.3, 0.6, 0.5]]


def test_build_batch_all_k_uses_each_responses_win_rate():
    batch, metrics = SPPO(eta=1.0, k=3).build_batch([_group(MATRIX)])
    np.testing.assert_allclose(batch.fields["p_win"], [2.1 / 3, 1.0 / 3, 1.4 / 3], rtol=1e-6)
    assert batch.response_token_ids == [[10], [11], [12]]
    assert batch.policy_versions == [3, 3, 3]
    assert metrics["p_win_chosen"] == pytest.approx(0.7)
    assert metrics["p_win_rejected"] == pytest.approx(1 / 3)


def test_build_batch_best_worst_keeps_two():
    algo = SPPO(eta=1.0, k=3, form="best_worst")
    batch, _ = algo.build_batch([_group(MATRIX)])
    assert batch.response_token_ids == [[10], [11]]
    assert algo.sequences_per_step(4) == 8
    assert SPPO(eta=1.0, k=3).sequences_per_step(4) == 12


def test_reference_resets_every_iteration():
    algo = SPPO(eta=1.0, k=2, iteration_steps=3)
    assert [s for s in range(1, 10) if algo.reference_resets_after(s)] == [3, 6, 9]


def test_unknown_form_lists_choices():
    with pytest.raises(ValueError, match="all_k, best_worst"):
        SPPO(eta=1.0, k=2, form="pairs")
