"""Presets: values filled in under what the user sets (any of them can be overridden), listed by
``selfplay train --dry-run`` and saved with the run's config like any other value."""

from __future__ import annotations

# The embedded default (no policy.model_path: a random tiny model on the sorting task) needs options a real chat
# model does not: it never learnt EOS, answers in 6 words, cannot judge (OSP) and cannot improve an answer from a
# complaint (DRIFT). These are applied under what the user sets, so any of them can be overridden; the
# algorithms' own defaults stay the papers'.
EMBEDDED_PRESET = {
    "rollout": {"max_tokens": 6, "ignore_eos": True},
    # A random 2-layer model learns at 1e-3 in minutes, where a pretrained one is wrecked by it; SPPO's step
    # size is sized to 6-token responses and short iterations. The code defaults are a real chat model's.
    "learner": {"lr": 1e-3, "micro_batch_size": 64},
    "algorithm": {"sppo": {"eta": 10.0, "iteration_steps": 10},
                  # the judge's own words, which the embedded vocabulary then holds (policy_model.py)
                  "osp": {"labels": "hard", "judge_warmup_steps": 120, "verdict_a": "first", "verdict_b": "second",
                          "judge_template": "{prompt} first: {a} second: {b} better:"},
                  # the DSAT reply is the prompt's own letters reversed: pushing it down at the paper's beta 0.1
                  # pushes down the letters the right answer is made of, so the filtered positives' NLL leads
                  "drift": {"filter_threshold": 0.5, "alpha": 1.0, "beta": 0.01}},
}

# The built-in game with the embedded model: the first word is the whole move, and the exploitability measured at
# each evaluation needs a large sample of moves (32 x task.num_eval_prompts) to be accurate to about 0.01.
GAME_PRESET = {"rollout": {"max_tokens": 1}, "eval": {"samples_per_prompt": 32}}


# Algorithms that sample from the geometric mixture of the policy and the reference: the torch engine holds both
# models and draws the token-level mixture in one decoding pass, where vLLM (the policy only) needs the sequence
# sampler's `candidates` policy samples per response. So unless the config names an engine, they get torch.
MIXTURE_ALGORITHMS = ("nash_md", "ipo_md")
MIXTURE_PRESET = {"rollout": {"engine": "torch"}}


def _section(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _fill(node: dict, preset: dict, prefix: str, applied: list[str]) -> None:
    """Set every key of ``preset`` that ``node`` leaves unset, noting each as ``dotted.key=value``."""
    for key, value in preset.items():
        if isinstance(value, dict):
            child = node.setdefault(key, {})
            if isinstance(child, dict):  # a non-mapping is reported by the loader, naming the key
                _fill(child, value, f"{prefix}{key}.", applied)
        elif key not in node:
            node[key] = value
            applied.append(f"{prefix}{key}={value}")


def apply_presets(data: dict) -> list[str]:
    """Fill in every preset that applies to the raw config ``data``; returns the dotted keys filled in."""
    embedded = not _section(data, "policy").get("model_path")
    applies = [(embedded and _section(data, "task").get("name") == "game", GAME_PRESET),
               (embedded, EMBEDDED_PRESET),
               (_section(data, "algorithm").get("name") in MIXTURE_ALGORITHMS, MIXTURE_PRESET)]
    applied: list[str] = []
    for condition, preset in applies:
        if condition:
            _fill(data, preset, "", applied)
    return applied
