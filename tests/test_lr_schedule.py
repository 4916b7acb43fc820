"""learner.lr_schedule and learner.warmup_steps: the factor DeepSpeed's scheduler applies to learner.lr."""

import pytest

from selfplay.learner.policy_learner import lr_factor


def test_warmup_then_constant():
    assert [lr_factor("constant", 3, 10, s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor("constant", 0, 10, 0) == 1.0


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decays_reach_zero_at_the_last_step_and_fall_monotonically(schedule):
    factors = [lr_factor(schedule, 2, 12, s) for s in range(13)]
    assert factors[:3] == [1 / 3, 2 / 3, 1.0]
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert factors[12] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(schedule, 2, 12, 7) == pytest.approx(0.5)  # halfway through the decay, for both shapes
