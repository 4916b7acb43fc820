"""What ``build_preference_model`` takes, from the config: one place for the run's preference service
(orchestration/loop/controller.py) and for ``selfplay serve-preference`` (orchestration/commands/serve_preference.py)."""

from __future__ import annotations

from selfplay.orchestration.config.schema import Config

from selfplay.orchestration.config.loading import to_dict
from selfplay.preference.function_model import module_search_path
from selfplay.preference.remote_model import read_token


def preference_options(config: Config, model_path: str | None) -> dict:
    """The model's options; ``model_path``: the local directory check_preference_inputs resolved (a hub id's
    snapshot). User modules are imported from the driver's working directory, not the actor's. A judge runs its
    own vLLM engine with the rollout engines' options."""
    c, p = config, config.preference
    engine = {k: v for k, v in to_dict(c)["rollout"]["vllm"].items() if k != "tensor_parallel_size"}
    judge_engine = {**engine, "max_model_len": p.judge_max_model_len, "dtype": c.policy.dtype, "seed": c.run.seed}
    return {"sharpness": p.sharpness, "alphabet_size": c.task.alphabet_size,
            "function": p.function, "function_kind": p.function_kind, "class_path": p.class_path,
            "model_path": model_path, "temperature": p.temperature,
            "batch_size": p.batch_size, "pairwise_template": p.pairwise_template,
            "judge_template": p.judge_template, "verdict_a": p.verdict_a, "verdict_b": p.verdict_b,
            "engine_options": judge_engine, "search_path": module_search_path(),
            "strategies": p.strategies, "payoff": p.payoff,
            "url": p.url, "token_env": p.token_env, "timeout_s": p.timeout_s, "retry_seconds": p.retry_seconds,
            # The driver's token, handed to the actor as an argument: a cluster's workers do not see the driver's
            # environment, and Ray's runtime-env agent logs the env_vars of a runtime_env in clear text.
            "token": read_token(p.token_env) if p.kind == "remote" else None}
