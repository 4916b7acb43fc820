"""What the preference service does around any model: identical responses tie without a call, preference.truncated,
the per-batch stats the controller logs, and preference.max_bad_batches counting a streak."""

import numpy as np
import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.loop.controller import RunState, count_batch
from selfplay.preference.matrix import preference_matrices
from selfplay.preference.self_judge import ask_both_orders
from selfplay.rollout.records import Completion
from selfplay.errors import ConfigError, InputError


def _group(texts, cut=()):
    """Completions of one prompt; indices in ``cut`` were cut at max_tokens."""
    return [Completion(0, "x", [1], [2], t, 0, "length" if n in cut else "stop") for n, t in enumerate(texts)]


class Alphabetical:
    """Asked each pair once: P(a > b) = 0.8 when a sorts first, else 0.2; records what it was asked."""

    def __init__(self):
        self.asked = []

    def probabilities(self, prompts, first, second):
        self.asked.extend(zip(first, second))
        return [0.8 if a < b else 0.2 for a, b in zip(first, second)]


class DriftingScores:
    """Score-based, and not deterministic: the length plus 0.001 for every response scored before, as
    batch-dependent padding might drift; identical responses must still tie exactly."""
    score_based = True
    sharpness = 1.0

    def __init__(self):
        self.scored = []

    def scores(self, prompts, responses):
        before = len(self.scored)
        self.scored.extend(responses)
        return [len(r) + 0.001 * (before + n) for n, r in enumerate(responses)]


class FirstShownWins:
    """Order-averaged with a pure position bias: f(a, b) = 0.9 for whichever it reads first."""
    score_based = False
    order_averaged = True

    def __init__(self):
        self.read = 0

    def first_wins(self, prompts, first, second):
        self.read += len(prompts)
        return [0.9] * len(prompts)

    def both_orders(self, prompts, first, second):
        return ask_both_orders(self.first_wins, prompts, first, second)


def test_identical_responses_tie_without_a_call():
    model = Alphabetical()
    matrices, stats = preference_matrices(model, [_group(["b", "a", "b", "a"])])
    m = matrices[0]
    assert sorted(model.asked) == [("a", "b"), ("b", "a"), ("b", "a"), ("b", "a")]  # never ("a", "a") or ("b", "b")
    assert m[0, 2] == m[2, 0] == m[1, 3] == 0.5 and m[0, 1] == pytest.approx(0.2)
    assert stats.calls == 4 and stats.pairs == 6 and stats.ties == 2
    assert stats.metrics()["preference/ties"] == pytest.approx(2 / 6)
    assert "preference/swap_inconsistency" not in stats.metrics()  # asked once per pair: no orders to compare
    assert stats.metrics()["preference/winner_p"] == pytest.approx(0.8)  # "a" wins the group, over "b"


def test_score_based_models_score_each_distinct_response_once_and_identical_ones_tie_exactly():
    model = DriftingScores()
    matrices, stats = preference_matrices(model, [_group(["aa", "b", "aa"]), _group(["c", "dd"])])
    assert model.scored == ["aa", "b", "c", "dd"] and stats.calls == 4
    m = matrices[0]
    assert m[0, 2] == m[2, 0] == 0.5 and m[0, 1] != 0.5
    np.testing.assert_allclose(m + m.T, 1.0, atol=1e-12)


def test_truncated_lose_makes_a_cut_response_lose_to_a_finished_one_without_asking():
    groups = [_group(["a", "b", "c", "d"], cut={0, 1})]
    model = Alphabetical()
    m = preference_matrices(model, groups, truncated="lose")[0][0]
    assert model.asked == [("a", "b"), ("c", "d")]  # cut vs cut and finished vs finished go to the model
    assert m[0, 2] == m[0, 3] == m[1, 2] == m[1, 3] == 0.0 and m[2, 0] == m[3, 1] == 1.0
    assert m[0, 1] == pytest.approx(0.8) and m[2, 3] == pytest.approx(0.8)
    # A cut response loses even to the same text finished; keep (the default) asks the model about every pair.
    assert preference_matrices(Alphabetical(), [_group(["a", "a"], cut={1})], truncated="lose")[0][0][0, 1] == 1.0
    keep = Alphabetical()
    preference_matrices(keep, groups)
    assert len(keep.asked) == 6
    scored = preference_matrices(DriftingScores(), groups, truncated="lose")[0][0]
    assert scored[0, 3] == 0.0 and scored[3, 0] == 1.0


def test_order_averaged_models_report_swap_inconsistency():
    model = FirstShownWins()
    matrices, stats = preference_matrices(model, [_group(["a", "b", "c"]), _group(["d", "d"])])
    assert model.read == 2 * 3 and stats.calls == 6  # both orders of the 3 distinct pairs; the identical pair tied
    np.testing.assert_allclose(matrices[0], 0.5)  # the bias cancels out over both orders
    metrics = stats.metrics()
    assert metrics["preference/swap_inconsistency"] == 1.0 and metrics["preference/ties"] == 1.0
    assert metrics["preference/seconds"] >= 0 and metrics["preference/calls"] == 6


def test_max_bad_batches_counts_a_streak_and_the_total():
    state = RunState()
    for kept in (0, 0, 8, 0, 0, 8, 0, 0):
        count_batch(state, kept, 8, max_rejected_share=0.5, max_bad_batches=3)
    assert state.rejected_batches == 6 and state.bad_batches_in_a_row == 2
    with pytest.raises(InputError, match=r"^preference model: more than 0.5 of the groups were rejected .* in each "
                                         r"of 3 batches in a row \(last: 100%\)"):
        count_batch(state, 0, 8, max_rejected_share=0.5, max_bad_batches=3)


def test_a_high_rejected_share_stops_the_run_naming_the_function_and_its_reasons():
    """Groups dropped often, though every batch still has usable ones: the run stops once the share stays above
    preference.max_rejected_share, naming the code and the first reasons; a share at the bound does not count."""
    state = RunState()
    report = lambda: ("function my_rewards:score", ["raised KeyError: 'x'", "returned nan"])  # noqa: E731
    count_batch(state, 4, 8, max_rejected_share=0.5, max_bad_batches=2, report=report)  # 50%: at the bound
    assert state.bad_batches_in_a_row == 0 and state.rejected_batches == 0
    count_batch(state, 3, 8, max_rejected_share=0.5, max_bad_batches=2, report=report)  # 62%
    assert state.bad_batches_in_a_row == 1
    with pytest.raises(InputError, match=r"^preference function my_rewards:score: more than 0.5 .* 2 batches in a "
                                         r"row \(last: 75%\); first reasons: raised KeyError: 'x'; returned nan"):
        count_batch(state, 2, 8, max_rejected_share=0.5, max_bad_batches=2, report=report)
    assert state.rejected_batches == 0  # every batch had usable groups


def test_new_keys_are_validated():
    assert load_config(None, []).preference.truncated == "keep"
    assert load_config(None, []).preference.max_bad_batches == 100
    assert load_config(None, []).preference.max_rejected_share == 0.5
    with pytest.raises(ConfigError, match="'preference.max_rejected_share' must be in"):
        load_config(None, ["preference.max_rejected_share=1.5"])
    with pytest.raises(ConfigError, match="preference.truncated"):
        load_config(None, ["preference.truncated=drop"])
    with pytest.raises(ConfigError, match="'preference.max_bad_batches' must be >= 1"):
        load_config(None, ["preference.max_bad_batches=0"])
