"""preference.num_replicas: a batch's groups spread over several preference service actors and put back in order,
with the same matrices and stats one model would give."""

import numpy as np
import pytest
import ray

from selfplay.actors.preference_replicas import PreferenceReplicas, contiguous_shards
from selfplay.actors.preference_service import PreferenceService
from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.cluster.placement import role_resources
from selfplay.preference.matrix import pair_probabilities, preference_matrices
from selfplay.preference.sorting_judge import SortingJudge
from selfplay.preference.stats import PreferenceStats
from selfplay.rollout.records import Completion
from selfplay.tasks.sorting import make_prompts


def test_contiguous_shards_cover_everything_once_in_order():
    assert [list(s) for s in contiguous_shards(7, 3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [list(s) for s in contiguous_shards(2, 4)] == [[0], [1]]  # never an empty shard
    assert contiguous_shards(0, 3) == [range(0, 0)]


def test_combined_stats_add_counts_and_keep_the_wall_time():
    a = PreferenceStats(calls=4, seconds=1.0, pairs=6, ties=1, order_averaged=True, asked_both_orders=5,
                        swap_disagreements=2)
    b = PreferenceStats(calls=2, seconds=3.0, pairs=3, ties=0, order_averaged=True, asked_both_orders=3,
                        swap_disagreements=0)
    total = PreferenceStats.combined([a, b], seconds=3.2)
    assert (total.calls, total.pairs, total.ties, total.asked_both_orders, total.swap_disagreements) == \
        (6, 9, 1, 8, 2)
    assert total.seconds == 3.2 and total.metrics()["preference/swap_inconsistency"] == 0.25


def test_replica_resources_come_from_the_config():
    model = load_config(None, ["preference.kind=reward_model", "preference.model_path=x"])
    assert role_resources(model, "preference").num_cpus == 1  # a model of its own: a whole CPU by default
    assert role_resources(load_config(None, []), "preference").num_cpus == 0.5
    custom = role_resources(load_config(None, ["preference.num_cpus=0.25", "preference.num_gpus=0"]), "preference")
    assert (custom.num_cpus, custom.num_gpus) == (0.25, 0)


@pytest.fixture(scope="module")
def replicas():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    actors = [PreferenceService.options(num_cpus=0.5).remote("sorting", {"sharpness": 20.0, "alphabet_size": 16})
              for _ in range(3)]
    yield PreferenceReplicas(actors)
    ray.shutdown()


def _groups(count, k=4, seed=0):
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnop")
    return [[Completion(g, prompt, [1], [2], " ".join(rng.choice(letters, 6)), 0) for _ in range(k)]
            for g, prompt in enumerate(make_prompts(count, seed))]


def test_replicas_answer_as_one_model_and_share_the_load(replicas):
    groups = _groups(8)
    matrices, stats = replicas.matrices(groups)
    expected, one = preference_matrices(SortingJudge(20.0, 16), groups)
    assert len(matrices) == 8
    for got, want in zip(matrices, expected):
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert (stats.calls, stats.pairs, stats.ties) == (one.calls, one.pairs, one.ties)
    assert all(calls > 0 for calls in replicas.calls_per_replica())  # every replica took a shard

    first, second = [g[0] for g in groups], [g[1] for g in groups]
    probabilities, _ = replicas.compare(first, second)
    np.testing.assert_allclose(probabilities, pair_probabilities(SortingJudge(20.0, 16), first, second)[0])
    flat = [c for g in groups for c in g]
    scores = replicas.scores([c.prompt for c in flat], [c.response_text for c in flat])
    np.testing.assert_allclose(scores, SortingJudge(20.0, 16).scores([c.prompt for c in flat],
                                                                     [c.response_text for c in flat]))
    assert replicas.exploitability(["a"]) is None  # not a game


def test_normalize_scores_divides_differences_by_the_spread(replicas):
    from selfplay.orchestration.loop.controller import score_spread

    assert score_spread(0.25) == 0.25
    assert score_spread(0.0) is None and score_spread(float("nan")) is None and score_spread(None) is None
    groups = _groups(4, seed=3)
    replicas.scale_scores(2.0)  # every replica: sharpness 20 / 2
    try:
        matrices, _ = replicas.matrices(groups)
    finally:
        replicas.scale_scores(1.0)
    for got, want in zip(matrices, preference_matrices(SortingJudge(10.0, 16), groups)[0]):
        np.testing.assert_allclose(got, want, atol=1e-12)
