"""The whole loop for real: Ray actors, the vLLM (or torch) engine, the preference service, DeepSpeed."""

import json

import pytest
import ray

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.commands.launch import prepare

pytestmark = pytest.mark.slow

# Sequences whose per-token log-probs fingerprint the weights (prompt + some response letters).
PROBES = [[1, 4, 8, 5, 12, 7, 5, 6, 7, 8], [1, 4, 20, 19, 18, 5, 9, 10, 11, 12, 13, 14]]


def run_loop(tmp_path_factory, engine, steps, *extra):
    out = tmp_path_factory.mktemp(f"runs-{engine}")
    config = load_config(None, [f"run.output_dir={out}", f"run.name=e2e-{engine}", f"run.total_steps={steps}",
                                f"rollout.engine={engine}", "eval.every_steps=10", "ray.num_cpus=4", *extra])
    controller = prepare(config)
    initial_digest = controller.learner.call("weights_digest")
    initial_logprobs = ray.get(controller.rollouts[0].sequence_logprobs.remote(PROBES))
    summary = controller.run()
    return controller, summary, initial_digest, initial_logprobs


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory):
    # Two vLLM workers fed in shards, both updated on every push over the broadcast transport.
    run = run_loop(tmp_path_factory, "vllm", 40, "rollout.num_workers=2", "sync.transport=broadcast")
    yield run
    run[0].shutdown()
    ray.shutdown()


def test_policy_changed(vllm_run):
    controller, summary, initial_digest, _ = vllm_run
    assert summary["steps"] == 40 and summary["policy_version"] == 40
    assert controller.learner.call("weights_digest") != initial_digest


def test_rollout_engine_holds_the_learners_weights(vllm_run):
    controller, summary, _, initial_logprobs = vllm_run
    learner_digest = controller.learner.call("weights_digest")
    assert len(controller.rollouts) == 2
    for worker in controller.rollouts:
        # the exact tensors the learner holds were loaded, by every worker, under the last version
        assert ray.get(worker.weights_state.remote()) == (summary["policy_version"], learner_digest)
    assert summary["last_push"]["backend"] == "broadcast/gloo" and summary["last_push"]["bytes"] > 0
    # every push of the run: both engines loaded exactly the tensors the learner sent (digest checked per push)
    assert summary["verified_pushes"] == 40 and summary["last_push"]["digest"] == learner_digest
    # ... and they took effect inside vLLM: its log-probs match the learner's, not the initial model's.
    engine = ray.get(controller.rollouts[1].sequence_logprobs.remote(PROBES))
    learner = controller.learner.call("sequence_logprobs", PROBES)
    for e, l, i in zip(engine, learner, initial_logprobs):
        assert e == pytest.approx(l, abs=1e-4)
        assert max(abs(a - b) for a, b in zip(e, i)) > 1e-2


def test_cpu_actors_run_on_the_resolved_malloc(vllm_run):
    from pathlib import Path

    from selfplay.orchestration.cluster.host_allocator import resolve_host_allocator

    controller = vllm_run[0]
    library = resolve_host_allocator(controller.config.ray.host_allocator)  # tcmalloc where installed (CI has it)
    for role, pid in controller.actor_processes().items():
        mapped = Path(f"/proc/{pid}/maps").read_text()
        assert ("libtcmalloc" in mapped) == (library is not None), role


def test_win_rate_rose(vllm_run):
    controller, summary, _, _ = vllm_run
    assert summary["win_rate_vs_initial"] > 0.6
    assert summary["final_eval_score"] > summary["initial_eval_score"]
    curve = [rate for _, rate in summary["win_rate_curve"]]
    assert len(curve) == 4 and curve[-1] > 0.55


def test_run_directory(vllm_run):
    controller, summary, _, _ = vllm_run
    run_dir = controller.run_dir
    on_disk = json.loads((run_dir / "summary.json").read_text())
    for key in ("algorithm", "steps", "samples", "policy_version", "win_rate_vs_initial", "wall_seconds"):
        assert on_disk[key] == summary[key]
    assert on_disk["samples"] == 40 * 16 * 4
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, 41))
    assert [r["policy_version"] for r in rows if "loss" in r] == list(range(1, 41))
    assert (run_dir / "config.yaml").is_file() and (run_dir / "initial_model" / "config.json").is_file()
    assert any((run_dir / "tensorboard").iterdir())


def test_export_round_trip(vllm_run, tmp_path):
    """The end-of-run checkpoint exported as an HF directory: transformers gives the learner's log-probs, and
    the vLLM engine loaded from it gives the same greedy output as transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfplay.actors.rollout_worker import RolloutWorker
    from selfplay.orchestration.commands.launch import export
    from selfplay.rollout.records import SamplingSpec

    controller, summary, _, _ = vllm_run
    out = export(controller.run_dir, tmp_path / "exported")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    learner = controller.learner.call("sequence_logprobs", PROBES)
    with torch.no_grad():
        for ids, expected in zip(PROBES, learner):
            x = torch.tensor([ids])
            logp = torch.log_softmax(model(input_ids=x).logits, -1)[0, :-1].gather(-1, x[0, 1:, None]).squeeze(-1)
            assert logp.tolist() == pytest.approx(expected, abs=1e-5)
    prompts = controller.eval_set.token_ids[:4]
    engine = RolloutWorker.options(num_cpus=0).remote("vllm", str(out), "float32", 0, {"max_model_len": 64})
    try:
        greedy = SamplingSpec(n=1, temperature=0.0, max_tokens=6, ignore_eos=True)
        vllm_out = [g[0].response_token_ids for g in ray.get(engine.generate.remote(prompts, [0, 1, 2, 3], greedy))]
    finally:
        ray.kill(engine)
    for ids, tokens, text in zip(prompts, vllm_out, controller.eval_set.records):
        assert ids == tokenizer(text).input_ids  # the embedded tokenizer has no chat template: the text as is
        hf = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=6, min_new_tokens=6)
        assert hf[0, len(ids):].tolist() == tokens
