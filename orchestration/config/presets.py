"""Presets: values filled in under what the user sets (any of them can be overridden), listed by
``selfplay train --dry-run`` and saved with the run's config like any other value."""

from __future__ import annotations

from selfplay.learner.algorithms import registry

# The embedded default (no policy.model_path: a random tiny model on the sorting task) needs options a real chat
# model does not: it never learnt EOS and answers in 6 words; each algorithm's module adds what it needs (OSP's
# judge, DRIFT's filter: learner/algorithms/*.py ``embedded_preset``). These are applied under what the user
# sets, so any of them can be overridden; the algorithms' own defaults stay the papers'.
EMBEDDED_PRESET = {
    "rollout": {"max_tokens": 6, "ignore_eos": True},
    # A random 2-layer model learns at 1e-3 in minutes, where a pretrained one is wrecked by it. The code
    # defaults are a real chat model's.
    "learner": {"lr": 1e-3, "micro_batch_size": 64},
}


def embedded_preset() -> dict:
    """The embedded model's preset with every algorithm's own part under ``algorithm.<section>``."""
    sections = {}
    for entry in registry.entries().values():
        if entry.embedded_preset:
            sections.setdefault(entry.section, {}).update(entry.embedded_preset)
    return {**EMBEDDED_PRESET, "algorithm": sections}


# The built-in game with the embedded model: the first word is the whole move, and the exploitability measured at
# each evaluation needs a large sample of moves (32 x task.num_eval_prompts) to be accurate to about 0.01.
GAME_PRESET = {"rollout": {"max_tokens": 1}, "eval": {"samples_per_prompt": 32}}


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
               (embedded, embedded_preset())]
    name = _section(data, "algorithm").get("name", "sppo")
    chosen = registry.entries().get(name) if isinstance(name, str) else None
    if chosen is not None and chosen.preset:  # an unknown name is reported by the loader, naming the choices
        applies.append((True, chosen.preset))
    applied: list[str] = []
    for condition, preset in applies:
        if condition:
            _fill(data, preset, "", applied)
    return applied
