"""Ray start-up and where each actor runs: the same code on one CPU machine and on a GPU cluster.

Every role's resources come from the config (``auto``: GPUs when the CUDA build of torch is installed where the
driver runs), never from what the cluster holds at the moment, so an autoscaling cluster that starts without GPU
nodes still sees GPU demand. All roles' placement groups are created up front (one bundle per learner rank, per
rollout engine with its tensor-parallel GPUs, per preference replica) and must be ready within
``ray.placement_timeout_s``; otherwise the run stops naming the role, its bundle and the missing resource.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray

from selfplay.orchestration.cluster.probe import check_cluster_answers
from selfplay.orchestration.cluster.reaper import start_reaper
from selfplay.orchestration.config.schema import Config, RayConfig
from selfplay.orchestration.cluster.host_allocator import host_allocator_env, resolve_host_allocator
from selfplay.orchestration.cluster.thread_budget import ROLES, machine_cores, parse_cores, thread_counts, thread_env
from selfplay.errors import SelfplayError

# Environment every actor gets: quiet engines, and DeepSpeed's CPU accelerator for actors without a GPU.
_CPU_ENV = {"DS_ACCELERATOR": "cpu"}
# vLLM warns on every in-place reload that the rotary cache has no weights to load; ERROR keeps the console
# readable (set VLLM_LOGGING_LEVEL to see more).
_COMMON_ENV = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
               "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}
FAULT_ENV = ("SELFPLAY_FAULT", "SELFPLAY_FAULT_DIR")  # orchestration/health/faults.py, rollout/transport/fault_injection.py
CORES_ENV = "SELFPLAY_CPU_CORES"  # a rollout worker's cores, comma-separated (rollout.cpu_threads_bind)
# Preference kinds that run a neural model of their own: a whole CPU, and a GPU with the CUDA build.
_MODEL_KINDS = ("reward_model", "pairwise", "judge")
# The keys a user changes to make a role fit, named in placement errors.
_ROLE_KEYS = {"learner": "learner.num_ranks, learner.num_gpus, learner.num_cpus or learner.resources",
              "rollout": "rollout.num_workers, rollout.num_gpus (rollout.vllm.tensor_parallel_size), "
                         "rollout.num_cpus or rollout.resources",
              "preference": "preference.num_replicas, preference.num_gpus or preference.num_cpus"}
_ROLE_NAMES = {"learner": "learner rank", "rollout": "rollout engine", "preference": "preference replica"}


def cluster_address(ray_config: RayConfig) -> str | None:
    """The cluster to join: ``ray.address`` (``--address``), else ``RAY_ADDRESS`` (set for a Ray job's driver
    too); None starts the in-process cluster."""
    return ray_config.address or os.environ.get("RAY_ADDRESS") or None


def start_ray(ray_config: RayConfig, plan: ClusterPlan, reaper_log: Path | None = None) -> None:
    """Join the configured cluster, or start the in-process one sized for ``plan`` (with a reaper, logging into
    ``reaper_log``: the run directory's ``reaper.log``; a temporary file when there is no run directory)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    address = plan.address
    if address:
        source = "ray.address" if ray_config.address else "RAY_ADDRESS"
        check_cluster_answers(address, source)  # ray.init would retry a silent address for minutes
        # Joining: the cluster's own resources count, so no num_cpus / object store size (Ray refuses them), and no
        # runtime_env (a job's driver would have to agree with the job's own; every actor gets its env vars).
        ray.init(address=address, logging_level="WARNING")
        return
    # Ray's daemons and the actors are this process's descendants: if it is killed outright, the reaper kills them.
    reaper = start_reaper(reaper_log or Path(tempfile.gettempdir()) / f"selfplay-reaper-{os.getpid()}.log")
    # The in-process cluster listens on this machine only; token auth protects shared clusters.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = dict(_COMMON_ENV)
    if not cuda_build():
        env.update(_CPU_ENV)
    # Ray's metrics agent serves every process's ray.util.metrics (the selfplay_* series) on this port.
    # No prestarted workers: every actor gets a worker of its own (its runtime_env sets its threads), so the ones Ray
    # prestarts for the driver would only compete with the actors' start-up for the cores.
    ray.init(num_cpus=cluster_cpus(ray_config, plan), object_store_memory=int(ray_config.object_store_gib * 2**30),
             include_dashboard=False, runtime_env={"env_vars": env}, logging_level="WARNING",
             _metrics_export_port=ray_config.metrics_export_port or None,
             _system_config={"prestart_worker_first_driver": False})
    if not reaper.running():  # checked once Ray is up: the reaper started meanwhile
        print(f"selfplay: warning: nothing will clean up after this run if its driver is killed: {reaper.problem()}",
              file=sys.stderr, flush=True)


def cluster_cpus(ray_config: RayConfig, plan: ClusterPlan) -> int:
    """The in-process cluster's CPU count (``ray.num_cpus``): auto is the machine's cores, or what the roles'
    bundles hold together if that is more (a count Ray schedules by; the threads come from ``role_threads``)."""
    if ray_config.num_cpus != "auto":
        return ray_config.num_cpus
    held = sum(r.count * r.resources.num_cpus for r in plan.roles.values())
    return max(machine_cores(), math.ceil(held))


def role_threads(config: Config, resources: dict[str, RoleResources] | None = None) -> dict[str, int | None]:
    """Threads per actor of each role: a role's ``num_threads``, or on the in-process cluster the machine's
    cores shared by when each role is busy (orchestration/cluster/thread_budget.py); None: Ray's default."""
    explicit = {role: getattr(config, role).num_threads for role in ROLES}
    auto = [role for role, threads in explicit.items() if threads == "auto"]
    if not auto:
        return explicit
    if cluster_address(config.ray):
        planned = dict.fromkeys(ROLES)
    else:
        resources = resources or {role: role_resources(config, role) for role in ROLES}
        planned = thread_counts(machine_cores(), role_counts(config),
                                {role: resources[role].num_cpus for role in ROLES}, overlap=config.mode == "async")
    return {role: planned[role] if role in auto else explicit[role] for role in ROLES}


def cuda_build() -> bool:
    """What ``auto`` GPUs mean: the CUDA build of torch is installed (where the driver runs)."""
    import torch
    return torch.version.cuda is not None


@dataclass(frozen=True)
class RoleResources:
    """What one actor of a role holds: its bundle in the role's placement group."""
    num_cpus: float
    num_gpus: float
    custom: dict = field(default_factory=dict)

    def bundle(self) -> dict[str, float]:
        out = {"CPU": float(self.num_cpus)}
        if self.num_gpus:
            out["GPU"] = float(self.num_gpus)
        return {**out, **{k: float(v) for k, v in self.custom.items()}}


def role_resources(config: Config, role: str) -> RoleResources:
    if role == "learner":
        lc = config.learner
        gpus = (1 if cuda_build() else 0) if lc.num_gpus == "auto" else lc.num_gpus
        return RoleResources(lc.num_cpus, gpus, dict(lc.resources))
    if role == "rollout":
        r = config.rollout
        per_engine = r.vllm.tensor_parallel_size if r.engine == "vllm" else 1
        gpus = (per_engine if cuda_build() else 0) if r.num_gpus == "auto" else r.num_gpus
        return RoleResources(r.num_cpus, gpus, dict(r.resources))
    if role == "preference":
        p = config.preference
        model = p.kind in _MODEL_KINDS
        cpus = (1.0 if model else 0.5) if p.num_cpus == "auto" else p.num_cpus
        gpus = (1 if model and cuda_build() else 0) if p.num_gpus == "auto" else p.num_gpus
        return RoleResources(cpus, gpus)
    raise ValueError(f"unknown role {role!r} (valid: {', '.join(ROLES)})")


def role_counts(config: Config) -> dict[str, int]:
    """Actors of each role; colocated engines live in the learner ranks' actors, so the rollout role has none."""
    return {"learner": config.learner.num_ranks, "rollout": 0 if config.rollout.colocate else config.rollout.num_workers,
            "preference": config.preference.num_replicas}


@dataclass(frozen=True)
class RolePlan:
    """One role's actors: how many, what each holds (its bundle) and computes with."""
    count: int
    resources: RoleResources
    threads: int | None  # None: Ray's default (one per CPU held)
    cpu_binds: tuple[str, ...]  # each actor's core list (rollout.cpu_threads_bind), or "auto"


@dataclass(frozen=True)
class ClusterPlan:
    """Where each role runs and with what, resolved once from the config (``plan_cluster``) and handed to Ray's
    start-up, the placement groups and each actor's options."""
    roles: dict[str, RolePlan]
    address: str | None  # the cluster to join; None: the in-process one
    host_allocator: str | None  # the library preloaded into the actors without GPUs
    placement_timeout_s: float

    @property
    def joined(self) -> bool:
        return self.address is not None

    def actor_options(self, role: str, index: int = 0) -> dict:
        """Ray options of actor ``index`` of ``role`` (no placement: ``Placement.options`` adds its bundle)."""
        r = self.roles[role]
        return actor_options(r.resources, r.cpu_binds[index], r.threads, self.host_allocator)


def plan_cluster(config: Config) -> ClusterPlan:
    """The run's ``ClusterPlan``: each role's count, resources (``auto`` resolved), threads and core binds."""
    resources = {role: role_resources(config, role) for role in ROLES}
    threads = role_threads(config, resources)
    counts = role_counts(config)
    binds = {role: ("auto",) * counts[role] for role in ROLES}
    if config.rollout.cpu_threads_bind != "auto":
        binds["rollout"] = tuple(config.rollout.cpu_threads_bind.split(";"))
    return ClusterPlan({role: RolePlan(counts[role], resources[role], threads[role], binds[role]) for role in ROLES},
                       cluster_address(config.ray), resolve_host_allocator(config.ray.host_allocator),
                       config.ray.placement_timeout_s)


def actor_options(resources: RoleResources, cpu_threads_bind: str = "auto", threads: int | None = None,
                  host_allocator: str | None = None) -> dict:
    """Ray options of one actor holding ``resources`` (its whole bundle), computing with ``threads`` (None: Ray's
    default). ``cpu_threads_bind``: a rollout worker's core list on CPU; it runs on those cores (the worker sets
    its affinity, and vLLM's multiprocess engines read ``VLLM_CPU_OMP_THREADS_BIND``), one thread each.
    ``host_allocator``: the library preloaded into an actor without GPUs (``orchestration/cluster/host_allocator.py``)."""
    env = dict(_COMMON_ENV)
    env.update(thread_env(threads))
    if not resources.num_gpus:
        env.update(_CPU_ENV)
        env.update(host_allocator_env(host_allocator))
        if cpu_threads_bind != "auto":
            cores = parse_cores(cpu_threads_bind)
            env.update(thread_env(len(cores)))
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_threads_bind
            env[CORES_ENV] = ",".join(map(str, cores))
    # Fault injection (tests): what the driver was started with reaches the actors made now.
    env.update({key: os.environ[key] for key in FAULT_ENV if key in os.environ})
    options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "runtime_env": {"env_vars": env}}
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


class Placement:
    """Every role's placement group, reserved before any actor starts."""

    def __init__(self, groups: dict, plan: ClusterPlan) -> None:
        self.groups = groups
        self.plan = plan

    def options(self, role: str, index: int) -> dict:
        """Ray options of actor ``index`` of ``role``: its resources, in its bundle."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return {**self.plan.actor_options(role, index),
                "scheduling_strategy": PlacementGroupSchedulingStrategy(
                    self.groups[role], placement_group_bundle_index=index)}

    def nodes(self, role: str) -> list[str]:
        """The node id of each bundle of ``role``."""
        from ray.util import placement_group_table

        if role not in self.groups:
            return []
        placed = placement_group_table(self.groups[role])["bundles_to_node_id"]
        return [placed[i] for i in range(len(placed))]

    def remove(self) -> None:
        from ray.util import remove_placement_group

        for group in self.groups.values():
            try:
                remove_placement_group(group)
            except Exception:  # already removed, or the cluster is gone
                pass
        self.groups = {}


def reserve(plan: ClusterPlan, name: str = "selfplay") -> Placement:
    """Create every role's placement group at once and wait until all are ready (``ray.placement_timeout_s``).
    On the in-process cluster an infeasible bundle fails at once (nothing will ever add a node); on a joined
    cluster the autoscaler may still add one, so the wait runs to the timeout. On failure every group created
    is removed and the error names the role, its bundle and the missing resource."""
    from ray.util import placement_group

    roles = plan.roles
    if not plan.joined:  # nothing will add a node: a demand beyond the machine's cluster would wait forever
        need: dict[str, float] = {}
        for r in roles.values():
            for k, v in r.resources.bundle().items():
                need[k] = need.get(k, 0.0) + v * r.count
        total = ray.cluster_resources()
        short = {k: v for k, v in need.items() if v > total.get(k, 0.0) + 1e-9}
        # A bundle that alone cannot fit is reported by its role below (Ray calls it infeasible).
        each_fits = all(v <= total.get(k, 0.0) + 1e-9 for r in roles.values() for k, v in r.resources.bundle().items())
        if short and each_fits:
            raise SelfplayError(
                f"the in-process Ray cluster has {_format({k: total.get(k, 0.0) for k in short})} in all, but "
                f"{roles['learner'].count} learner rank(s), {roles['rollout'].count} rollout engine(s) and "
                f"{roles['preference'].count} preference replica(s) need {_format(short)}: raise ray.num_cpus "
                "or lower learner.num_ranks, rollout.num_workers or preference.num_replicas")
    groups = {role: placement_group([r.resources.bundle() for _ in range(r.count)], strategy="PACK",
                                    name=f"{name}-{role}")
              for role, r in roles.items() if r.count}  # no group for a role without actors (colocated engines)
    placement = Placement(groups, plan)
    deadline = time.monotonic() + plan.placement_timeout_s
    try:
        while True:
            pending = {role: g for role, g in groups.items() if not _created(g)}
            if not pending:
                return placement
            infeasible = [role for role, g in pending.items() if _scheduling_state(g) == "INFEASIBLE"]
            if (infeasible and not plan.joined) or time.monotonic() > deadline:
                role = infeasible[0] if infeasible else next(iter(pending))
                raise SelfplayError(_placement_error(plan, role, _scheduling_state(pending[role])))
            time.sleep(0.25)
    except BaseException:
        placement.remove()
        raise


def _created(group) -> bool:
    from ray.util import placement_group_table
    return placement_group_table(group).get("state") == "CREATED"


def _scheduling_state(group) -> str:
    """Ray's own view of a pending group: INFEASIBLE (no node of the cluster can hold a bundle), NO_RESOURCES
    (one could, but its resources are in use or its node is still starting), ..."""
    from ray.util import placement_group_table
    return (placement_group_table(group).get("stats") or {}).get("scheduling_state", "UNKNOWN")


def _placement_error(plan: ClusterPlan, role: str, state: str) -> str:
    count, joined = plan.roles[role].count, plan.joined
    bundle = plan.roles[role].resources.bundle()
    what = f"{count} {_ROLE_NAMES[role]}(s) of {_format(bundle)} each"
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if state == "INFEASIBLE":
        missing = {k: v for k, v in bundle.items() if v > max((n.get(k, 0.0) for n in nodes), default=0.0)}
        largest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in missing}
        where = ("on this machine's in-process cluster (ray.num_cpus; GPUs and custom resources come from the "
                 "machine)" if not joined else
                 f"on the cluster's nodes after {plan.placement_timeout_s:g} s (check that a node type with "
                 "it exists; the autoscaler adds only the types in its config)")
        return (f"cannot place the {what}: infeasible, no node has {_format(missing) or _format(bundle)} "
                f"(the largest has {_format(largest)}) {where}; change {_ROLE_KEYS[role]}")
    free = ray.available_resources()
    short = {k: free.get(k, 0.0) for k, v in bundle.items() if v * count > free.get(k, 0.0)}
    return (f"cannot place the {what}: still pending after {plan.placement_timeout_s:g} s (Ray: {state}; "
            f"free now: {_format(short) or 'enough in total, but not on one node per bundle'}); the autoscaler may "
            f"still add nodes: raise ray.placement_timeout_s to wait longer, or change {_ROLE_KEYS[role]}")


def _format(resources: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in resources.items())
