"""The rollout workers as one handle: sampling in contiguous prompt shards, weight pushes, and surviving the death
of a worker.

A worker made with ``max_restarts`` that dies (its process killed, out of memory, its vLLM core gone) is restarted by
Ray: a fresh engine at the initial weights, outside the weight transport. Before it samples again the fleet waits for
it, rebuilds the transport with every worker, and loads the learner's current weights into every engine under the
current version, digest-verified; then the shard that was lost is sampled again with its own seed, so the batch
holds what an uninterrupted run would have sampled from the same weights."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import ray

from actors.actor_failures import ACTOR_FAILURES, ActorLost, get_with_restarts
from actors.preference_replicas import contiguous_shards
from actors.weight_transport import close_weight_transport, open_weight_transport, push_weights
from rollout.records import Completion, SamplingSpec


@dataclass
class TransportSpec:
    kind: str                  # sync.transport
    bucket_bytes: int
    timeout_s: float           # the collectives' timeout (run.step_timeout_s)
    workers_per_engine: int = 1
    verify: bool = True        # sync.verify_digest
    engines_local: list[bool] | None = None  # each engine on learner rank 0's node? (the mixed transport routes by it)


class RolloutFleet:
    def __init__(self, workers: list, learner, transport: TransportSpec, max_restarts: int) -> None:
        self.workers = workers
        self.learner = learner
        self.transport = transport
        self.max_restarts = max_restarts
        self.version = 0       # the policy version every engine holds
        self.restarts = 0      # worker deaths survived
        self.retries = 0       # shards sampled again after their worker died
        self._lock = threading.RLock()  # pushes and rebuilds: in async mode the producer thread samples meanwhile

    def open_transport(self) -> None:
        t = self.transport
        open_weight_transport(self.learner, self.workers, t.kind, t.bucket_bytes, timeout_s=t.timeout_s,
                              workers_per_engine=t.workers_per_engine, engines_local=t.engines_local)

    # -- sampling -----------------------------------------------------------------------------------

    def generate(self, indices: list[int], token_ids: list[list[int]], prompts: list, spec: SamplingSpec,
                 mixture_beta: float | None = None, policy_n: int = 0) -> list[list[Completion]]:
        """Contiguous shards of the prompts (token ids, and the records they were rendered from), one per worker,
        in prompt order; from the policy, or from the token-level geometric mixture with the reference when
        ``mixture_beta`` is given (each group then starting with ``policy_n`` responses from the policy, drawn in
        the same decoding loop). A shard whose worker died is sampled again once the worker is back."""
        calls = []
        for worker, shard in zip(self.workers, contiguous_shards(len(token_ids), len(self.workers))):
            # A shard's seed depends on where it starts, not on the worker: a retry samples the same way.
            shard_spec = SamplingSpec(**{**spec.__dict__,
                                         "seed": None if spec.seed is None else spec.seed + shard[0]})
            args = ([token_ids[i] for i in shard], [indices[i] for i in shard], shard_spec)
            records = [prompts[i] for i in shard]
            calls.append(lambda w=worker, a=args, r=records: w.generate.remote(*a, r) if mixture_beta is None
                         else w.generate_mixture.remote(*a, mixture_beta, r, policy_n))
        results: list = [None] * len(calls)
        pending = {i: call() for i, call in enumerate(calls)}
        for _ in range(self.max_restarts + 1):
            failed = set()
            for i, future in pending.items():
                try:
                    results[i] = ray.get(future)
                except ACTOR_FAILURES:
                    failed.add(i)
            if not failed:
                return [group for groups in results for group in groups]
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
        with self._lock:
            for _ in range(self.max_restarts + 1):
                try:
                    push = push_weights(self.learner, self.workers, version, self.transport.verify)
                    break
                except ray.exceptions.RayError as exc:
                    dead = self.dead()
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
        every worker, and (``push_after``) load the learner's weights into every engine as the current version."""
        with self._lock:
            for i in sorted(failed):
                worker = self.workers[i]
                get_with_restarts(worker.weights_state.remote(), worker.weights_state.remote, self.max_restarts,
                                  f"rollout worker {i}")
            self.restarts += len(failed)
            # The learner's side first: closing it ends any receive still waiting in a broken collective.
            for close in [*self.learner.submit("close_weight_transport"),
                          *(w.close_weight_transport.remote() for w in self.workers)]:
                try:
                    ray.get(close, timeout=self.transport.timeout_s)
                except (*ACTOR_FAILURES, ray.exceptions.RayTaskError):
                    pass
            self.open_transport()
            if push_after:
                self.push(self.version)

    def dead(self) -> set[int]:
        """Workers that do not answer within a few seconds (dead, or being restarted by Ray)."""
        dead = set()
        for i, worker in enumerate(self.workers):
            try:
                ray.get(worker.weights_state.remote(), timeout=5)
            except (*ACTOR_FAILURES, ray.exceptions.GetTimeoutError):
                dead.add(i)
        return dead

    def pids(self) -> list[int]:
        return ray.get([w.pid.remote() for w in self.workers])

    def shutdown(self) -> None:
        try:
            close_weight_transport(self.learner, self.workers)
        except Exception:  # an actor already dead: killing them is all that is left to do
            pass
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
