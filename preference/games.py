"""Exact preference games over N canonical answers, where the Nash equilibrium and exploitability are
computed exactly, so self-play algorithms can be checked against the truth.

P[i, j] = P(answer i > answer j), P + P.T = 1, diagonal 1/2. A policy is a distribution pi over answers;
P(pi > pi') = pi^T P pi'. The game is symmetric and constant-sum, so its value is 1/2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PreferenceGame:
    name: str
    answers: list[str]
    matrix: np.ndarray  # P[i, j] = P(answers[i] > answers[j])

    def __post_init__(self) -> None:
        n = len(self.answers)
        p = np.asarray(self.matrix, dtype=float)
        object.__setattr__(self, "matrix", p)
        if n == 0:
            raise ValueError(f"game {self.name!r}: no answers")
        if len(set(self.answers)) != n:
            raise ValueError(f"game {self.name!r}: answers are not unique: {self.answers}")
        for a in self.answers:
            if not a or a != a.strip() or len(a.split()) != 1:
                raise ValueError(f"game {self.name!r}: answer {a!r} must be one non-empty word")
        if p.shape != (n, n):
            raise ValueError(f"game {self.name!r}: matrix shape {p.shape} does not match {n} answers")
        if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
            raise ValueError(f"game {self.name!r}: matrix entries must be probabilities in [0, 1]")
        if not np.allclose(np.diag(p), 0.5, atol=1e-12):
            raise ValueError(f"game {self.name!r}: diagonal must be 1/2, got {np.diag(p)}")
        if not np.allclose(p + p.T, 1.0, atol=1e-12):
            raise ValueError(f"game {self.name!r}: matrix must satisfy P + P.T = 1")


def game_from_payoff(strategies: list[str], payoff: list[list[float]]) -> PreferenceGame:
    """A game from the config (``preference.strategies``, ``preference.payoff``); ValueError names what is wrong."""
    try:
        matrix = np.asarray(payoff, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"payoff must be a square list of lists of numbers, got {payoff!r}") from None
    if not isinstance(strategies, list) or not all(isinstance(s, str) for s in strategies):
        raise ValueError(f"strategies must be a list of words, got {strategies!r}")
    if len({s.lower() for s in strategies}) != len(strategies):
        raise ValueError(f"strategies must differ ignoring case, got {strategies}")
    if matrix.ndim != 2 or matrix.shape != (len(strategies), len(strategies)):
        raise ValueError(f"payoff must be {len(strategies)} x {len(strategies)} (one row and column per strategy), "
                         f"got shape {matrix.shape}")
    return PreferenceGame("configured", list(strategies), matrix)


def intransitive_game() -> PreferenceGame:
    """Weighted rock-paper-scissors: paper beats rock with P = 0.9, scissors beats paper with 0.7, rock beats
    scissors with 0.6. With skew margins a = 0.8, b = 0.4, c = 0.2 the equilibrium is ∝ (b, c, a):
    pi* = (rock 2/7, paper 1/7, scissors 4/7), not uniform."""
    p = np.array([[0.5, 0.1, 0.6],
                  [0.9, 0.5, 0.3],
                  [0.4, 0.7, 0.5]])
    return PreferenceGame("weighted-rps", ["rock", "paper", "scissors"], p)


def transitive_game() -> PreferenceGame:
    """Bradley-Terry with scores gold 2 > silver 1 > bronze 0: gold beats everything, the equilibrium is pure gold."""
    s = np.array([2.0, 1.0, 0.0])
    p = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
    return PreferenceGame("transitive", ["gold", "silver", "bronze"], p)


def _check_distribution(pi, n: int) -> np.ndarray:
    pi = np.asarray(pi, dtype=float)
    if pi.shape != (n,) or pi.min() < -1e-12 or abs(pi.sum() - 1) > 1e-9:
        raise ValueError(f"expected a probability vector over {n} answers, got {pi}")
    return pi


def exploitability(game: PreferenceGame, pi) -> float:
    """max_i sum_j P[i, j] pi_j - 1/2: how much the best pure answer beats pi by (0 exactly at equilibrium)."""
    pi = _check_distribution(pi, len(game.answers))
    return float((game.matrix @ pi).max() - 0.5)


def nash_equilibrium(game: PreferenceGame, tol: float = 1e-9) -> np.ndarray:
    """Exact symmetric equilibrium by support enumeration: the first support S (smallest first) with
    (P pi)_i = 1/2 on S, sum pi = 1, pi >= 0, and no answer outside S beating pi."""
    p = game.matrix
    n = len(p)
    if n > 14:
        raise ValueError(f"support enumeration over {n} answers is too slow (at most 14)")
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            # equations: P[S, S] pi_S = 1/2 (the value of the game), sum pi_S = 1
            lhs = np.vstack([p[np.ix_(s, s)], np.ones(size)])
            rhs = np.append(np.full(size, 0.5), 1.0)
            pi_s, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
            if np.abs(lhs @ pi_s - rhs).max() > tol or pi_s.min() < -tol:
                continue
            pi = np.zeros(n)
            pi[s] = np.clip(pi_s, 0.0, None)
            pi /= pi.sum()
            if exploitability(game, pi) <= tol:
                return pi
    raise RuntimeError(f"no equilibrium found for game {game.name!r} (degenerate matrix?)")


def regularized_equilibrium(game: PreferenceGame, tau: float, mu) -> np.ndarray:
    """Nash equilibrium of P_tau(pi > pi') = P(pi > pi') - tau KL(pi||mu) + tau KL(pi'||mu): the unique
    fixed point pi = softmax(log mu + P pi / tau), to 1e-10."""
    return mixture_fixed_point(game, tau, mu, beta=0.0)


def mixture_fixed_point(game: PreferenceGame, tau: float, mu, beta: float) -> np.ndarray:
    """Stationary point of Nash-MD and IPO-MD run with a FIXED mixture coefficient beta (TRL's mixture_coef):
    pi = softmax(log mu + P pi^beta / tau), pi^beta ∝ pi^(1-beta) mu^beta. At beta = 0 it is the regularised
    equilibrium; for beta > 0 it is not (the theory ties beta = eta tau to the step size eta, so beta -> 0).

    Newton's method on the logits z of pi, g(z) = z - log mu - P pi^beta(z) / tau (up to a constant), with
    continuation from tau = 2 (where pi ≈ mu) down to tau: Newton alone diverges from mu for small tau.
    The Jacobian I - (1-beta) P J / tau (J the softmax Jacobian, PSD) is always invertible: P J = (P - 1/2) J
    has the eigenvalues of the skew-symmetric J^(1/2) (P - 1/2) J^(1/2), all imaginary."""
    mu = _check_distribution(mu, len(game.answers))
    if tau <= 0 or not 0 <= beta < 1:
        raise ValueError(f"need tau > 0 and 0 <= beta < 1, got tau={tau}, beta={beta}")
    if mu.min() <= 0:
        raise ValueError("mu must give every answer positive probability")
    p, log_mu = game.matrix, np.log(mu)
    z = log_mu.copy()
    level = max(2.0 * tau, 4.0)
    while level > tau:
        level = max(level / 2, tau)
        z = _newton(p, level, log_mu, beta, z)
    pi = _softmax(z)
    mixture = _softmax((1 - beta) * np.log(pi) + beta * log_mu)
    residual = np.abs(pi - _softmax(log_mu + p @ mixture / tau)).max()
    if residual > 1e-10:
        raise RuntimeError(f"fixed point not reached: residual {residual:.2e} (tau={tau}, beta={beta})")
    return pi


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _newton(p: np.ndarray, tau: float, log_mu: np.ndarray, beta: float, z: np.ndarray) -> np.ndarray:
    def residual(z):
        g = z - log_mu - p @ _softmax((1 - beta) * z + beta * log_mu) / tau
        return g - g.mean()  # logits are defined up to a constant

    g = residual(z)
    for _ in range(100):
        if np.abs(g).max() <= 1e-13 * max(1.0, np.abs(z).max()):
            break
        m = _softmax((1 - beta) * z + beta * log_mu)
        jacobian = np.eye(len(z)) - (1 - beta) * p @ (np.diag(m) - np.outer(m, m)) / tau
        step = np.linalg.solve(jacobian, -g)
        scale = 1.0
        while True:  # backtrack until the residual falls
            g_new = residual(z + scale * step)
            if np.abs(g_new).max() < np.abs(g).max() or scale < 1e-6:
                break
            scale /= 2
        z, g = z + scale * step, g_new
    return z


class GamePreferenceModel:
    """The PreferenceModel protocol over text for a game (the prompt is ignored).

    A response is the answer named by its first whitespace-separated word, compared case-insensitively after
    stripping surrounding punctuation (".,;:!?\"'"). Rule for anything else (empty, or not an answer): it loses
    to every known answer with P = 1, and two unknown responses tie at 1/2 — so producing a valid answer is
    always strictly better, and the matrix among known answers is untouched."""

    score_based = False

    def __init__(self, game: PreferenceGame) -> None:
        self.game = game
        self.index = {a.lower(): i for i, a in enumerate(game.answers)}

    def strategy_shares(self, responses: list[str]) -> tuple[np.ndarray, float]:
        """(the share of responses playing each answer, the share playing none): the policy's empirical
        strategy distribution."""
        counts = np.zeros(len(self.game.answers))
        for response in responses:
            i = self.answer_index(response)
            if i is not None:
                counts[i] += 1
        n = max(len(responses), 1)
        return counts / n, 1.0 - counts.sum() / n

    def exploitability(self, responses: list[str]) -> float:
        """How much the best answer beats the policy that wrote ``responses`` by: max_i P(i > pi) - 1/2, with
        a response that plays no answer losing to every answer (P = 1). 0 exactly at the equilibrium;
        1/2 for a policy that never plays an answer."""
        shares, other = self.strategy_shares(responses)
        return float((self.game.matrix @ shares + other).max() - 0.5)

    def answer_index(self, response: str) -> int | None:
        words = response.split()
        return self.index.get(words[0].strip(".,;:!?\"'").lower()) if words else None

    def probability(self, first: str, second: str) -> float:
        i, j = self.answer_index(first), self.answer_index(second)
        if i is None or j is None:
            return 0.5 if i is None and j is None else (0.0 if i is None else 1.0)
        return float(self.game.matrix[i, j])

    def probabilities(self, prompts: list[str], first: list[str], second: list[str]) -> list[float]:
        if not len(prompts) == len(first) == len(second):
            raise ValueError(f"lengths differ: {len(prompts)} prompts, {len(first)} first, {len(second)} second")
        return [self.probability(a, b) for a, b in zip(first, second)]
