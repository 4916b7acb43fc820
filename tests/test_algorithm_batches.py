"""Each algorithm's training targets from scored groups (pure logic), and its loss on the batch it built."""

import math

import numpy as np
import pytest
import torch

from selfplay.learner.algorithms.dpo import OnlineDPO
from selfplay.learner.algorithms.drift import DRIFT
from selfplay.learner.algorithms.ipo import OnlineIPO
from selfplay.learner.algorithms.nash_md import NashMD
from selfplay.learner.algorithms.osp import OSP
from selfplay.learner.algorithms.registry import build_algorithm, entries
from selfplay.orchestration.config.loading import load_config
from selfplay.errors import ConfigError
from selfplay.rollout.records import Completion, PreferenceGroup


def _c(tokens, prompt=(1, 2), version=0):
    return Completion(0, "x", list(prompt), list(tokens), " ".join(map(str, tokens)), version)


def _pair(p, first=(5,), second=(6,)):
    return PreferenceGroup([_c(first), _c(second)], np.array([[0.5, p], [1 - p, 0.5]]))


def test_every_name_builds_and_unknown_lists_choices():
    for name in entries():
        assert build_algorithm(load_config(None, [f"algorithm.name={name}"])).name == name
    with pytest.raises(ConfigError, match="must be one of sppo, nash_md, online_ipo, ipo_md, drift, osp, dpo"):
        load_config(None, ["algorithm.name=ppo"])
    with pytest.raises(ConfigError, match="unknown config key 'algorithm.ipo.taus'"):
        load_config(None, ["algorithm.ipo.taus=1"])


def test_nash_md_trains_on_the_policy_sample_only():
    batch, metrics = NashMD(tau=0.1, mixture_beta=0.5).build_batch([_pair(0.8), _pair(0.3)])
    assert batch.response_token_ids == [[5], [5]]
    np.testing.assert_allclose(batch.fields["p_win"], [0.8, 0.3])
    assert metrics["p_win_vs_mixture"] == pytest.approx(0.55)


def test_online_ipo_soft_keeps_order_and_p():
    algo = OnlineIPO(tau=0.5, labels="soft")
    batch, _ = algo.build_batch([_pair(0.9)], np.random.default_rng(0))
    assert batch.group_size == 2 and batch.response_token_ids == [[5], [6]]
    np.testing.assert_allclose(batch.fields["p"], [0.9, 0.9])
    # h = 1 - 0 = 1; target (0.9 - 0.5)/0.5 = 0.8 -> (1 - 0.8)^2
    loss, _ = algo.loss(torch.tensor([1.0, 0.0]), torch.zeros(2), batch)
    assert loss.item() == pytest.approx(0.04)
    assert algo.name == "online_ipo" and OnlineIPO(0.1, "soft", 0.5).name == "ipo_md"


def test_hard_labels_draw_the_winner_with_probability_p():
    algo = OnlineDPO(beta=0.1, labels="hard")
    rng = np.random.default_rng(0)
    firsts = [algo.build_batch([_pair(0.8)], rng)[0].response_token_ids[0] for _ in range(2000)]
    assert abs(np.mean([f == [5] for f in firsts]) - 0.8) < 0.03
    batch, _ = algo.build_batch([_pair(0.8)], np.random.default_rng(1))
    np.testing.assert_allclose(batch.fields["p"], [1.0, 1.0])


def test_osp_ranked_pairs_with_judged_strength():
    m = np.array([[0.5, 0.9, 0.8, 0.7],
                  [0.1, 0.5, 0.4, 0.3],
                  [0.2, 0.6, 0.5, 0.45],
                  [0.3, 0.7, 0.55, 0.5]])
    group = PreferenceGroup([_c((i,)) for i in range(4)], m)
    batch, _ = OSP(beta=0.1, k=4).build_batch([group])
    # win-rates 0.725, 0.325, 0.4375, 0.5125: ranks 0 > 3 > 2 > 1; pairs (0, 1) and (3, 2)
    assert batch.response_token_ids == [[0], [1], [3], [2]]
    np.testing.assert_allclose(batch.fields["p"], [0.9, 0.9, 0.55, 0.55])
    assert OSP(beta=0.1, k=5).sequences_per_step(3) == 12
    hard, metrics = OSP(beta=0.1, k=4, labels="hard").build_batch([group])
    assert hard.response_token_ids == batch.response_token_ids and set(hard.fields["p"]) == {1.0}
    assert metrics["strength_mean"] == pytest.approx((0.9 + 0.55) / 2)  # the judged strength, still reported


def test_osp_judge_warm_up_examples_train_the_verdict_tokens():
    group = _pair(0.7)
    group.judge_examples = [[[1, 9, 9], 30, 31, 0.8], [[1, 8, 8], 30, 31, 0.1]]
    algo = OSP(beta=1.0, k=2)
    batch, metrics = algo.build_batch([group])
    assert metrics["osp/judge_examples"] == 2 and len(batch) == 6 and batch.num_samples == 2
    assert batch.prompt_token_ids[2:] == [[1, 9, 9]] * 2 + [[1, 8, 8]] * 2
    assert batch.response_token_ids[2:] == [[30], [31]] * 2
    np.testing.assert_allclose(batch.fields["judge"], [0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(batch.fields["p"], [0.7, 0.7, 0.8, 0.8, 0.1, 0.1])
    # log-probs: the OSP pair has h = 0 (loss log 2); the verdicts log pi(A), log pi(B) = log .5, log .25 then
    # log .2, log .6: judge CE -(.8 log .5 + .2 log .25), -(.1 log .2 + .9 log .6)
    policy = torch.log(torch.tensor([0.3, 0.3, 0.5, 0.25, 0.2, 0.6]))
    loss, terms = algo.loss(policy, policy.clone(), batch)
    judge = (-(0.8 * math.log(0.5) + 0.2 * math.log(0.25)) - (0.1 * math.log(0.2) + 0.9 * math.log(0.6))) / 2
    assert terms["judge_loss"] == pytest.approx(judge, abs=1e-6)
    assert loss.item() == pytest.approx(math.log(2) + judge, abs=1e-6)
    # a shard of only judge examples (a micro-batch can be one) still has a finite loss
    only_judge = batch.split(3)[2]
    assert torch.isfinite(algo.loss(policy[4:], policy[4:], only_judge)[0])


def test_drift_trains_the_pair_on_the_original_prompt():
    positive = _c((7, 8), prompt=(1, 9, 9, 9))  # generated for the repair prompt
    rejected = _c((3, 4), prompt=(1, 2), version=-1)
    group = PreferenceGroup([positive, rejected], np.array([[0.5, 1.0], [0.0, 0.5]]))
    algo = DRIFT(beta=0.1, alpha=0.5, iteration_steps=3, reduction="sum")
    batch, _ = algo.build_batch([group])
    assert batch.prompt_token_ids == [[1, 2], [1, 2]]
    assert batch.response_token_ids == [[7, 8], [3, 4]]
    # h = 0; NLL term uses log pi(y+)/|y+| = -2/2: loss = log 2 + 0.5 * 1
    loss, _ = algo.loss(torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]), batch)
    assert loss.item() == pytest.approx(np.log(2) + 0.5)
    assert [s for s in range(1, 8) if algo.reference_resets_after(s)] == [3, 6]


def test_fixed_references_never_reset():
    for algo in (NashMD(0.1, 0.5), OnlineIPO(0.1, "soft"), OnlineDPO(0.1, "hard"), OSP(0.1, 4)):
        assert not any(algo.reference_resets_after(s) for s in range(1, 50))


def test_bad_algorithm_options_name_the_key():
    for override, key in (("algorithm.nash_md.mixture.beta=1.5", "algorithm.nash_md.mixture.beta"),
                          ("algorithm.osp.judge_template=no-fields", "algorithm.osp.judge_template"),
                          ("algorithm.ipo.labels=fuzzy", "algorithm.ipo.labels")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, [override])
