"""Exact preference games: equilibria, exploitability, the regularised equilibrium, the text model."""

import math

import numpy as np
import pytest

from selfplay.preference.games import (GamePreferenceModel, PreferenceGame, exploitability, intransitive_game,
                              mixture_fixed_point, nash_equilibrium, regularized_equilibrium, transitive_game)

RPS = intransitive_game()


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_intransitive_equilibrium_is_non_uniform_and_unexploitable():
    pi = nash_equilibrium(RPS)
    np.testing.assert_allclose(pi, [2 / 7, 1 / 7, 4 / 7], atol=1e-12)  # ∝ (b, c, a) for margins a, b, c
    assert exploitability(RPS, pi) < 1e-9
    assert np.abs(pi - 1 / 3).max() > 0.2


def test_uniform_and_pure_policies_are_exploitable_by_hand_computed_amounts():
    # uniform: paper's row (0.9 + 0.5 + 0.3) / 3 = 1.7 / 3 is the best reply, 1.7/3 - 1/2 = 1/15
    assert exploitability(RPS, np.ones(3) / 3) == pytest.approx(1 / 15)
    assert exploitability(RPS, [1, 0, 0]) == pytest.approx(0.4)  # paper beats rock with 0.9
    assert exploitability(RPS, [0, 1, 0]) == pytest.approx(0.2)  # scissors beats paper with 0.7
    assert exploitability(RPS, [0, 0, 1]) == pytest.approx(0.1)  # rock beats scissors with 0.6


def test_transitive_game_has_a_pure_equilibrium():
    game = transitive_game()
    np.testing.assert_allclose(nash_equilibrium(game), [1, 0, 0])
    assert exploitability(game, [1, 0, 0]) == pytest.approx(0.0)
    # against uniform, gold's row (1/2 + sigma(1) + sigma(2)) / 3 is the best reply
    assert exploitability(game, np.ones(3) / 3) == pytest.approx((0.5 + _sigmoid(1) + _sigmoid(2)) / 3 - 0.5)


def test_support_enumeration_drops_a_dominated_answer_and_finds_uniform_rps():
    p = np.full((4, 4), 0.8)
    p[:3, :3] = RPS.matrix
    p[3, :] = 0.2
    p[3, 3] = 0.5
    game = PreferenceGame("rps+loser", ["rock", "paper", "scissors", "lizard"], p)
    np.testing.assert_allclose(nash_equilibrium(game), [2 / 7, 1 / 7, 4 / 7, 0], atol=1e-12)
    even = np.array([[0.5, 0.2, 0.8], [0.8, 0.5, 0.2], [0.2, 0.8, 0.5]])
    np.testing.assert_allclose(nash_equilibrium(PreferenceGame("rps", ["r", "p", "s"], even)), np.ones(3) / 3)


def test_regularized_equilibrium_is_a_fixed_point_and_unbeatable_in_the_regularised_game():
    mu, tau = np.array([0.6, 0.3, 0.1]), 0.05
    pi = regularized_equilibrium(RPS, tau, mu)
    best_reply = mu * np.exp(RPS.matrix @ pi / tau)
    np.testing.assert_allclose(pi, best_reply / best_reply.sum(), atol=1e-10)

    def kl(a, b):
        return float(np.sum(a * np.log(a / b)))

    # no policy beats pi in P_tau(x > pi) = x^T P pi - tau KL(x||mu) + tau KL(pi||mu), whose value is 1/2
    for x in np.random.default_rng(0).dirichlet(np.ones(3), size=200):
        assert x @ RPS.matrix @ pi - tau * kl(x, mu) + tau * kl(pi, mu) <= 0.5 + 1e-12


def test_regularized_equilibrium_tends_to_nash_as_tau_shrinks_and_to_mu_as_it_grows():
    mu = np.array([0.6, 0.3, 0.1])
    nash = nash_equilibrium(RPS)
    gaps = [np.abs(regularized_equilibrium(RPS, tau, mu) - nash).max() for tau in (0.1, 0.01, 1e-3, 1e-4)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3
    assert exploitability(RPS, regularized_equilibrium(RPS, 1e-4, mu)) < 1e-3
    np.testing.assert_allclose(regularized_equilibrium(RPS, 1e4, mu), mu, atol=1e-4)


def test_mixture_fixed_point_is_the_regularised_equilibrium_only_at_beta_zero():
    mu, tau = np.ones(3) / 3, 0.05
    target = regularized_equilibrium(RPS, tau, mu)
    np.testing.assert_allclose(mixture_fixed_point(RPS, tau, mu, 0.0), target)
    biased = mixture_fixed_point(RPS, tau, mu, 0.5)
    mixture = np.sqrt(biased * mu) / np.sqrt(biased * mu).sum()  # pi^(1/2) mu^(1/2) / Z
    reply = mu * np.exp(RPS.matrix @ mixture / tau)
    np.testing.assert_allclose(biased, reply / reply.sum(), atol=1e-10)
    assert np.abs(biased - target).max() > 0.05


@pytest.mark.parametrize("answers, matrix, problem", [
    (["a", "b"], [[0.5, 0.7], [0.7, 0.5]], "P + P.T = 1"),
    (["a", "b"], [[0.4, 0.6], [0.4, 0.6]], "diagonal"),
    (["a", "b"], [[0.5]], "shape"),
    (["a", "a"], [[0.5, 0.5], [0.5, 0.5]], "unique"),
    (["a b", "c"], [[0.5, 0.5], [0.5, 0.5]], "one non-empty word"),
    (["a", "b"], [[0.5, 1.5], [-0.5, 0.5]], "probabilities"),
])
def test_invalid_games_name_the_problem(answers, matrix, problem):
    with pytest.raises(ValueError, match=problem.replace("+", r"\+").replace(".", r"\.")):
        PreferenceGame("bad", answers, np.array(matrix, dtype=float))


def test_regularized_equilibrium_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive probability"):
        regularized_equilibrium(RPS, 0.1, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="tau > 0"):
        regularized_equilibrium(RPS, 0.0, np.ones(3) / 3)


def test_game_preference_model_answers_from_the_matrix():
    model = GamePreferenceModel(RPS)
    first = ["paper", "Rock! because", "scissors cut", "banana", "banana", "", "rock"]
    second = ["rock", "scissors", "paper.", "rock", "kiwi", "paper", ""]
    probs = model.probabilities(["which?"] * len(first), first, second)
    # known answers read the matrix; an unknown loses to any known answer; two unknowns tie
    assert probs == [0.9, 0.6, 0.7, 0.0, 0.5, 0.0, 1.0]
    with pytest.raises(ValueError, match="lengths differ"):
        model.probabilities(["x"], ["rock", "paper"], ["rock"])
