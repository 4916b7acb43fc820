"""Threads per actor from the machine's cores and when each role is busy; the in-process cluster's CPU count."""

import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.cluster.placement import (CORES_ENV, actor_options, cluster_cpus, plan_cluster,
                                                     role_resources, role_threads)
from selfplay.orchestration.cluster.thread_budget import parse_cores, thread_counts

ONE_EACH = {"learner": 1, "rollout": 1, "preference": 1}
CPUS = {"learner": 1.0, "rollout": 1.0, "preference": 0.5}


def test_sync_phases_take_turns_so_each_gets_every_core():
    assert thread_counts(2, ONE_EACH, CPUS, overlap=False) == {"learner": 2, "rollout": 2, "preference": 2}
    assert thread_counts(8, {"learner": 2, "rollout": 3, "preference": 1}, CPUS, overlap=False) == {
        "learner": 4, "rollout": 2, "preference": 8}
    assert thread_counts(1, {"learner": 2, "rollout": 2, "preference": 2}, CPUS, overlap=False) == {
        "learner": 1, "rollout": 1, "preference": 1}


def test_async_splits_the_cores_between_learner_and_producer_by_what_each_holds():
    # The learner holds 1 CPU, the producer max(rollout 1, preference 0.5) = 1: half each.
    assert thread_counts(2, ONE_EACH, CPUS, overlap=True) == {"learner": 1, "rollout": 1, "preference": 1}
    assert thread_counts(8, ONE_EACH, CPUS, overlap=True) == {"learner": 4, "rollout": 4, "preference": 4}
    # Two engines holding 3 CPUs together against a learner of 1: the producer gets 6 of 8 cores, 3 per engine.
    assert thread_counts(8, {"learner": 1, "rollout": 2, "preference": 1}, {**CPUS, "rollout": 1.5},
                         overlap=True) == {"learner": 2, "rollout": 3, "preference": 6}
    # Never the whole machine to one side, and never zero threads.
    assert thread_counts(4, ONE_EACH, {**CPUS, "learner": 100.0}, overlap=True)["rollout"] == 1
    assert thread_counts(1, ONE_EACH, CPUS, overlap=True) == {"learner": 1, "rollout": 1, "preference": 1}
    with pytest.raises(ValueError, match="cores"):
        thread_counts(0, ONE_EACH, CPUS, overlap=True)


def test_core_lists():
    assert parse_cores("0-3,6") == [0, 1, 2, 3, 6]
    assert parse_cores("5") == [5]
    assert parse_cores("2,1-2") == [1, 2]


def test_role_threads_follow_the_mode_and_an_explicit_setting_wins(monkeypatch):
    monkeypatch.setattr("selfplay.orchestration.cluster.placement.machine_cores", lambda: 4)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert role_threads(load_config(None, [])) == {"learner": 4, "rollout": 4, "preference": 4}
    assert role_threads(load_config(None, ["mode=async"])) == {"learner": 2, "rollout": 2, "preference": 2}
    assert role_threads(load_config(None, ["rollout.num_workers=2", "learner.num_threads=3"])) == {
        "learner": 3, "rollout": 2, "preference": 4}
    # A joined cluster's machines are not this one: Ray's default unless set.
    assert role_threads(load_config(None, ["ray.address=auto", "learner.num_threads=3"])) == {
        "learner": 3, "rollout": None, "preference": None}


def test_actor_environment_sets_the_thread_pools_and_the_bound_cores():
    config = load_config(None, [])
    env = actor_options(role_resources(config, "learner"), threads=3)["runtime_env"]["env_vars"]
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in actor_options(role_resources(config, "learner"))["runtime_env"]["env_vars"]
    env = actor_options(role_resources(config, "rollout"), "0-2,5", threads=8)["runtime_env"]["env_vars"]
    assert env["OMP_NUM_THREADS"] == "4" and env[CORES_ENV] == "0,1,2,5"


def test_the_in_process_cluster_has_the_machines_cores_or_what_the_roles_hold(monkeypatch):
    monkeypatch.setattr("selfplay.orchestration.cluster.placement.machine_cores", lambda: 2)
    def cpus(*overrides):
        config = load_config(None, list(overrides))
        return cluster_cpus(config.ray, plan_cluster(config))

    assert cpus() == 3  # learner 1 + rollout 1 + preference 0.5
    assert cpus("ray.num_cpus=6") == 6
    monkeypatch.setattr("selfplay.orchestration.cluster.placement.machine_cores", lambda: 16)
    assert cpus() == 16


def test_bad_thread_counts_name_the_key():
    from selfplay.errors import ConfigError

    with pytest.raises(ConfigError, match="learner.num_threads"):
        load_config(None, ["learner.num_threads=0"])
    with pytest.raises(ConfigError, match="ray.num_cpus"):
        load_config(None, ["ray.num_cpus=0"])


def test_the_plan_resolves_each_role_once_with_its_binds(monkeypatch):
    """What placement, the thread budget, the allocator and each actor's options read: one value."""
    monkeypatch.setattr("selfplay.orchestration.cluster.placement.machine_cores", lambda: 4)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    plan = plan_cluster(load_config(None, ["rollout.num_workers=2", "rollout.cpu_threads_bind=0-1;2-3",
                                           "ray.host_allocator=system"]))
    assert plan.address is None and plan.host_allocator is None
    assert [plan.roles[r].count for r in ("learner", "rollout", "preference")] == [1, 2, 1]
    assert plan.roles["rollout"].cpu_binds == ("0-1", "2-3") and plan.roles["learner"].cpu_binds == ("auto",)
    assert plan.actor_options("rollout", 1)["runtime_env"]["env_vars"][CORES_ENV] == "2,3"
    assert plan.roles["preference"].resources.num_cpus == 0.5 and plan.roles["learner"].threads == 4
