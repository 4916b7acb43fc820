"""The checks of a whole config past its types: every number against the bounds its field declares
(``_f(..., ge=1)``, shown by ``selfplay config``), then the rules that tie keys together; each error names its key."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from selfplay.config_fields import bound_problem
from selfplay.errors import ConfigError
from selfplay.learner.algorithms import registry

if TYPE_CHECKING:
    from selfplay.orchestration.config.schema import Config


def takes_auto(hint: Any) -> bool:
    """Whether a field's type admits the word ``auto`` besides a number (``int | Literal["auto"]``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(takes_auto(arg) for arg in typing.get_args(hint))
    return typing.get_origin(hint) is Literal and "auto" in typing.get_args(hint)


def check_bounds(section: Any, prefix: str = "") -> None:
    """Every number of ``section`` and its subsections within its field's bounds."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_bounds(value, key + ".")
            continue
        problem = bound_problem(value, f.metadata.get("bounds", {}))
        if problem:
            raise ConfigError(f"config key '{key}' {problem}{' or auto' if takes_auto(hints[f.name]) else ''}")


def validate(config: Config) -> None:
    """The bounds of every key, then the rules across keys."""
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' {what}")

    check_bounds(config)
    need(bool(config.run.name) and "/" not in config.run.name, "run.name", "must be a non-empty name without '/'")
    binds = config.rollout.cpu_threads_bind
    need(binds == "auto" or len(binds.split(";")) == config.rollout.num_workers, "rollout.cpu_threads_bind",
         f"needs one core list per rollout worker ({config.rollout.num_workers}), separated by ';', or auto")
    need(binds == "auto" or all(re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", b) for b in binds.split(";")),
         "rollout.cpu_threads_bind", "core lists look like 1 or 0-3 or 0,2,4-5")
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
    need(p.kind not in ("reward_model", "pairwise", "judge") or bool(p.model_path), "preference.model_path",
         f"is required with preference.kind={p.kind} (a "
         f"{'causal LM' if p.kind == 'judge' else 'sequence-classifier'} directory or hub id)")
    for key in ("verdict_a", "verdict_b"):
        need(bool(getattr(p, key).strip()), f"preference.{key}", "must be a non-empty answer such as A")
    need(p.verdict_a != p.verdict_b, "preference.verdict_b", "must differ from preference.verdict_a")
    need(p.kind != "python" or bool(p.class_path), "preference.class_path",
         "is required with preference.kind=python (e.g. my_judge:Judge)")
    need(p.kind != "remote" or bool(p.url), "preference.url",
         "is required with preference.kind=remote (e.g. http://127.0.0.1:8000)")
    need(not p.url or re.match(r"https?://[^/\s]+", p.url) is not None, "preference.url",
         f"must look like http://HOST:PORT, got {p.url!r}")
    need(bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p.token_env)), "preference.token_env",
         f"must be an environment variable name such as SELFPLAY_PREFERENCE_TOKEN, got {p.token_env!r}")
    for section in registry.sections():  # each algorithm's own rules past its bounds (learner/algorithms/*.py)
        options = getattr(config.algorithm, section)
        for key, what in options.problems() if hasattr(options, "problems") else ():
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
    need(config.learner.warmup_steps == 0 or 0 <= config.learner.warmup_steps < config.run.total_steps,
         "learner.warmup_steps", f"must be >= 0 and below run.total_steps ({config.run.total_steps})")
    need(config.rollout.prompts_per_step % config.learner.num_ranks == 0, "learner.num_ranks",
         f"must divide rollout.prompts_per_step ({config.rollout.prompts_per_step}): each rank trains on an "
         "equal share of the step's prompts")
    allocator = config.ray.host_allocator
    need(allocator in ("auto", "system") or (bool(allocator) and ("/" not in allocator or Path(allocator).is_file())),
         "ray.host_allocator", f"must be auto, system, a library soname or an existing library file, got {allocator!r}")
