"""What a resumed run may change in its config (how long it runs, what it reports, what it runs on) and what it may
not (what it learns): ``structural_differences`` lists the keys of the second kind that differ."""

from __future__ import annotations

from selfplay.orchestration.config.loading import to_dict
from selfplay.orchestration.config.schema import Config

# Keys a resumed run may change: they alter how long it runs, what it reports and what it runs on, not what it
# learns. A remote preference service may move (a new host or port) or be slower than planned between a run and its
# resume; a pre-empted job comes back with other resources, or after running out of memory with a smaller
# micro-batch (the same sums in another order: equal to the uninterrupted run to ~1e-5, not bitwise) or with
# gradient checkpointing. ``*.name`` matches that key in any section.
RESUMABLE_OVERRIDES = ("run.total_steps", "run.log_every", "run.auto_resume", "run.step_timeout_s",
                       "rollout.max_restarts", "preference.max_restarts", "checkpoint.", "eval.every_steps", "ray.", "resume",
                       "run.overwrite", "run.output_dir", "run.name", "sync.transport", "sync.bucket_mb", "mode",
                       "pipeline.", "preference.url", "preference.token_env", "preference.timeout_s",
                       "preference.retry_seconds", "preference.serve.", "metrics.",
                       "learner.micro_batch_size", "learner.gradient_checkpointing", "learner.logprob_chunk_tokens",
                       "learner.num_ranks", "rollout.num_workers", "rollout.cpu_threads_bind", "rollout.vllm.",
                       "preference.num_replicas", "preference.batch_size", "sync.verify_digest",
                       "*.num_gpus", "*.num_cpus", "*.num_threads", "*.resources")


def _resumable(key: str) -> bool:
    parts = key.split(".")
    return any(key == p or (p.endswith(".") and key.startswith(p)) or (p.startswith("*.") and p[2:] in parts[1:])
               for p in RESUMABLE_OVERRIDES)


def structural_differences(saved: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs, leaving out those a resume may change."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) and v else {key: v})
        return out

    a, b = flat(to_dict(saved)), flat(to_dict(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and not _resumable(k))
