"""The rollout workers as one handle: sampling in contiguous prompt shards, weight pushes, and surviving the death
of a worker.

A worker made with ``max_restarts`` that dies (its process killed, out of memory, its vLLM core gone) is restarted by
Ray: a fresh engine at the initial weights, outside the weight transport. Before it samples again the fleet waits for
it, rebuilds the transport with every worker, and loads the learner's current weights into every engine under the
current version, digest-verified; then the shard that was lost is sampled again with its own seed, so the batch
holds what an uninterrupted run would have sampled from the same weights.

Order. A push happens between two generate calls of every engine, never behind one: each generate call (and the
OSP judge's log-probs) holds the fleet for its duration, a push or a rebuild takes it exclusively, and a push that
is waiting goes before the next generate. In ``mode=async`` the producer thread samples while the controller's
thread pushes; without this, the engine actor would run the push's receive only after its queued generate, and
the learner (every ZeRO-3 rank, inside its gathers) would wait in the collective for a whole generation. The lock
is per call rather than per batch (pausing the pipeline) so that a push waits at most one generate call, not the
scoring of a batch too.

Dead or busy is Ray's own actor state (the GCS actor table), not an answer to a queued call: a busy engine is
ALIVE; a dead one is RESTARTING or DEAD, or ALIVE with more restarts than when the transport was built. Those
restart counts also make recovery idempotent: the transport is rebuilt once per death, whoever met it first."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import ray

from selfplay.actors.actor_failures import ACTOR_FAILURES, ActorLost, get_with_restarts
from selfplay.actors.preference_replicas import contiguous_shards
from selfplay.actors.weight_transport import close_weight_transport, open_weight_transport, push_weights
from selfplay.rollout.records import Completion, SamplingSpec


@dataclass
class TransportSpec:
    kind: str                  # sync.transport
    bucket_bytes: int
    timeout_s: float           # the collectives' timeout (run.step_timeout_s)
    workers_per_engine: int = 1
    verify: bool = True        # sync.verify_digest
    engines_local: list[bool] | None = None  # each engine on learner rank 0's node? (the mixed transport routes by it)


def shard_generate_call(indices: list[int], token_ids: list[list[int]], prompts: list, spec: SamplingSpec,
                        mixture_beta: float | None, policy_n: int):
    """``call(actor, shard)``: the generate (or, with ``mixture_beta``, generate_mixture) call of one contiguous
    shard of the prompts. A shard's seed depends on where it starts, not on the actor: a retry, or another
    placement with as many engines, samples the same way."""
    def call(actor, shard):
        shard_spec = SamplingSpec(**{**spec.__dict__, "seed": None if spec.seed is None else spec.seed + shard[0]})
        args = ([token_ids[i] for i in shard], [indices[i] for i in shard], shard_spec)
        records = [prompts[i] for i in shard]
        return actor.generate.remote(*args, records) if mixture_beta is None \
            else actor.generate_mixture.remote(*args, mixture_beta, records, policy_n)
    return call


class RolloutFleet:
    def __init__(self, workers: list, learner, transport: TransportSpec, max_restarts: int) -> None:
        self.workers = workers
        self.learner = learner
        self.transport = transport
        self.max_restarts = max_restarts
        self.version = 0       # the policy version every engine holds
        self.restarts = 0      # worker deaths survived (Ray's restart counts, so each death once)
        self.retries = 0       # shards sampled again after their worker died
        self.endpoint: dict | None = None  # the open transport's (a push aborts through it)
        self._built_at = [0] * len(workers)  # each worker's Ray restart count when the transport was built
        self._lock = threading.RLock()  # held by a generate call, a push, a rebuild (see the module docstring)
        self._turn = threading.Condition()
        self._pushes_waiting = 0

    def open_transport(self) -> None:
        t = self.transport
        with self._exclusive():
            self._built_at = [restarts for _, restarts in self.states()]
            self.endpoint = open_weight_transport(
                self.learner, self.workers, t.kind, t.bucket_bytes, timeout_s=t.timeout_s,
                workers_per_engine=t.workers_per_engine, engines_local=t.engines_local)

    @contextmanager
    def _generating(self):
        """One generate call's hold on the fleet: after any push that is waiting."""
        with self._turn:
            self._turn.wait_for(lambda: self._pushes_waiting == 0 or self._lock._is_owned())
        with self._lock:
            yield

    @contextmanager
    def _exclusive(self):
        """A push's or a rebuild's hold: no generate call in flight, none started until it ends."""
        with self._turn:
            self._pushes_waiting += 1
        try:
            with self._lock:
                yield
        finally:
            with self._turn:
                self._pushes_waiting -= 1
                self._turn.notify_all()

    def states(self) -> list[tuple[str, int]]:
        """(Ray's state: ALIVE, RESTARTING, DEAD..., restarts so far) of each worker, from the GCS actor table."""
        from ray._private.state import state  # the table `ray list actors` reads, without the dashboard

        out = []
        for worker in self.workers:
            info = state.actor_table(worker._actor_id.hex()) or {}
            out.append((info.get("State", "DEAD"), int(info.get("NumRestarts", 0))))
        return out

    # -- sampling -----------------------------------------------------------------------------------

    def generate(self, indices: list[int], token_ids: list[list[int]], prompts: list, spec: SamplingSpec,
                 mixture_beta: float | None = None, policy_n: int = 0) -> list[list[Completion]]:
        """Contiguous shards of the prompts (token ids, and the records they were rendered from), one per worker,
        in prompt order; from the policy, or from the token-level geometric mixture with the reference when
        ``mixture_beta`` is given (each group then starting with ``policy_n`` responses from the policy, drawn in
        the same decoding loop). A shard whose worker died is sampled again once the worker is back."""
        with self._generating():
            return self._generate(indices, token_ids, prompts, spec, mixture_beta, policy_n)

    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        """Log-probs of ``token_ids`` after each prefix (the OSP self-judge), between pushes, sharded over the
        engines like a generate call and asked again of a worker that died."""
        with self._generating():
            return self._sharded(len(prefixes), lambda worker, shard: worker.next_token_logprobs.remote(
                [prefixes[i] for i in shard], token_ids))

    def _generate(self, indices, token_ids, prompts, spec, mixture_beta, policy_n) -> list[list[Completion]]:
        return self._sharded(len(token_ids), shard_generate_call(indices, token_ids, prompts, spec, mixture_beta,
                                                                 policy_n))

    def _sharded(self, count: int, call) -> list:
        """``call(worker, shard)`` -> a future of one result per item of the shard, for contiguous shards of
        ``count`` items, one per worker; the results in item order. A shard whose worker died is asked again
        once the worker is back (rollout.max_restarts)."""
        calls = [lambda w=worker, s=shard: call(w, s)
                 for worker, shard in zip(self.workers, contiguous_shards(count, len(self.workers)))]
        results: list = [None] * len(calls)
        pending = {i: make() for i, make in enumerate(calls)}
        for _ in range(self.max_restarts + 1):
            failed = set()
            for i, future in pending.items():
                try:
                    results[i] = ray.get(future)
                except ACTOR_FAILURES:
                    failed.add(i)
            if not failed:
                return [item for part in results for item in part]
            self.recover(failed)
            self.retries += len(failed)
            pending = {i: calls[i]() for i in sorted(failed)}
        raise ActorLost(f"rollout worker(s) {sorted(pending)} died more than rollout.max_restarts="
                        f"{self.max_restarts} times in one batch")

    # -- weights ------------------------------------------------------------------------------------

    def push(self, version: int) -> dict:
        """The learner's weights to every engine as ``version``; every engine must report that version and (with
        ``verify``) the digest of exactly what the learner sent. A worker that died during the push is waited
        for, the transport rebuilt and the push made again."""
        with self._exclusive():
            for _ in range(self.max_restarts + 1):
                try:
                    push = push_weights(self.learner, self.workers, version, self.transport.verify, self.endpoint)
                    break
                except ray.exceptions.RayError as exc:
                    dead = self.dead(wait_s=5.0)
                    if not dead:
                        raise
                    print(f"selfplay: rollout worker(s) {sorted(dead)} died during weight push {version} "
                          f"({type(exc).__name__}); rebuilding the transport", file=sys.stderr, flush=True)
                    self.recover(dead, push_after=False)
            else:
                raise ActorLost(f"rollout workers kept dying during weight push {version}")
            loaded = push.pop("loaded")
            if {v for v, _ in loaded} != {version} or (self.transport.verify
                                                          and {d for _, d in loaded} != {push["digest"]}):
                raise RuntimeError(f"weight push {version} did not arrive intact: the learner sent digest "
                                   f"{push['digest'][:12]}, the rollout workers report {loaded}")
            self.version = version
            return push

    def recover(self, failed: set[int], push_after: bool = True) -> None:
        """Workers ``failed`` died and Ray is restarting them: wait until each answers, rebuild the transport with
        every worker, and (``push_after``) load the learner's weights into every engine as the current version.
        Deaths the transport was already rebuilt for (another caller met them first) are not counted again."""
        with self._exclusive():
            for i in sorted(failed):
                worker = self.workers[i]
                get_with_restarts(worker.weights_state.remote(), worker.weights_state.remote, self.max_restarts,
                                  f"rollout worker {i}")
            now = [restarts for _, restarts in self.states()]
            new = sum(max(0, n - b) for n, b in zip(now, self._built_at))
            if new == 0:
                return  # rebuilt already, with the current weights loaded
            self.restarts += new
            # The learner's side first: closing it ends any receive still waiting in a broken collective.
            for close in [*self.learner.submit("close_weight_transport"),
                          *(w.close_weight_transport.remote() for w in self.workers)]:
                try:
                    ray.get(close, timeout=min(60.0, self.transport.timeout_s))  # an aborted push has ended
                except (*ACTOR_FAILURES, ray.exceptions.RayTaskError):
                    pass
            self.open_transport()
            if push_after:
                self.push(self.version)

    def dead(self, wait_s: float = 0.0) -> set[int]:
        """Workers that died since the transport was built, by Ray's actor state: not ALIVE (restarting, dead),
        or ALIVE again after a restart. A busy worker is ALIVE and not counted. ``wait_s``: how long to wait for
        Ray to notice a death that has just happened (a failed call can arrive before the actor table changes)."""
        deadline = time.monotonic() + wait_s
        while True:
            dead = {i for i, (state, restarts) in enumerate(self.states())
                    if state != "ALIVE" or restarts > self._built_at[i]}
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.2)

    def pids(self) -> list[int]:
        return ray.get([w.pid.remote() for w in self.workers])

    def shutdown(self) -> None:
        try:
            close_weight_transport(self.learner, self.workers)
        except Exception:  # an actor already dead: killing them is all that is left to do
            pass
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
