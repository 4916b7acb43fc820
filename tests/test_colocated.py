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
    assert config.rollout.num_workers == 2 and config.rollout.engine == "torch"
    assert "rollout.engine=torch" in config.preset_keys
    assert role_counts(config) == {"learner": 2, "rollout": 0, "preference": 1}  # no actors of their own


@pytest.mark.parametrize("override, key", [
    ("mode=async", "'mode'"),
    ("rollout.engine=vllm", "'rollout.engine'"),
    ("rollout.num_workers=2", "'rollout.num_workers' is learner.num_ranks (1)"),
    ("rollout.cpu_threads_bind=1", "'rollout.cpu_threads_bind'"),
])
def test_what_colocation_cannot_do_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        load_config(None, ["rollout.colocate=true", override])


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
    def test_colocated_sppo_learns_without_a_copy_of_the_weights(self, tmp_path_factory):
        from selfplay.orchestration.commands.launch import prepare

        config = load_config(None, [f"run.output_dir={tmp_path_factory.mktemp('sppo')}", "run.name=sppo",
                                    "rollout.colocate=true", "checkpoint.at_end=false", "ray.num_cpus=4"])
        controller = prepare(config)
        try:
            assert controller.fleet.shares_weights() == [True]  # the engine's parameters are the learner's
            summary = controller.run()
        finally:
            controller.shutdown()
        assert summary["placement"] == "colocated" and summary["weight_transport"] == "in_process"
        assert summary["steps"] == summary["policy_version"] == 120 and summary["verified_pushes"] == 120
        assert summary["last_push"]["bytes"] == 0  # nothing left the process
        assert summary["win_rate_vs_initial"] >= 0.75, summary["win_rate_curve"]

    def test_colocated_and_separate_placement_sample_and_train_alike_and_resume_bitwise(self, tmp_path_factory):
        tmp = tmp_path_factory.mktemp("alike")
        steps = ["run.total_steps=4", "checkpoint.at_end=true"]
        colocated, summary = run_in_process(tmp, "colocated", "rollout.colocate=true", *steps)
        separate, _ = run_in_process(tmp, "separate", "rollout.engine=torch", *steps)
        np.testing.assert_allclose(_losses(colocated), _losses(separate), rtol=0, atol=1e-5)
        # Resume: two steps, then the other two from the checkpoint, equal the straight run bit for bit.
        half, _ = run_in_process(tmp, "half", "rollout.colocate=true", "run.total_steps=2", "checkpoint.at_end=true")
        from selfplay.orchestration.commands.launch import resume

        resume(half, ["run.total_steps=4"])
        assert _losses(half) == _losses(colocated)

    def test_two_colocated_ranks_equal_one_rank_fed_by_two_engines(self, tmp_path_factory):
        tmp = tmp_path_factory.mktemp("ranks")
        steps = ["run.total_steps=3", "algorithm.name=dpo"]
        two, summary = run_in_process(tmp, "two", "rollout.colocate=true", "learner.num_ranks=2", *steps)
        one, _ = run_in_process(tmp, "one", "rollout.engine=torch", "rollout.num_workers=2", *steps)
        np.testing.assert_allclose(_losses(two), _losses(one), rtol=0, atol=2e-5)
        assert summary["placement"] == "colocated"
