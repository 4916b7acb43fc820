"""Ray actor around one DeepSpeed learner rank, and, colocated (rollout.colocate), around the rollout engine that
shares its process and devices: the rank samples its shard of each step's prompts with the policy it trains."""

from __future__ import annotations

import ray

from selfplay.actors.startup_gc import collector_paused
from selfplay.learner.batch import TrainingBatch
from selfplay.learner.spec import LearnerSpec


@ray.remote
class LearnerWorker:
    """One rank. Start-up is two calls so that rank 0 can host the rendezvous on a port of its own choosing:
    ``host_rendezvous`` on rank 0, then ``start`` on every rank at once (``actors.learner_group`` does both)."""

    def __init__(self, spec: LearnerSpec, model_path: str, rank: int, world_size: int,
                 sequences_per_step: int) -> None:
        self._spec, self._model_path = spec, model_path
        self._rank, self._world_size, self._sequences = rank, world_size, sequences_per_step
        self._store = None

    def host_rendezvous(self) -> dict:
        from selfplay.learner.process_group import host_store

        self._store, endpoint = host_store(ray.util.get_node_ip_address(), self._world_size)
        return endpoint

    def start(self, endpoint: dict) -> None:
        with collector_paused():
            from selfplay.learner.policy_learner import PolicyLearner
            from selfplay.learner.process_group import join_process_group

            spec = self._spec
            join_process_group(self._rank, self._world_size, endpoint, spec.backend, self._store,
                               spec.collective_timeout_s)
            self._learner = PolicyLearner(self._model_path, spec.algorithm, sequences_per_step=self._sequences,
                                          seed=spec.seed + self._rank, **spec.options)

    def pid(self) -> int:
        import os

        return os.getpid()

    def train_step(self, batch: TrainingBatch, loss_scale: float = 1.0, num_micro_batches: int | None = None
                   ) -> dict[str, float]:
        if getattr(self, "_sleep", None) is not None:
            self._sleep.before_train()  # a colocated vLLM engine gives the GPU back while the rank trains
        return self._learner.train_step(batch, loss_scale, num_micro_batches) | {
            "learner/peak_memory_gib": peak_memory_gib()}

    # -- weight transport (see actors/weight_transport.py for the calling order) ----------------------

    def open_weight_transport(self, kind: str, num_receivers: int, bucket_bytes: int,
                              timeout_s: float = 600.0, local: list[bool] | None = None) -> dict:
        """Prepare transport ``kind`` for ``num_receivers`` engines; returns the endpoint they connect with.
        Only rank 0 sends; other ranks only take part in the parameter gathers of each push."""
        from selfplay.rollout.transport import build_sender

        self.close_weight_transport()
        self._transport_open = True
        if self._rank != 0:
            return {}
        self._sender = build_sender(kind, bucket_bytes=bucket_bytes, timeout_s=timeout_s, local=local)
        return self._sender.open(num_receivers, host=ray.util.get_node_ip_address())

    def connect_weight_transport(self) -> None:
        """Join the group as rank 0: a collective with every rollout worker's ``connect_weight_transport``."""
        if getattr(self, "_sender", None) is not None:
            self._sender.connect()

    def send_weights(self, version: int, verify: bool = True):
        """Push the current policy as ``version``: a collective with every rollout worker's ``receive_weights``
        for the broadcast transport. Returns ``rollout.transport.PushStats`` (``.as_dict()`` for metrics)."""
        if not getattr(self, "_transport_open", False):
            raise RuntimeError("open_weight_transport was not called on this learner")
        if self._rank != 0:
            for _ in self._learner.full_parameters():  # ZeRO-3 gathers are collectives of every learner rank
                pass
            return None
        return self._learner.send_weights(self._sender, version, verify)

    def close_weight_transport(self) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.close()
        self._sender = None
        self._transport_open = False

    def weights_digest(self) -> str:
        return self._learner.weights_digest()

    # -- the colocated engine (actors/colocated_fleet.py) ---------------------------------------------

    def attach_engine(self, kind: str, seed: int, mixture: bool, vllm_options: dict | None = None) -> None:
        """This rank's engine. The torch engine under ZeRO 0-2 generates with the rank's own module, and the
        reference mu of the token-level mixture (``mixture``) is the rank's own frozen reference: no copy of either.
        Under ZeRO-3 the rank holds only partitions, so the engine has its own full copy, loaded from the gathered
        parameters at each push (and mu from the initial model, which is what the mixture algorithms' reference
        stays). A vLLM engine always holds its own copy, loaded in process at each push; it joins the rank's
        torch.distributed world through vLLM's external launcher, which reads the rank from the environment."""
        import os

        from selfplay.rollout.engine_sleep import EngineSleep
        from selfplay.rollout.torch_engine import TorchEngine

        learner = self._learner
        if kind == "vllm":
            from selfplay.rollout.vllm_engine import VLLMEngine

            # Ray shows each actor only its own GPUs: the local device is 0.
            os.environ.update(RANK=str(self._rank), WORLD_SIZE=str(self._world_size), LOCAL_RANK="0")
            self._engine = VLLMEngine(self._model_path, dtype=learner.dtype, seed=seed, colocated=True,
                                      **(vllm_options or {}))
        elif learner.zero_stage == 3:
            self._engine = TorchEngine(self._model_path, dtype=learner.dtype, seed=seed,
                                       reference_path=self._model_path if mixture else None)
        else:
            self._engine = TorchEngine.around(learner.engine.module, self._model_path, seed=seed,
                                              reference=learner.reference if mixture else None)
        # Only vLLM on a GPU has sleep mode; the other engines go through the same states with no call made.
        self._sleep = EngineSleep(self._engine, enabled=getattr(self._engine, "sleeps", False))
        self._engine_digest = ""

    def load_engine_weights(self, version: int, verify: bool = True) -> tuple[int, str]:
        """The push, in process: the engine takes the policy as ``version``; returns (version, digest of what it
        holds). A shared module holds the policy already: only its version moves, and the digest is of the
        rank's parameters themselves. Under ZeRO-3 every rank gathers (collectives) and loads its own engine."""
        if getattr(self._engine, "shared", False):
            self._engine.policy_version = version
            self._engine_digest = self._learner.weights_digest() if verify else ""
        else:
            self._sleep.before_load()
            self._engine_digest = self._engine.load_weights(self._learner.device_parameters(), version, verify)
        return version, self._engine_digest

    def engine_shares_weights(self) -> bool:
        """Whether every parameter the engine generates with is the learner's own storage (no second copy)."""
        if not getattr(self._engine, "shared", False):
            return False
        mine = {p.data_ptr() for p in self._learner.engine.module.parameters()}
        return all(p.data_ptr() in mine for p in self._engine._model.parameters())

    def generate(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec, prompts=None):
        self._sleep.before_generate()
        return self._engine.generate(prompt_token_ids, prompt_indices, spec, prompts)

    def generate_mixture(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec, beta: float,
                         prompts=None, policy_n: int = 0):
        self._sleep.before_generate()
        return self._engine.generate_mixture(prompt_token_ids, prompt_indices, spec, beta, prompts, policy_n)

    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        self._sleep.before_generate()
        return self._engine.next_token_logprobs(prefixes, token_ids)

    def reset_reference(self) -> None:
        self._learner.reset_reference()

    def local_parameter_counts(self) -> dict[str, int]:
        return self._learner.local_parameter_counts()

    def policy_and_reference_logprobs(self, prompts: list[list[int]], responses: list[list[int]]
                                      ) -> tuple[list[float], list[float]]:
        return self._learner.policy_and_reference_logprobs(prompts, responses)

    def save_checkpoint(self, directory: str) -> dict[str, str]:
        return self._learner.save_checkpoint(directory, self._rank)

    def load_checkpoint(self, directory: str, universal_dir: str | None = None) -> None:
        self._learner.load_checkpoint(directory, self._rank, universal_dir)

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        return self._learner.sequence_logprobs(token_ids)


def peak_memory_gib() -> float:
    """This rank's peak memory: the GPU's allocated bytes under CUDA, else the process's peak resident set."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
