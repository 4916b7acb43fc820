"""Weight pushes through the real actors: a DeepSpeed learner of two ranks under ZeRO-3 (so each parameter is
gathered from both ranks' shards as it is sent) and two vLLM rollout workers plus one torch worker, over the
broadcast transport (gloo), the object store and shared memory. The engines start from a different model than the learner, so matching log-probs prove the push took
effect inside each engine, and matching digests prove the exact tensors arrived."""

import os

import pytest
import ray

from selfplay.actors.learner_group import LearnerGroup
from selfplay.actors.rollout_worker import RolloutWorker
from selfplay.actors.weight_transport import close_weight_transport, open_weight_transport, push_weights
from selfplay.orchestration.config.loading import load_config, to_dict
from selfplay.orchestration.loop.learner_spec import learner_spec
from selfplay.orchestration.cluster.placement import actor_options, role_resources
from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

pytestmark = pytest.mark.slow

PROBES = [[1, 4, 8, 5, 12, 7, 5, 6, 7, 8], [1, 4, 20, 19, 18, 5, 9, 10, 11, 12, 13, 14]]


@pytest.fixture(scope="module")
def actors(tmp_path_factory):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = tmp_path_factory.mktemp("models")
    learner_model = build_tiny_model_dir(root / "learner", TinyModelSpec(seed=0))
    engine_model = build_tiny_model_dir(root / "engine", TinyModelSpec(seed=1))
    config = load_config(None, ["learner.zero_stage=3", "learner.num_ranks=2", "ray.num_cpus=6"])
    if ray.is_initialized():  # an earlier module's session: this one needs its own resources
        ray.shutdown()
    ray.init(num_cpus=6, object_store_memory=1 << 30, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}})
    try:
        vllm_options = to_dict(config)["rollout"]["vllm"]
        learner = LearnerGroup(learner_spec(config), str(learner_model), 16,
                               [actor_options(role_resources(config, "learner"))] * 2)
        rollouts = [RolloutWorker.options(**actor_options(role_resources(config, "rollout"))).remote(
            engine, str(engine_model), "float32", i, vllm_options)
            for i, engine in enumerate(["vllm", "vllm", "torch"])]
        before = ray.get([w.sequence_logprobs.remote(PROBES) for w in rollouts])
        yield learner, rollouts, before
    finally:
        ray.shutdown()


def _assert_engines_hold_the_learners_weights(learner, rollouts, push, version, before):
    # The digest and log-probs of the learner's gathered parameters (every rank computes them; rank 0's).
    learner_digest = learner.call("weights_digest")
    assert push["loaded"] == [(version, learner_digest)] * len(rollouts)
    expected = learner.call("sequence_logprobs", PROBES)
    for worker, initial in zip(rollouts, before):
        got = ray.get(worker.sequence_logprobs.remote(PROBES))
        for g, e, i in zip(got, expected, initial):
            assert g == pytest.approx(e, abs=1e-4)
            assert max(abs(a - b) for a, b in zip(g, i)) > 1e-2  # not the engine's initial model


def test_broadcast_push_reaches_every_engine(actors):
    learner, rollouts, before = actors
    endpoint = open_weight_transport(learner, rollouts, "broadcast", bucket_bytes=64 * 1024)
    assert endpoint["backend"] == "gloo" and endpoint["world_size"] == 4
    push = push_weights(learner, rollouts, version=1)
    assert push["backend"] == "broadcast/gloo" and push["buckets"] > 1 and push["bytes"] > 0
    _assert_engines_hold_the_learners_weights(learner, rollouts, push, 1, before)
    # The group stays up between pushes; the next version arrives through it too.
    push = push_weights(learner, rollouts, version=2)
    _assert_engines_hold_the_learners_weights(learner, rollouts, push, 2, before)
    assert ray.get([w.weights_state.remote() for w in rollouts])[0][0] == 2


def test_object_store_push_through_the_same_calls(actors):
    learner, rollouts, before = actors
    close_weight_transport(learner, rollouts)
    assert open_weight_transport(learner, rollouts, "object_store", bucket_bytes=64 * 1024) == {"kind": "object_store"}
    push = push_weights(learner, rollouts, version=3)
    assert push["backend"] == "object_store" and push["buckets"] > 1
    _assert_engines_hold_the_learners_weights(learner, rollouts, push, 3, before)


def test_shared_memory_push_through_the_same_calls(actors):
    learner, rollouts, before = actors
    close_weight_transport(learner, rollouts)
    endpoint = open_weight_transport(learner, rollouts, "shared_memory", bucket_bytes=64 * 1024)
    assert endpoint["kind"] == "shared_memory"
    for version in (4, 5):  # the second push rewrites the files the first one left mapped in every engine
        push = push_weights(learner, rollouts, version=version)
        assert push["backend"] == "shared_memory" and push["buckets"] > 1
        _assert_engines_hold_the_learners_weights(learner, rollouts, push, version, before)
