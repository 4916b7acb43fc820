"""The algorithms selfplay knows: each module below declares its ``ENTRIES`` (learner/algorithms/base.py
``AlgorithmEntry``: name, config section, factory, presets), and this list is the only place a new one is added.
``SELFPLAY_ALGORITHM_MODULES`` (comma-separated importable modules with ``ENTRIES`` of their own) adds yours
without editing selfplay; it is read once per process, so set it where the run starts (Ray workers inherit it)."""

from __future__ import annotations

import functools
import importlib
import os

from selfplay.errors import ConfigError
from selfplay.learner.algorithms.base import Algorithm, AlgorithmEntry, BuildContext, RolloutNeeds

MODULES = tuple(f"selfplay.learner.algorithms.{name}" for name in ("sppo", "nash_md", "ipo", "drift", "osp", "dpo"))
PLUGIN_ENV = "SELFPLAY_ALGORITHM_MODULES"


@functools.cache
def entries() -> dict[str, AlgorithmEntry]:
    """Every algorithm by its ``algorithm.name``, in the order of ``MODULES`` and then the plug-ins'."""
    plugins = [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]
    found: dict[str, AlgorithmEntry] = {}
    sections: dict[str, type] = {}
    for module_name in (*MODULES, *plugins):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"{PLUGIN_ENV}: module '{module_name}' does not import ({exc})") from None
        for entry in getattr(module, "ENTRIES", None) or ():
            if entry.name in found:
                raise ConfigError(f"algorithm '{entry.name}' of {module_name} is already declared")
            if sections.setdefault(entry.section, entry.options) is not entry.options:
                raise ConfigError(f"algorithm '{entry.name}' of {module_name}: section algorithm.{entry.section} "
                                  "is another algorithm's, with other options")
            found[entry.name] = entry
        if not getattr(module, "ENTRIES", None):
            raise ConfigError(f"{module_name} declares no ENTRIES (a tuple of AlgorithmEntry)")
    return found


def sections() -> dict[str, type]:
    """``algorithm.<section>`` -> its options dataclass, each once."""
    return {e.section: e.options for e in entries().values()}


def entry_of(config) -> AlgorithmEntry:
    return entries()[config.algorithm.name]


def options_of(config):
    """The chosen algorithm's own config section."""
    return getattr(config.algorithm, entry_of(config).section)


def needs_of(config) -> RolloutNeeds:
    """What the chosen algorithm asks of the rollout and preference phases (its ``RolloutNeeds``)."""
    return build_algorithm(config).needs


def build_algorithm(config) -> Algorithm:
    """``config`` is the run's ``Config``; its ``algorithm.name`` was checked against ``entries()`` on load."""
    entry = entry_of(config)
    return entry.build(options_of(config), BuildContext(k=config.rollout.k,
                                                       logprob_reduction=config.algorithm.logprob_reduction))
