"""Colocated mode (rollout.colocate): each learner rank hosts the engine that samples its shard of the prompts,
generating with the very module it trains. The config's rules and the shared engine without Ray; then the real
loop: a colocated run learns, samples and trains exactly as separate placement does, resumes bitwise, and two
colocated ranks equal one learner rank fed by two engines."""

import json

import numpy as np
import pytest
import torch

from selfplay.errors import ConfigError
from selfplay.orchestration.cluster.placement import role_counts
from selfplay.orchestration.config.loading import load_config
from selfplay.rollout.records import SamplingSpec
from selfplay.rollout.torch_engine import TorchEngine
from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir
from tests.conftest import run_in_process


def test_colocated_engines_follow_the_learner_ranks():
    config = load_config(None, ["rollout.colocate=true", "learner.num_ranks=2"])
    assert config.rollout.num_workers == 2 and config.rollout.engine == "vllm"  # vLLM colocates too
    assert role_counts(config) == {"learner": 2, "rollout": 0, "preference": 1}  # no actors of their own


@pytest.mark.parametrize("override, key", [
    ("mode=async", "'mode'"),
    ("rollout.vllm.tensor_parallel_size=2", "'rollout.vllm.tensor_parallel_size' must be 1"),
    ("rollout.num_workers=2", "'rollout.num_workers' is learner.num_ranks (1)"),
    ("rollout.cpu_threads_bind=1", "'rollout.cpu_threads_bind'"),
])
def test_what_colocation_cannot_do_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        load_config(None, ["rollout.colocate=true", override])


class _RecordingEngine:
    def __init__(self):
        self.calls = []

    def sleep(self):
        self.calls.append("sleep")

    def wake_up(self, tags):
        self.calls.append(f"wake {','.join(tags)}")


def test_a_colocated_engine_sleeps_while_the_rank_trains_and_wakes_in_order():
    from selfplay.rollout.engine_sleep import EngineSleep

    engine = _RecordingEngine()
    sleep = EngineSleep(engine, enabled=True)
    sleep.before_generate()  # built awake: nothing to do
    sleep.before_train()
    sleep.before_train()  # already asleep (a step without a push or a generation between)
    sleep.before_load()
    sleep.before_generate()
    sleep.before_train()
    sleep.before_generate()  # no push this step: the weights come back with the cache
    assert engine.calls == ["sleep", "wake weights", "wake kv_cache", "sleep", "wake weights", "wake kv_cache"]
    assert sleep.state == "awake"
    off = EngineSleep(_RecordingEngine(), enabled=False)  # the torch engine, vLLM's CPU build: same states, no calls
    off.before_train()
    assert off.state == "asleep" and off.engine.calls == []
    off.before_generate()
    assert off.state == "awake" and off.engine.calls == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model_dir(tmp_path_factory.mktemp("model") / "m", TinyModelSpec(seed=0)))


def test_a_shared_engine_generates_with_the_owners_module_and_leaves_it_as_it_was(tiny_model):
    from transformers import AutoModelForCausalLM

    owner = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).train()
    engine = TorchEngine.around(owner, tiny_model, seed=3)
    own = TorchEngine(tiny_model, seed=3)  # separate placement's engine: its own copy from the same weights
    assert {p.data_ptr() for p in engine._model.parameters()} == {p.data_ptr() for p in owner.parameters()}
    prompts = [[1, 4, 5, 6], [1, 7, 8]]
    specs = (SamplingSpec(n=3, temperature=1.0, top_p=1.0, max_tokens=5, ignore_eos=True, seed=5),
             SamplingSpec(n=2, temperature=1.0, top_p=0.9, max_tokens=5, ignore_eos=True, seed=5))  # our loop; HF's
    torch.manual_seed(11)
    rng = torch.get_rng_state()
    shared = [[[c.response_token_ids for c in g] for g in engine.generate(prompts, [0, 1], spec)] for spec in specs]
    assert owner.training  # back in train mode for the learner
    assert torch.equal(torch.get_rng_state(), rng)  # the owner's random stream was not drawn from
    assert shared == [[[c.response_token_ids for c in g] for g in own.generate(prompts, [0, 1], spec)]
                      for spec in specs]
    with torch.no_grad():  # and the engine follows the owner's parameters, without a load
        next(owner.parameters()).add_(1.0)
    assert next(engine._model.parameters()).data_ptr() == next(owner.parameters()).data_ptr()


# -- the real loop ---------------------------------------------------------------------------------------------

def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session_per_module")
class TestColocatedLoop:
    def test_colocated_vllm_sppo_learns_on_the_embedded_default(self, tmp_path_factory):
        """README's colocated run: the default engine, vLLM, in the learner rank's process (external launcher),
        the weights loaded in process at every step."""
        run_dir, summary = run_in_process(tmp_path_factory.mktemp("sppo"), "sppo", "rollout.colocate=true",
                                          "checkpoint.at_end=false")
        assert summary["placement"] == "colocated" and summary["weight_transport"] == "in_process"
        assert summary["rollout_engine"] == "vllm"
        assert summary["steps"] == summary["policy_version"] == 120 and summary["verified_pushes"] == 120
        assert summary["last_push"]["bytes"] == 0  # nothing left the process
        assert summary["win_rate_vs_initial"] >= 0.75, summary["win_rate_curve"]

    def test_colocated_torch_engine_shares_the_weights_equals_separate_placement_and_resumes_bitwise(
            self, tmp_path_factory):
        from selfplay.orchestration.commands.launch import prepare, resume

        tmp = tmp_path_factory.mktemp("alike")
        steps = ["run.total_steps=4", "rollout.engine=torch"]
        config = load_config(None, [f"run.output_dir={tmp}", "run.name=colocated", "rollout.colocate=true",
                                    "eval.every_steps=0", "checkpoint.every_steps=0", "ray.num_cpus=4", *steps])
        controller = prepare(config)
        try:  # the engine generates with the learner's own parameters: no second copy of the weights
            assert controller.fleet.shares_weights() == [True]
            controller.run()
        finally:
            controller.shutdown()
        colocated = controller.run_dir
        separate, _ = run_in_process(tmp, "separate", *steps)
        np.testing.assert_allclose(_losses(colocated), _losses(separate), rtol=0, atol=1e-5)
        # Resume: two steps, then the other two from the checkpoint, equal the straight run bit for bit.
        half, _ = run_in_process(tmp, "half", "rollout.colocate=true", "rollout.engine=torch", "run.total_steps=2")
        resume(half, ["run.total_steps=4"])
        assert _losses(half) == _losses(colocated)

    def test_two_colocated_vllm_zero3_ranks_equal_one_rank_fed_by_two_engines(self, tmp_path_factory):
        """Two ZeRO-3 ranks, each with its vLLM engine in the ranks' torch.distributed world, loaded from the
        parameters gathered at each push, sample the shards two separate engines sample and train as one learner
        rank does on the whole batch."""
        tmp = tmp_path_factory.mktemp("ranks")
        steps = ["run.total_steps=3", "algorithm.name=dpo"]
        two, summary = run_in_process(tmp, "two", "rollout.colocate=true", "learner.num_ranks=2", "learner.zero_stage=3",
                                      *steps)
        one, _ = run_in_process(tmp, "one", "rollout.num_workers=2", *steps)
        np.testing.assert_allclose(_losses(two), _losses(one), rtol=0, atol=2e-5)
        assert summary["placement"] == "colocated"
