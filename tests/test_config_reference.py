"""The configuration reference is read from the schema: `selfplay config` lists every key the config holds, with
its bounds and help, and docs/config-reference.md is its Markdown, regenerated whenever the schema changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from selfplay.orchestration.config.reference import as_markdown, key_docs
from selfplay.orchestration.config.loading import load_config, to_dict
from tests.conftest import REPO

SELFPLAY = str(Path(sys.executable).parent / "selfplay")


def _flat(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in d.items():
        keys |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v and k not in ("resources",) else {prefix + k}
    return keys


def test_every_key_of_the_config_is_documented_with_a_help_line():
    docs = {d.key: d for d in key_docs()}
    assert set(docs) == _flat(to_dict(load_config(None, [])))
    assert all(d.help for d in docs.values()), [k for k, d in docs.items() if not d.help]
    assert docs["rollout.top_p"].kind == "float in (0, 1]"
    assert docs["learner.num_threads"].kind == "int >= 1 or auto"
    assert docs["learner.lr"].default == 5e-7 and docs["learner.lr"].preset == 1e-3  # a real model's, the tiny one's
    assert docs["algorithm.drift.beta"].preset == 0.01


def test_the_generated_page_is_current():
    """Regenerate with: .venv/bin/selfplay config --markdown > docs/config-reference.md"""
    page = (REPO / "docs" / "config-reference.md").read_text()
    assert page == as_markdown(key_docs()), "docs/config-reference.md is stale: regenerate it (see this test)"


def test_the_command_shows_one_section_and_what_a_config_resolves_to(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"rollout": {"k": 6}}))
    shown = subprocess.run([SELFPLAY, "config", "--section", "rollout", str(config), "rollout.top_p=0.9"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(line.startswith(("rollout.", "    ")) for line in lines)
    assert "rollout.k: int >= 2 = 4  -> 6" in lines and "rollout.top_p: float in (0, 1] = 1.0  -> 0.9" in lines
    bad = subprocess.run([SELFPLAY, "config", "--section", "rolout"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown config section 'rolout'" in bad.stderr
