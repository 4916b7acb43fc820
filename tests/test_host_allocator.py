"""The malloc preloaded into CPU actors (tcmalloc where installed) and why: it keeps freed blocks, so a training step
does not fault its large tensors' pages in again at every step."""

import ctypes.util
import subprocess
import sys

import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.cluster.host_allocator import TCMALLOC, host_allocator_env, resolve_host_allocator
from selfplay.orchestration.cluster.placement import Placement, RoleResources, actor_options, plan_cluster

# A fresh process allocates, fills and frees a 256 MiB tensor (a large logits block) three times and prints the
# minor page faults of the last round.
_REALLOCATE = """
import torch
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
for _ in range(2):
    torch.empty(2**26).fill_(1.0)
before = faults()
torch.empty(2**26).fill_(1.0)
print(faults() - before)
"""
_PAGES = 2**28 // 4096


def _last_round_faults(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", _REALLOCATE], env={"PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not ctypes.util.find_library("tcmalloc_minimal"),
                    reason="libtcmalloc-minimal4 is not installed (.ci/run installs it)")
def test_tcmalloc_reuses_a_freed_block_where_glibc_faults_it_in_again(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert _last_round_faults({}) > _PAGES // 2  # glibc: unmapped when freed, faulted in again
    assert _last_round_faults(host_allocator_env(resolve_host_allocator("auto"))) < _PAGES // 50


def test_the_setting_resolves_to_a_library_or_the_system_malloc(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libtcmalloc_minimal.so.4")
    assert resolve_host_allocator("auto") == TCMALLOC
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert resolve_host_allocator("auto") is None
    assert resolve_host_allocator("system") is None
    assert resolve_host_allocator("/opt/lib/libjemalloc.so.2") == "/opt/lib/libjemalloc.so.2"


def test_the_library_goes_before_what_the_driver_preloads(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert host_allocator_env(None) == {}
    assert host_allocator_env(TCMALLOC)["LD_PRELOAD"] == TCMALLOC
    monkeypatch.setenv("LD_PRELOAD", "/opt/libprofiler.so")
    assert host_allocator_env(TCMALLOC)["LD_PRELOAD"] == f"{TCMALLOC}:/opt/libprofiler.so"


def test_only_actors_without_gpus_get_it_and_placement_follows_the_config(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert actor_options(RoleResources(1.0, 0.0), host_allocator=TCMALLOC)["runtime_env"]["env_vars"][
        "LD_PRELOAD"] == TCMALLOC
    assert "LD_PRELOAD" not in actor_options(RoleResources(1.0, 1.0), host_allocator=TCMALLOC)["runtime_env"][
        "env_vars"]
    monkeypatch.setattr("ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy", lambda *a, **k: None)

    def placed(*overrides):
        plan = plan_cluster(load_config(None, list(overrides)))
        return Placement({role: None for role in ("learner", "rollout", "preference")}, plan)

    chosen = placed("ray.host_allocator=/bin/true").options("learner", 0)
    assert chosen["runtime_env"]["env_vars"]["LD_PRELOAD"] == "/bin/true"
    assert "LD_PRELOAD" not in placed("ray.host_allocator=system").options("learner", 0)[
        "runtime_env"]["env_vars"]


def test_a_missing_library_file_names_the_key():
    from selfplay.errors import ConfigError

    with pytest.raises(ConfigError, match="ray.host_allocator"):
        load_config(None, ["ray.host_allocator=/no/such/libtcmalloc.so"])
