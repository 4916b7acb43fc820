"""The learner's micro-batches: ``train_step`` runs ``ceil(groups / groups per micro-batch)`` forward/backward
passes whatever ``sequences_per_step`` says, and the step equals one step on the whole batch at once (the
same gradient, the same weights), also when a caller pads it with zero-weight passes. Two ZeRO-3 ranks whose
shards need different numbers of passes and of log-prob chunks (with gradient checkpointing) still step
like one rank on the whole batch. DeepSpeed runs in this process on its CPU accelerator (gloo, world size 1);
the two ranks are two spawned processes."""

import multiprocessing
import os
import queue

import numpy as np
import pytest
import torch

from selfplay.learner.algorithms.dpo import OnlineDPO
from selfplay.learner.batch import TrainingBatch
from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _pairs(n: int, seed: int, lengths: tuple[int, int] = (3, 8)) -> TrainingBatch:
    """``n`` soft-labelled pairs on random prompts, responses of ``lengths`` tokens (low inclusive)."""
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for _ in range(n):
        prompt = rng.integers(4, 20, size=int(rng.integers(3, 7))).tolist()
        for _ in range(2):
            prompts.append(prompt)
            responses.append(rng.integers(4, 20, size=int(rng.integers(*lengths))).tolist())
    p = np.repeat(rng.uniform(0.6, 1.0, size=n), 2).astype(np.float32)
    return TrainingBatch(prompts, responses, [0] * len(responses),
                         {"p": p, "length": np.asarray([len(r) for r in responses], dtype=np.float32)}, group_size=2)


def _learner(model: str, micro_batch_size: int, zero: int = 0, chunk_tokens: int = 1024, **kwargs):
    from selfplay.learner.policy_learner import PolicyLearner

    return PolicyLearner(model, OnlineDPO(beta=0.5, labels="soft"), lr=1e-4, weight_decay=0.0, grad_clip=100.0,
                         micro_batch_size=micro_batch_size, sequences_per_step=4, zero_stage=zero, dtype="float32",
                         reduction="sum", seed=0, logprob_chunk_tokens=chunk_tokens, **kwargs)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch.distributed as dist

    from selfplay.learner.process_group import host_store, join_process_group

    created = not dist.is_initialized()
    if created:
        store, endpoint = host_store("127.0.0.1", 1)
        join_process_group(0, 1, endpoint, "gloo", store)
    yield str(build_tiny_model_dir(tmp_path_factory.mktemp("model") / "m", TinyModelSpec(seed=0)))
    if created:  # later tests in this process expect no default process group
        dist.destroy_process_group()


def _step(learner, batch, num_micro_batches=None):
    """(policy forward batch sizes, gradients the optimizer saw, weights after, metrics) of one train_step."""
    sizes, grads = [], []
    learner.engine.module.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    if learner.zero_stage == 0:  # ZeRO-0 in float32 hands the gradients to the torch optimizer as they are
        learner.engine.optimizer.register_step_pre_hook(lambda opt, args, kwargs: grads.append(
            [p.grad.clone() for group in opt.param_groups for p in group["params"]]))
    metrics = learner.train_step(batch, num_micro_batches=num_micro_batches)
    return sizes, grads[0] if grads else None, dict(learner.full_parameters()), metrics


def test_train_step_runs_micro_batches_of_at_most_micro_batch_size(model):
    batch = _pairs(5, seed=1)  # 10 sequences, more than sequences_per_step = 4
    sizes, *_ = _step(_learner(model, micro_batch_size=4), batch)
    assert sizes == [2, 4, 4]  # at most two pairs a micro-batch
    sizes, *_ = _step(_learner(model, micro_batch_size=3), batch)
    assert sizes == [2] * 5  # a pair is never cut: one pair a micro-batch
    sizes, *_ = _step(_learner(model, micro_batch_size=1), batch)
    assert sizes == [2] * 5  # a group larger than the micro-batch is one of its own
    sizes, *_ = _step(_learner(model, micro_batch_size=4), batch, num_micro_batches=5)
    assert sizes == [2, 4, 4, 2, 2]  # padded with zero-weight passes (one pair each) to the given count
    with pytest.raises(ValueError, match="cannot hold"):
        _learner(model, micro_batch_size=4).train_step(batch, num_micro_batches=2)


@pytest.mark.parametrize("zero", [0, 2])
def test_micro_batches_step_like_one_micro_batch(model, zero):
    batch = _pairs(5, seed=2)
    _, grads_one, one, metrics_one = _step(_learner(model, micro_batch_size=64, zero=zero), batch)
    for micro_batch_size, passes in ((2, None), (4, None), (4, 6)):
        _, grads, got, metrics = _step(_learner(model, micro_batch_size, zero=zero, chunk_tokens=3), batch, passes)
        if zero == 0:
            for g, expected in zip(grads, grads_one):
                torch.testing.assert_close(g, expected, atol=1e-7, rtol=1e-5)
        for name, expected in one.items():
            torch.testing.assert_close(got[name], expected, atol=1e-6, rtol=0)
        assert metrics["loss"] == pytest.approx(metrics_one["loss"], abs=1e-6)
        if zero:
            assert metrics["grad_norm"] == pytest.approx(metrics_one["grad_norm"], rel=1e-5)
    initial = dict(_learner(model, 64).full_parameters())
    assert max((one[n] - initial[n]).abs().max().item() for n in one) > 1e-5  # the step did move the weights


# -- two ZeRO-3 ranks --------------------------------------------------------------------------------------

def _rank_main(rank: int, model: str, shards, shares, passes, endpoints, results) -> None:
    """One rank of a two-rank ZeRO-3 learner with gradient checkpointing: a step on its shard, then its
    gathered weights to ``results`` (rank 0 only)."""
    os.environ["DS_ACCELERATOR"] = "cpu"
    from selfplay.learner.process_group import host_store, join_process_group

    store = None
    if rank == 0:
        store, endpoint = host_store("127.0.0.1", 2)
        endpoints.put(endpoint)
        endpoints.put(endpoint)
    endpoint = endpoints.get(timeout=60) if rank else endpoint
    join_process_group(rank, 2, endpoint, "gloo", store)
    learner = _learner(model, micro_batch_size=2, zero=3, chunk_tokens=2, gradient_checkpointing=True)
    learner.train_step(shards[rank], loss_scale=2 * shares[rank], num_micro_batches=passes)
    weights = {name: tensor.numpy() for name, tensor in learner.full_parameters()}
    if rank == 0:
        results.put(weights)


@pytest.mark.slow
def test_two_zero3_ranks_with_uneven_shards_step_like_one_rank(model):
    # Rank 0: three pairs of long responses; rank 1: two pairs of short ones. Rank 1 needs fewer passes and
    # fewer head chunks per pass than rank 0, and must still join every collective.
    shards = [_pairs(3, seed=3, lengths=(6, 12)), _pairs(2, seed=4, lengths=(1, 3))]
    shares = [3 / 5, 2 / 5]
    _, _, expected, _ = _step(_learner(model, micro_batch_size=64), TrainingBatch.concat(shards))
    context = multiprocessing.get_context("spawn")
    endpoints, results = context.Queue(), context.Queue()
    ranks = [context.Process(target=_rank_main, args=(rank, model, shards, shares, 3, endpoints, results))
             for rank in range(2)]
    for process in ranks:
        process.start()
    try:
        got = results.get(timeout=300)
    except queue.Empty:
        pytest.fail("the two ZeRO-3 ranks did not finish (a collective out of step hangs)")
    finally:
        for process in ranks:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    for name, tensor in expected.items():
        np.testing.assert_allclose(got[name], tensor.numpy(), atol=1e-6, rtol=0)
