"""How to drive a weight push through the actors, for either transport (``rollout.transport``).

Ordering contract. ``connect`` and ``send``/``receive`` are collectives for the broadcast transport: the
learner's call blocks until every rollout worker's matching call is running, and each worker's call (inside
vLLM's ``collective_rpc``, which blocks) returns only once the learner has sent the whole push. So:
  1. submit the learner's call and every worker's call with ``.remote()`` *before* ``ray.get`` on any of them;
  2. never pass the learner's ObjectRef to a worker as a top-level argument (Ray would wait for it to resolve
     before starting the worker's call: a deadlock); wrap it in a list, ``[send_ref]``, which Ray passes as is;
  3. calls queued earlier on those actors (a ``generate``) delay the collective; the broadcast waits for them up
     to the transport's timeout, so push between generate calls (``RolloutFleet`` orders them).
The object store needs no such care (its send does not wait for receivers, they read the buckets through
``[send_ref]``), but the same calls in the same order work for both, so the controller has one code path.
"""

from __future__ import annotations

import time

import ray

from selfplay.rollout.transport.broadcast import abort_transport


def receiver_ranks(num_engines: int, workers_per_engine: int) -> list[int]:
    """The first transport rank of each engine: the learner's rank 0 sends, and engine i's tensor-parallel
    workers take ranks 1 + i * workers_per_engine onwards (each worker loads every tensor and keeps its shard)."""
    return [1 + i * workers_per_engine for i in range(num_engines)]


def open_weight_transport(learner, rollouts: list, kind: str, bucket_bytes: int, timeout_s: float = 600.0,
                          workers_per_engine: int = 1, engines_local: list[bool] | None = None) -> dict:
    """Once, after the actors start (and again after any of them is replaced): returns the endpoint.
    ``learner`` is an ``actors.learner_group.LearnerGroup``; its rank 0 sends, the other ranks only join the
    ZeRO-3 gathers of each push. ``workers_per_engine``: a vLLM engine's tensor-parallel size.
    ``engines_local``: whether each engine runs on learner rank 0's node (the mixed transport needs it)."""
    local = None if engines_local is None else [here for here in engines_local for _ in range(workers_per_engine)]
    endpoint = learner.call("open_weight_transport", kind, len(rollouts) * workers_per_engine, bucket_bytes,
                            timeout_s, local)
    joins = learner.submit("connect_weight_transport")
    joins += [w.connect_weight_transport.remote(kind, endpoint, rank)
              for rank, w in zip(receiver_ranks(len(rollouts), workers_per_engine), rollouts)]
    ray.get(joins)
    return endpoint


def push_weights(learner, rollouts: list, version: int, verify: bool = True, endpoint: dict | None = None,
                 settle_s: float = 60.0) -> dict:
    """One push of the learner's current weights as ``version``; returns the learner's stats (``bytes``,
    ``buckets``, ``seconds`` on the learner, ``digest`` of what it sent) plus ``wall_seconds`` and every
    worker's (version, digest of what it loaded); with ``verify`` off both digests are "".

    Every call of the push is watched, not only the learner's: the first that fails (a worker died, or its
    receive raised) aborts the push for everyone through ``endpoint``'s group (``abort_transport``), so no member
    waits out the collective timeout for a peer that is gone. The others then end within ``settle_s`` and the
    first error is raised."""
    start = time.perf_counter()
    sends = learner.submit("send_weights", version, verify)
    receives = [w.receive_weights.remote(version, [sends[0]], verify) for w in rollouts]
    pending, failure = [*sends, *receives], None
    settle_by = None
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
        for future in ready:
            try:
                ray.get(future)
            except Exception as exc:  # noqa: BLE001 - raised below, once the push has ended everywhere
                if failure is None:
                    failure = exc
                    abort_transport(endpoint)
                    settle_by = time.monotonic() + settle_s
        if failure is not None and pending and time.monotonic() > settle_by:
            break  # a member that does not end after the abort: the caller rebuilds the transport anyway
    if failure is not None:
        raise failure
    stats = ray.get(sends)[0]
    loaded = ray.get(receives)
    return {**stats.as_dict(), "wall_seconds": time.perf_counter() - start, "loaded": loaded}


def close_weight_transport(learner, rollouts: list) -> None:
    ray.get(learner.submit("close_weight_transport") + [w.close_weight_transport.remote() for w in rollouts])
