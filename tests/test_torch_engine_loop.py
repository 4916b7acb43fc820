"""The torch/transformers engine behind the same loop (its own module: the vLLM run's actors are gone)."""

import pytest
import ray

from tests.test_loop_end_to_end import PROBES, run_loop

pytestmark = pytest.mark.slow


def test_torch_engine_runs_the_same_loop(tmp_path_factory):
    controller, summary, initial_digest, initial_logprobs = run_loop(tmp_path_factory, "torch", 10, "sync.transport=object_store")
    try:
        assert summary["policy_version"] == 10
        learner_digest = controller.learner.call("weights_digest")
        assert learner_digest != initial_digest
        assert ray.get(controller.rollouts[0].weights_state.remote()) == (10, learner_digest)
        engine = ray.get(controller.rollouts[0].sequence_logprobs.remote(PROBES))
        learner = controller.learner.call("sequence_logprobs", PROBES)
        for e, l in zip(engine, learner):
            assert e == pytest.approx(l, abs=1e-4)
    finally:
        controller.shutdown()
        ray.shutdown()
