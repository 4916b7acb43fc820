"""Private virtual environments holding TRL, for the TRL half of the selfplay-vs-TRL benchmark.

TRL's online trainers live in ``trl.experimental`` and come and go between releases (checked on the wheels):

* ``OnlineDPOTrainer``: ``from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer``
  (in every 1.x release, through the current 1.16.0).
* ``NashMDTrainer``: ``from trl.experimental.nash_md import NashMDConfig, NashMDTrainer``; 1.13.0 is the last
  release that has it (1.14.0 dropped ``trl/experimental/nash_md``).
* Pairwise judges (``BasePairwiseJudge``, ``trl.experimental.judges``) exist only up to 1.0.0; from 1.1.0 on
  both trainers take reward functions / a reward model instead (``bench/trl_side.py`` adapts its judge).

Usage (from the repo root, any Python 3.11)::

    python -c "from bench.trl_envs import trl_python, NASH_MD_VERSION; print(trl_python(NASH_MD_VERSION))"

The first call builds ``bench/.envs/trl-<version>`` (a few minutes: torch, transformers, datasets...); later
calls return the existing venv's python at once. torch stays the CPU build 2.13.0 from /opt/wheels.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ONLINE_DPO_VERSION = "1.16.0"
NASH_MD_VERSION = "1.13.0"
TORCH_VERSION = "2.13.0"
TORCH_WHEELS = Path("/opt/wheels")
ENVS_DIR = Path(__file__).resolve().parent / ".envs"

# trl 1.13 imports requests (via its vLLM client) without declaring it; huggingface_hub 1.x no longer pulls it in.
EXTRA_PACKAGES = ["requests"]
_CHECK = ("import os; os.environ['TRL_EXPERIMENTAL_SILENCE'] = '1'; import torch, trl, trl.experimental.online_dpo; "
          "print(torch.__version__, trl.__version__)")


def _torch_requirement() -> str:
    """The local CPU wheel's path where there is one (so pip cannot pick a CUDA build), else a pin."""
    wheels = sorted(TORCH_WHEELS.glob(f"torch-{TORCH_VERSION}+cpu-*.whl"))
    return str(wheels[0]) if wheels else f"torch=={TORCH_VERSION}"


def _versions(python: Path) -> tuple[str, str] | None:
    """(torch, trl) versions importable by ``python``; None where the import fails."""
    done = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    torch_version, trl_version = done.stdout.split()[-2:]
    return torch_version, trl_version


def trl_python(version: str) -> Path:
    """Path of the python of a venv with ``trl==version`` and CPU torch 2.13.0, built on the first call."""
    env = ENVS_DIR / f"trl-{version}"
    python = env / "bin" / "python"
    if python.exists() and _versions(python) == (f"{TORCH_VERSION}+cpu", version):
        return python
    start = time.perf_counter()
    print(f"[trl_envs] creating {env} (python {sys.version.split()[0]})", flush=True)
    ENVS_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    requirements = [_torch_requirement(), f"trl=={version}", *EXTRA_PACKAGES]
    print(f"[trl_envs] pip install {' '.join(requirements)} (takes a minute or two)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--progress-bar", "off", *requirements], check=True)
    versions = _versions(python)
    if versions != (f"{TORCH_VERSION}+cpu", version):
        raise RuntimeError(f"{env}: expected torch {TORCH_VERSION}+cpu and trl {version}, found {versions}")
    print(f"[trl_envs] {env}: torch {versions[0]}, trl {versions[1]} in {time.perf_counter() - start:.0f} s",
          flush=True)
    return python


if __name__ == "__main__":
    for wanted in sys.argv[1:] or [ONLINE_DPO_VERSION, NASH_MD_VERSION]:
        print(trl_python(wanted))
