"""The learner as two DeepSpeed ranks (Ray actors, gloo on CPU): a step of two ranks under ZeRO-2 and ZeRO-3
equals a step of one rank on the whole batch, also when the batch does not split evenly and after a reference
reset (ZeRO-3 partitions the reference too); a two-rank ZeRO-3 checkpoint restores the model, the reference
and the optimizer exactly."""

import os

import numpy as np
import pytest
import ray

from selfplay.actors.learner_group import LearnerGroup
from selfplay.learner.batch import TrainingBatch
from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.loop.learner_spec import learner_spec
from selfplay.orchestration.cluster.placement import actor_options, role_resources
from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

pytestmark = pytest.mark.slow

PROBES = [[1, 4, 8, 5, 12, 7, 5, 6, 7, 8], [1, 4, 20, 19, 18, 5, 9, 10, 11, 12, 13, 14]]


def _pairs(n: int, seed: int) -> TrainingBatch:
    """``n`` DPO pairs (first preferred with probability p) on random prompts and responses."""
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for _ in range(n):
        prompt = rng.integers(4, 20, size=6).tolist()
        for _ in range(2):
            prompts.append(prompt)
            responses.append(rng.integers(4, 20, size=int(rng.integers(3, 8))).tolist())
    p = np.repeat(rng.uniform(0.6, 1.0, size=n), 2).astype(np.float32)
    lengths = np.asarray([len(r) for r in responses], dtype=np.float32)
    return TrainingBatch(prompts, responses, [0] * len(responses), {"p": p, "length": lengths}, group_size=2)


def _logprobs(group: LearnerGroup) -> np.ndarray:
    return np.concatenate([np.asarray(x) for x in group.call("sequence_logprobs", PROBES)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    model = build_tiny_model_dir(tmp_path_factory.mktemp("model") / "m", TinyModelSpec(seed=0))
    ray.init(num_cpus=4, object_store_memory=1 << 30, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false",
                                       "DS_ACCELERATOR": "cpu"}})
    try:
        yield str(model)
    finally:
        ray.shutdown()


def _run(model: str, ranks: int, zero: int, checkpoint_dir=None) -> list[np.ndarray]:
    """Log-probs of the probes: initially, after a step on 8 pairs, after a step on 3 pairs."""
    config = load_config(None, ["algorithm.name=dpo", "learner.lr=0.01", "learner.micro_batch_size=64",
                                f"learner.num_ranks={ranks}", f"learner.zero_stage={zero}"])
    group = LearnerGroup(learner_spec(config), model, 16 // ranks, [actor_options(role_resources(config, "learner"))] * ranks)
    try:
        out = [_logprobs(group)]
        group.train_step(_pairs(8, seed=1))
        group.call("reset_reference")  # the second step's loss is relative to the first step's policy
        out.append(_logprobs(group))
        if checkpoint_dir is not None:
            group.call("save_checkpoint", str(checkpoint_dir))
        metrics = group.train_step(_pairs(3, seed=2))
        assert np.isfinite(metrics["loss"])
        out.append(_logprobs(group))
        if zero == 3:  # the reference is partitioned like the policy: each rank holds about half of each
            counts = ray.get(group.submit("local_parameter_counts"))
            total = sum(c["policy"] for c in counts)
            assert all(abs(c["policy"] - total / ranks) <= 64 * ranks and c["reference"] == c["policy"]
                       for c in counts), counts
        if checkpoint_dir is not None:
            group.call("load_checkpoint", str(checkpoint_dir))
            out.append(_logprobs(group))
            group.train_step(_pairs(3, seed=2))
            out.append(_logprobs(group))
        return out
    finally:
        group.shutdown()


@pytest.fixture(scope="module")
def one_rank(setup):
    return _run(setup, ranks=1, zero=0)


def test_one_rank_steps_move_the_policy(one_rank):
    initial, first, second = one_rank
    assert np.abs(first - initial).max() > 1e-2 and np.abs(second - first).max() > 1e-3


@pytest.mark.parametrize("zero", [2, 3])
def test_two_ranks_step_like_one_rank_on_the_whole_batch(setup, one_rank, zero, tmp_path):
    got = _run(setup, ranks=2, zero=zero, checkpoint_dir=tmp_path / "ckpt" if zero == 3 else None)
    for g, expected in zip(got[:3], one_rank):
        np.testing.assert_allclose(g, expected, atol=2e-5)
    if zero == 3:
        restored, again = got[3], got[4]
        assert (tmp_path / "ckpt" / "learner_rank1.msgpack").exists()
        np.testing.assert_array_equal(restored, got[1])  # the checkpoint's weights, exactly
        np.testing.assert_allclose(again, one_rank[2], atol=2e-5)  # and its optimizer state


def _save_after_one_step(model: str, ranks: int, zero: int, directory) -> None:
    group = _group(model, ranks, zero)
    try:
        group.train_step(_pairs(8, seed=1))
        group.call("reset_reference")
        answers = group.gather(group.submit("save_checkpoint", str(directory)), "save_checkpoint")
    finally:
        group.shutdown()
    # Each rank hashed the files it wrote, none twice, and together every file of the checkpoint.
    from selfplay.learner.checkpoint_files import file_digest
    written = [f for f in directory.rglob("*") if f.is_file()]
    assert sum(map(len, answers)) == len({k for a in answers for k in a}) == len(written)
    assert all(file_digest(directory / rel) == digest for a in answers for rel, digest in a.items())
    if ranks > 1 and zero:
        assert all("zero_pp_rank_1_" in rel or rel == "learner_rank1.msgpack" for rel in answers[1])


def _group(model: str, ranks: int, zero: int) -> LearnerGroup:
    config = load_config(None, ["algorithm.name=dpo", "learner.lr=0.01", "learner.micro_batch_size=64",
                                f"learner.num_ranks={ranks}", f"learner.zero_stage={zero}"])
    return LearnerGroup(learner_spec(config), model, 16 // ranks,
                        [actor_options(role_resources(config, "learner"))] * ranks)


@pytest.mark.parametrize("zero, saved_ranks, ranks", [(2, 2, 1), (3, 2, 1), (2, 1, 2), (0, 2, 1)])
def test_a_checkpoint_resumes_onto_another_number_of_ranks(setup, one_rank, tmp_path, zero, saved_ranks, ranks):
    """A pre-empted job that comes back on fewer or more devices: the checkpoint of `saved_ranks` ranks is
    reshaped through DeepSpeed's universal checkpoint (ZeRO 1-3; stage 0 loads as it is), optimizer state
    kept: the next step equals the uninterrupted one-rank run's."""
    from selfplay.learner.checkpoint_reshape import saved_data_parallel_size, to_universal

    directory = tmp_path / "ckpt"
    _save_after_one_step(setup, saved_ranks, zero, directory)
    state = directory / "engine" / "state"
    assert saved_data_parallel_size(state) == (saved_ranks if zero else None)
    universal = str(to_universal(state, tmp_path / "universal")) if zero else None
    group = _group(setup, ranks, zero)
    try:
        group.call("load_checkpoint", str(directory), universal)
        np.testing.assert_allclose(_logprobs(group), one_rank[1], atol=2e-5)  # the checkpoint's weights
        group.train_step(_pairs(3, seed=2))
        np.testing.assert_allclose(_logprobs(group), one_rank[2], atol=2e-5)  # and its Adam moments
    finally:
        group.shutdown()
