"""The learner ranks' ``LearnerSpec`` from the run's config: the one place config keys become PolicyLearner
options."""

from __future__ import annotations

from selfplay.learner.algorithms.registry import build_algorithm
from selfplay.learner.spec import LearnerSpec
from selfplay.orchestration.config.schema import Config
from selfplay.orchestration.health.watchdog import collective_timeout_s


def learner_spec(config: Config) -> LearnerSpec:
    lc = config.learner
    return LearnerSpec(
        algorithm=build_algorithm(config), backend=lc.backend, seed=config.run.seed,
        collective_timeout_s=collective_timeout_s(config.run.step_timeout_s),
        options={"lr": lc.lr, "weight_decay": lc.weight_decay, "grad_clip": lc.grad_clip,
                 "micro_batch_size": lc.micro_batch_size, "zero_stage": lc.zero_stage, "dtype": config.policy.dtype,
                 "reduction": config.algorithm.logprob_reduction, "logprob_chunk_tokens": lc.logprob_chunk_tokens,
                 "gradient_checkpointing": lc.gradient_checkpointing, "lr_schedule": lc.lr_schedule,
                 "warmup_steps": lc.warmup_steps, "total_steps": config.run.total_steps})
