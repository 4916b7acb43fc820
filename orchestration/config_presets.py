"""Presets: values filled in under what the user sets (any of them can be overridden), listed by
``selfplay train --dry-run`` and saved with the run's config like any other value."""

from __future__ import annotations

# The embedded default (no policy.model_path: a random tiny model on the sorting task) needs options a real chat
# model does not: it never learnt EOS, answers in 6 words, cannot judge (OSP) and cannot improve an answer from a
# complaint (DRIFT). These are applied under what the user sets, so any of them can be overridden; the
# algorithms' own defaults stay the papers'.
EMBEDDED_PRESET = {
    "rollout": {"max_tokens": 6, "ignore_eos": True},
    "algorithm": {"osp": {"labels": "hard", "judge_warmup_steps": 120},
                  "drift": {"filter_threshold": 0.5, "alpha": 1.0}},
}

# The built-in game with the embedded model: the first word is the whole move, and the exploitability measured at
# each evaluation needs a large sample of moves (32 x task.num_eval_prompts) to be accurate to about 0.01.
GAME_PRESET = {"rollout": {"max_tokens": 1}, "eval": {"samples_per_prompt": 32}}


def apply_embedded_preset(data: dict) -> list[str]:
    """Fill in ``EMBEDDED_PRESET`` where ``data`` leaves a key unset, when the run uses the embedded model;
    returns the dotted keys filled in."""
    policy = data.get("policy")
    if isinstance(policy, dict) and policy.get("model_path"):
        return []
    applied = []

    def fill(node: dict, preset: dict, prefix: str) -> None:
        for key, value in preset.items():
            if isinstance(value, dict):
                child = node.setdefault(key, {})
                if isinstance(child, dict):  # a non-mapping is reported by the loader, naming the key
                    fill(child, value, f"{prefix}{key}.")
            elif key not in node:
                node[key] = value
                applied.append(f"{prefix}{key}={value}")

    task = data.get("task")
    if isinstance(task, dict) and task.get("name") == "game":
        fill(data, GAME_PRESET, "")
    fill(data, EMBEDDED_PRESET, "")
    return applied


# Algorithms that sample from the geometric mixture of the policy and the reference: the torch engine holds both
# models and draws the token-level mixture in one decoding pass, where vLLM (the policy only) needs the sequence
# sampler's `candidates` policy samples per response. So unless the config names an engine, they get torch.
MIXTURE_ALGORITHMS = ("nash_md", "ipo_md")


def apply_mixture_preset(data: dict) -> list[str]:
    algorithm, rollout = data.get("algorithm"), data.get("rollout")
    if not isinstance(algorithm, dict) or algorithm.get("name") not in MIXTURE_ALGORITHMS:
        return []
    if rollout is None:
        rollout = data["rollout"] = {}
    if not isinstance(rollout, dict) or "engine" in rollout:
        return []
    rollout["engine"] = "torch"
    return ["rollout.engine=torch"]


def apply_presets(data: dict) -> list[str]:
    """Every preset that applies to the raw config ``data``; returns the dotted keys filled in."""
    return apply_embedded_preset(data) + apply_mixture_preset(data)
