"""Range and consistency checks of a whole config that types alone cannot express; each error names its key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from selfplay.errors import ConfigError
from selfplay.learner.algorithms import registry

if TYPE_CHECKING:
    from selfplay.orchestration.config.schema import Config


def validate(config: Config) -> None:
    """Range checks that types alone cannot express; each error names its key."""
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' {what}")

    need(config.run.total_steps >= 1, "run.total_steps", "must be >= 1")
    need(config.run.log_every >= 1, "run.log_every", "must be >= 1")
    need(bool(config.run.name) and "/" not in config.run.name, "run.name", "must be a non-empty name without '/'")
    need(config.rollout.num_workers >= 1, "rollout.num_workers", "must be >= 1")
    need(config.rollout.max_restarts >= 0, "rollout.max_restarts", "must be >= 0")
    need(config.preference.max_restarts >= 0, "preference.max_restarts", "must be >= 0")
    need(config.run.auto_resume >= 0, "run.auto_resume", "must be >= 0")
    need(config.run.step_timeout_s >= 0, "run.step_timeout_s", "must be >= 0 (0: no limit)")
    binds = config.rollout.cpu_threads_bind
    need(binds == "auto" or len(binds.split(";")) == config.rollout.num_workers, "rollout.cpu_threads_bind",
         f"needs one core list per rollout worker ({config.rollout.num_workers}), separated by ';', or auto")
    need(binds == "auto" or all(re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", b) for b in binds.split(";")),
         "rollout.cpu_threads_bind", "core lists look like 1 or 0-3 or 0,2,4-5")
    need(config.rollout.prompts_per_step >= 1, "rollout.prompts_per_step", "must be >= 1")
    need(config.rollout.k >= 2, "rollout.k", "must be >= 2 (self-play compares responses)")
    need(config.rollout.temperature > 0, "rollout.temperature", "must be > 0")
    need(0 < config.rollout.top_p <= 1, "rollout.top_p", "must be in (0, 1]")
    need(config.rollout.max_tokens >= 1, "rollout.max_tokens", "must be >= 1")
    need(config.rollout.max_prompt_tokens >= 1, "rollout.max_prompt_tokens", "must be >= 1")
    need(config.rollout.vllm.max_model_len >= 0, "rollout.vllm.max_model_len", "must be >= 0 (0: auto)")
    need(config.rollout.vllm.tensor_parallel_size >= 1, "rollout.vllm.tensor_parallel_size", "must be >= 1")
    need(0 < config.rollout.vllm.gpu_memory_utilization <= 1, "rollout.vllm.gpu_memory_utilization",
         "must be in (0, 1]")
    need(config.learner.logprob_chunk_tokens >= 1, "learner.logprob_chunk_tokens", "must be >= 1")
    p = config.preference
    need(p.kind != "function" or bool(p.function), "preference.function",
         "is required with preference.kind=function (e.g. my_rewards:score)")
    need(p.kind != "sorting" or not (config.task.prompts_path or config.algorithm.drift.data_path),
         "preference.kind", "sorting judges only the built-in sorting task's prompts; with your own prompts use "
         "preference.kind=function (preference.function=module:callable), reward_model, pairwise or judge "
         "(preference.model_path), or python (preference.class_path)")
    need(config.task.name != "game" or p.kind == "game", "task.name",
         f"game needs preference.kind=game (got preference.kind={p.kind})")
    if p.kind == "game" or config.task.name == "game":
        from selfplay.preference.games import game_from_payoff
        try:
            game_from_payoff(p.strategies, p.payoff)
        except ValueError as exc:
            raise ConfigError(f"config key 'preference.payoff' or 'preference.strategies': {exc}") from None
    need(config.preference.sharpness > 0, "preference.sharpness", "must be > 0")
    need(p.kind not in ("reward_model", "pairwise", "judge") or bool(p.model_path), "preference.model_path",
         f"is required with preference.kind={p.kind} (a "
         f"{'causal LM' if p.kind == 'judge' else 'sequence-classifier'} directory or hub id)")
    for key in ("verdict_a", "verdict_b"):
        need(bool(getattr(p, key).strip()), f"preference.{key}", "must be a non-empty answer such as A")
    need(p.verdict_a != p.verdict_b, "preference.verdict_b", "must differ from preference.verdict_a")
    need(p.judge_max_model_len >= 0, "preference.judge_max_model_len", "must be >= 0 (0: the model's context)")
    need(p.kind != "python" or bool(p.class_path), "preference.class_path",
         "is required with preference.kind=python (e.g. my_judge:Judge)")
    need(p.kind != "remote" or bool(p.url), "preference.url",
         "is required with preference.kind=remote (e.g. http://127.0.0.1:8000)")
    need(not p.url or re.match(r"https?://[^/\s]+", p.url) is not None, "preference.url",
         f"must look like http://HOST:PORT, got {p.url!r}")
    need(bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p.token_env)), "preference.token_env",
         f"must be an environment variable name such as SELFPLAY_PREFERENCE_TOKEN, got {p.token_env!r}")
    need(p.timeout_s > 0, "preference.timeout_s", "must be > 0")
    need(p.retry_seconds >= 0, "preference.retry_seconds", "must be >= 0")
    need(p.serve.replicas >= 1, "preference.serve.replicas", "must be >= 1")
    need(p.serve.max_batch_size >= 1, "preference.serve.max_batch_size", "must be >= 1")
    need(p.serve.batch_wait_s >= 0, "preference.serve.batch_wait_s", "must be >= 0")
    need(p.temperature > 0, "preference.temperature", "must be > 0")
    need(p.batch_size >= 1, "preference.batch_size", "must be >= 1")
    need(p.max_bad_batches >= 1, "preference.max_bad_batches", "must be >= 1")
    need(0.0 <= p.max_rejected_share < 1.0, "preference.max_rejected_share", "must be in [0, 1)")
    need(p.num_replicas >= 1, "preference.num_replicas", "must be >= 1")
    need(p.num_cpus == "auto" or p.num_cpus >= 0, "preference.num_cpus", "must be >= 0 or auto")
    need(p.num_gpus == "auto" or p.num_gpus >= 0, "preference.num_gpus", "must be >= 0 or auto")
    for section in registry.sections():  # each algorithm's own ranges (learner/algorithms/*.py)
        for key, what in getattr(config.algorithm, section).problems():
            need(False, f"algorithm.{section}.{key}", what)
    for key, template, fields in (("preference.pairwise_template", p.pairwise_template, ("prompt", "a", "b")),
                                  ("preference.judge_template", p.judge_template, ("prompt", "a", "b"))):
        need(all("{" + f + "}" in template for f in fields), key,
             "must contain " + ", ".join("{" + f + "}" for f in fields))
    for key in ("pairwise_template", "judge_template"):
        try:  # other braces would break str.format in the middle of a run
            getattr(p, key).format(prompt="", a="", b="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"config key 'preference.{key}' cannot be filled in ({type(exc).__name__}: {exc}); "
                              "write a literal brace as {{ or }}") from None
    need(config.learner.lr > 0, "learner.lr", "must be > 0")
    need(0 <= config.learner.warmup_steps < config.run.total_steps or config.learner.warmup_steps == 0,
         "learner.warmup_steps", f"must be >= 0 and below run.total_steps ({config.run.total_steps})")
    need(config.learner.micro_batch_size >= 1, "learner.micro_batch_size", "must be >= 1")
    need(config.learner.zero_stage in (0, 1, 2, 3), "learner.zero_stage", "must be 0, 1, 2 or 3")
    need(config.learner.num_ranks >= 1, "learner.num_ranks", "must be >= 1")
    need(config.rollout.prompts_per_step % config.learner.num_ranks == 0, "learner.num_ranks",
         f"must divide rollout.prompts_per_step ({config.rollout.prompts_per_step}): each rank trains on an "
         "equal share of the step's prompts")
    need(config.sync.every_steps >= 1, "sync.every_steps", "must be >= 1")
    need(config.sync.bucket_mb >= 1, "sync.bucket_mb", "must be >= 1")
    need(config.eval.every_steps >= 0, "eval.every_steps", "must be >= 0")
    need(config.eval.samples_per_prompt >= 1, "eval.samples_per_prompt", "must be >= 1")
    need(config.task.num_eval_prompts >= 1, "task.num_eval_prompts", "must be >= 1")
    need(2 <= config.task.alphabet_size <= 26, "task.alphabet_size", "must be in [2, 26]")
    need(config.task.prompt_letters >= 1, "task.prompt_letters", "must be >= 1")
    need(config.checkpoint.every_steps >= 0, "checkpoint.every_steps", "must be >= 0")
    need(config.checkpoint.keep_last >= 1, "checkpoint.keep_last", "must be >= 1")
    need(config.checkpoint.keep_every >= 0, "checkpoint.keep_every", "must be >= 0")
    need(config.pipeline.max_policy_lag >= 0, "pipeline.max_policy_lag", "must be >= 0")
    need(config.pipeline.queue_size >= 1, "pipeline.queue_size", "must be >= 1")
    need(config.ray.num_cpus == "auto" or config.ray.num_cpus >= 1, "ray.num_cpus", "must be >= 1 or auto")
    for role in ("learner", "rollout", "preference"):
        threads = getattr(config, role).num_threads
        need(threads == "auto" or threads >= 1, f"{role}.num_threads", "must be >= 1 or auto")
    need(config.ray.placement_timeout_s > 0, "ray.placement_timeout_s", "must be > 0")
    need(0 <= config.ray.metrics_export_port <= 65535, "ray.metrics_export_port", "must be a port, 0-65535")
    for role in ("learner", "rollout"):
        section = getattr(config, role)
        need(section.num_cpus >= 0, f"{role}.num_cpus", "must be >= 0")
        need(section.num_gpus == "auto" or section.num_gpus >= 0, f"{role}.num_gpus", "must be >= 0 or auto")
    need(config.ray.object_store_gib > 0, "ray.object_store_gib", "must be > 0")
    allocator = config.ray.host_allocator
    need(allocator in ("auto", "system") or (bool(allocator) and ("/" not in allocator or Path(allocator).is_file())),
         "ray.host_allocator", f"must be auto, system, a library soname or an existing library file, got {allocator!r}")
    need(config.metrics.samples >= 0, "metrics.samples", "must be >= 0")
