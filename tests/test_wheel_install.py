"""selfplay as a user installs it: a wheel built from this checkout, installed by pip into a fresh virtual
environment outside the repository, run from a directory that holds a ``tasks.py`` and a ``preference/`` package
of its own (the generic names the six folders were once installed under).

The fresh environment gets the dependencies (torch, vLLM, Ray, DeepSpeed, ...) from the one the suite runs in,
through a site directory that holds everything of it except selfplay's own editable install: installing them
again would download gigabytes, and what is checked here is our distribution, its import name and entry points
(the console script, ``python -m`` of the reaper, vLLM's worker extension, the transports), not pip's resolver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

USER_TASKS = '''
def score(prompt, response):
    """The user's own scoring function, in a module called tasks."""
    return float(sorted(response.split()) == response.split())
'''
USER_PREFERENCE = 'raise ImportError("a user package named preference was imported in place of ours")\n'


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh environment's bin directory, a user's working directory)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    source = root / "source"  # a copy, so that the build's own build/ directory stays out of the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(source)], check=True, cwd=root)
    wheel, = dist.glob("selfplay_rlhf-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    deps = root / "deps" / "site-packages"  # the name libraries look for (dill: modules to pickle by reference)
    deps.mkdir(parents=True)
    ours = ("__editable__", "selfplay_rlhf")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(ours):
            (deps / entry.name).symlink_to(entry)
    site, = (venv / "lib").glob("python3*/site-packages")
    (site / "zz_test_dependencies.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    user = root / "user"
    (user / "preference").mkdir(parents=True)
    (user / "tasks.py").write_text(USER_TASKS)
    (user / "preference" / "__init__.py").write_text(USER_PREFERENCE)
    return venv / "bin", user


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "SELFPLAY_FAULT")}


def test_the_wheel_installs_one_import_name_and_nothing_of_the_checkout(installed):
    bin_dir, user = installed
    site = subprocess.run([str(bin_dir / "python"), "-c", "import selfplay, selfplay.orchestration.commands.cli as c; "
                           "print(selfplay.__file__); print(c.__file__)"],
                          cwd=user, env=_env(), capture_output=True, text=True, check=True).stdout.split()
    assert all("/venv/lib/" in path for path in site), site
    top_level = {p.name for p in Path(site[0]).parent.parent.iterdir()}
    assert not top_level & {"actors", "learner", "rollout", "orchestration", "preference", "tasks"}, top_level


def test_the_installed_command_trains_next_to_a_users_own_tasks_and_preference(installed):
    """``selfplay train --dry-run``, then a short run scored by the user's ``tasks:score``: the scoring
    function's directory goes first on sys.path inside the actors, where our own modules must still be found."""
    bin_dir, user = installed
    dry = subprocess.run([str(bin_dir / "selfplay"), "train", "--dry-run"], cwd=user, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert yaml.safe_load(dry.stdout)["algorithm"]["name"] == "sppo"
    run = subprocess.run([str(bin_dir / "selfplay"), "train", f"run.output_dir={user / 'runs'}", "run.name=wheel",
                          "run.total_steps=2", "eval.every_steps=0", "preference.kind=function",
                          "preference.function=tasks:score"],
                         cwd=user, env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-4000:])
    assert "done: 2 steps" in run.stdout + run.stderr
    assert (user / "runs" / "wheel" / "summary.json").exists()
