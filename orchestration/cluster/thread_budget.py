"""How many threads each actor computes with, from the cores of the machine and when each role is busy.

Ray gives an actor that holds one CPU ``OMP_NUM_THREADS=1``, so on the in-process cluster the learner trained on
one thread while the other cores idled, and so did the engines (vLLM's CPU engine, in-process, computes on torch's
thread pool). Ray's CPU counts are scheduling tickets; what keeps cores busy is the threads each role runs when it
is the one working:

- **sync mode**: the phases take turns (generate, score, train, push), so the actors of the phase at work share
  every core: each gets ``cores // (actors of its role)``;
- **async mode**: the learner trains while the producer generates and scores, so the cores are split between the
  learner and the producer side in proportion to the CPUs each holds, and each side's actors share its part.

Only for the in-process cluster, whose cores we know; on a joined cluster Ray's default (one thread per CPU held)
stands unless a role's ``num_threads`` is set."""

from __future__ import annotations

import os

ROLES = ("learner", "rollout", "preference")


def machine_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_counts(cores: int, actors: dict[str, int], cpus: dict[str, float], overlap: bool) -> dict[str, int]:
    """Threads per actor of each role. ``actors``: actors of each role; ``cpus``: CPUs each of them holds;
    ``overlap``: the learner trains while rollout and preference work (async mode)."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if not overlap:
        return {role: max(1, cores // max(1, actors[role])) for role in ROLES}
    learner = actors["learner"] * cpus["learner"]
    # Generation and scoring take turns within the producer: the larger of the two is the producer's claim.
    producer = max(actors["rollout"] * cpus["rollout"], actors["preference"] * cpus["preference"])
    learner_cores = max(1, min(cores - 1, round(cores * learner / (learner + producer)))) if cores > 1 else 1
    producer_cores = max(1, cores - learner_cores)
    return {"learner": max(1, learner_cores // max(1, actors["learner"])),
            "rollout": max(1, producer_cores // max(1, actors["rollout"])),
            "preference": max(1, producer_cores // max(1, actors["preference"]))}


def parse_cores(cores: str) -> list[int]:
    """``0-3,6`` -> [0, 1, 2, 3, 6] (the core-list syntax of taskset and vLLM's ``VLLM_CPU_OMP_THREADS_BIND``)."""
    out: list[int] = []
    for part in cores.split(","):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return sorted(set(out))


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment that sets an actor's thread pools (torch reads it when it starts); none: Ray's default."""
    if threads is None:
        return {}
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
