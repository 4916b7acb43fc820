"""One entry per algorithm: a module declares its config section, factory and presets (``ENTRIES``), and the
registry, the config's ``algorithm.name`` choices, its ``algorithm.<section>`` keys, their checks and the
embedded preset all follow. tests/toy_algorithm.py is such a module, added without touching selfplay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfplay.errors import ConfigError
from selfplay.learner.algorithms import registry
from selfplay.orchestration.config.loading import load_config
from tests.conftest import REPO

SELFPLAY = str(Path(sys.executable).parent / "selfplay")


def _with_toy() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SELFPLAY_FAULT")}
    return env | {registry.PLUGIN_ENV: "tests.toy_algorithm", "PYTHONPATH": str(REPO)}


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry read again under the test's environment, and as it was afterwards."""
    registry.entries.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    registry.entries.cache_clear()


def test_every_built_in_algorithm_has_one_entry_and_a_section_with_checks():
    entries = registry.entries()
    assert list(entries) == ["sppo", "nash_md", "online_ipo", "ipo_md", "drift", "osp", "dpo"]
    assert entries["online_ipo"].section == entries["ipo_md"].section == "ipo"
    config = load_config(None, ["policy.model_path=/models/x", "preference.kind=function",
                                "preference.function=m:f", "task.prompts_path=p.jsonl"])  # the code defaults
    for section, options in registry.sections().items():  # every default within its bounds and its rules
        assert options.model_validate(getattr(config.algorithm, section).model_dump()) == options(), section


def test_a_plugin_module_is_listed_after_the_built_in_ones(fresh_registry):
    fresh_registry.setenv(registry.PLUGIN_ENV, "tests.toy_algorithm")
    assert list(registry.entries())[-1] == "best_of_k"
    assert registry.sections()["best_of_k"].__name__ == "BestOfKConfig"


@pytest.mark.parametrize("module, message", [
    ("no_such_module_here", "does not import"),
    ("tests.conftest", "declares no ENTRIES"),
    ("selfplay.learner.algorithms.dpo", "'dpo' of selfplay.learner.algorithms.dpo is already declared"),
])
def test_a_bad_plugin_is_one_line_naming_it(fresh_registry, module, message):
    fresh_registry.setenv(registry.PLUGIN_ENV, module)
    with pytest.raises(ConfigError, match=message):
        registry.entries()


def test_the_toy_algorithm_is_in_the_config_with_its_preset_and_checks():
    dry = subprocess.run([SELFPLAY, "train", "--dry-run", "algorithm.name=best_of_k"], capture_output=True,
                         text=True, env=_with_toy(), cwd=REPO, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert yaml.safe_load(dry.stdout)["algorithm"]["best_of_k"] == {"top": 2}  # the embedded preset
    assert "algorithm.best_of_k.top=2" in dry.stdout.splitlines()[0]
    bad = subprocess.run([SELFPLAY, "train", "--dry-run", "algorithm.name=best_of_k", "algorithm.best_of_k.top=0"],
                         capture_output=True, text=True, env=_with_toy(), cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "config key 'algorithm.best_of_k.top' must be >= 1" in bad.stderr, bad.stderr
    without = subprocess.run([SELFPLAY, "train", "--dry-run", "algorithm.name=best_of_k"], capture_output=True,
                             text=True, env={**_with_toy(), registry.PLUGIN_ENV: ""}, cwd=REPO, timeout=120)
    assert without.returncode == 2 and "must be one of sppo, nash_md" in without.stderr


@pytest.mark.slow
def test_the_toy_algorithm_trains_through_the_real_loop(tmp_path):
    """Ray, the rollout engines, the preference service and DeepSpeed run an algorithm they were never told of:
    the learner ranks unpickle it from its own module."""
    run = subprocess.run([SELFPLAY, "train", "algorithm.name=best_of_k", f"run.output_dir={tmp_path}",
                          "run.name=toy", "run.total_steps=30", "eval.every_steps=30", "checkpoint.every_steps=0"],
                         capture_output=True, text=True, env=_with_toy(), cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "toy" / "summary.json").read_text())
    assert summary["algorithm"] == "best_of_k" and summary["steps"] == 30
    rows = [json.loads(line) for line in (tmp_path / "toy" / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "sft_nll" in r]
    assert len(trained) == 30 and all(0 <= r["best_win_rate"] <= 1 for r in trained)
    assert summary["final_eval_score"] > summary["initial_eval_score"], summary
