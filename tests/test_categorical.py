"""Inverse-CDF draws (rollout/categorical.py) against the exact softmax probabilities they must follow."""

import math

import torch

from selfplay.rollout.categorical import sample_categorical


def _counts(scores: torch.Tensor, draws: int, seed: int = 0, per_call: int = 1000) -> torch.Tensor:
    """Per-row counts of each index over ``draws`` draws per row (``per_call`` copies of each row per call): [B, V]."""
    generator = torch.Generator().manual_seed(seed)
    batch = scores.repeat_interleave(per_call, dim=0)
    drawn = torch.cat([sample_categorical(batch, generator).reshape(len(scores), per_call)
                       for _ in range(draws // per_call)], dim=1)
    return torch.stack([torch.bincount(r, minlength=scores.shape[1]) for r in drawn]).double()


def test_each_row_follows_its_own_softmax_within_sampling_error():
    scores = torch.tensor([[2.0, 0.0, -1.0, 1.0, 0.5],
                           [-3.0, 3.0, 0.0, 0.0, -float("inf")],
                           [0.0, 0.0, 0.0, 0.0, 0.0]])
    draws = 100000
    counts = _counts(scores, draws)
    exact = torch.softmax(scores.double(), dim=-1)
    sigma = torch.sqrt(exact * (1 - exact) / draws)
    observed = counts / draws
    assert torch.all((observed - exact).abs() <= 5 * sigma + 1e-12), (observed, exact)
    assert counts[1, 4] == 0  # -inf: probability 0, never drawn
    assert 0.5 * float((observed - exact).abs().sum(dim=1).max()) < 0.01


def test_zero_probability_entries_at_the_ends_and_between_are_never_drawn():
    inf = float("inf")
    scores = torch.tensor([[-inf, 0.0, -inf, -inf, 0.0, -inf],
                           [-inf, -inf, -inf, -inf, -inf, 5.0],
                           [7.0, -inf, -inf, -inf, -inf, -inf]])
    counts = _counts(scores, 4000, seed=3)
    assert counts[0, [0, 2, 3, 5]].sum() == 0 and counts[0, 1] > 1800 and counts[0, 4] > 1800
    assert counts[1, 5] == 4000 and counts[2, 0] == 4000


def test_same_seed_same_draws_and_a_large_vocabulary():
    scores = torch.randn(16, 152000, generator=torch.Generator().manual_seed(1))
    a = sample_categorical(scores, torch.Generator().manual_seed(7))
    b = sample_categorical(scores, torch.Generator().manual_seed(7))
    c = sample_categorical(scores, torch.Generator().manual_seed(8))
    assert a.shape == (16, 1) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.min()) >= 0 and int(a.max()) < 152000


def test_a_sharp_row_over_a_large_vocabulary_keeps_its_mass():
    # a decode step's real shape: one likely token among 152k near-uniform ones, found by the search at its share
    scores = torch.zeros(1, 152000)
    scores[0, 123456] = math.log(151999.0)  # half the mass on one token, the rest spread evenly
    counts = _counts(scores, 8000, seed=5, per_call=8)
    assert abs(float(counts[0, 123456]) / 8000 - 0.5) < 5 * math.sqrt(0.25 / 8000)
