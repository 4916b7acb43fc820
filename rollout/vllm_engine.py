"""vLLM rollout engine: the default. The same code runs vLLM's CPU build here and its CUDA build on GPUs.

Colocated (rollout.colocate), the engine lives in a learner rank's process: built with vLLM's
``external_launcher`` executor it joins the torch.distributed world DeepSpeed already made (as TRL's colocate
mode does), loads the rank's weights in process through the worker's ``reload_weights`` hook, and on GPUs sleeps
while the rank trains (``rollout/engine_sleep.py``)."""

from __future__ import annotations

import os

from selfplay.rollout.chat_rendering import eos_token_ids
from selfplay.rollout.engine import resolve_dtype
from selfplay.rollout.records import Completion, SamplingSpec


class VLLMEngine:
    def __init__(self, model_path: str, dtype: str = "float32", seed: int = 0, kv_cache_gib: int = 1,
                 gpu_memory_utilization: float = 0.5, enforce_eager: bool = True, max_model_len: int = 64,
                 tensor_parallel_size: int = 1, enable_prefix_caching: bool = True, log_stats: bool = False,
                 colocated: bool = False) -> None:
        # In-process engine core: one process per rollout actor, and collective_rpc is a plain call.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        import gc

        import torch
        from vllm import LLM

        # vLLM's start-up calls gc.collect() five times, each over every object its imports made (1.3 s on 2 cores);
        # frozen, they are not scanned again (actors/startup_gc.py).
        gc.freeze()
        # max_model_len 0: vLLM's own default, the model's context (the run passes the length it needs).
        # vLLM's CPU build crashes when a seeded request's prefill is split across steps (its model runner
        # rewinds the request's generator, which CPU generators do not allow), so prefills are never chunked
        # there: each prompt is scheduled whole.
        cpu_only = {} if torch.cuda.is_available() else {"enable_chunked_prefill": False}
        # Colocated: the learner rank's torch.distributed world is vLLM's (one engine per rank, data parallel);
        # sleep mode frees the GPU for training (vLLM's CPU build has none).
        self.sleeps = colocated and torch.cuda.is_available()
        placement = {"distributed_executor_backend": "external_launcher", "enable_sleep_mode": self.sleeps} \
            if colocated else {}
        self._llm = LLM(model=model_path, dtype=resolve_dtype(dtype), seed=seed, enforce_eager=enforce_eager,
                        max_model_len=max_model_len or None, gpu_memory_utilization=gpu_memory_utilization,
                        tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=enable_prefix_caching,
                        worker_extension_cls="selfplay.rollout.vllm_worker_extension.SelfplayWorkerExtension",
                        disable_log_stats=not log_stats, **cpu_only, **placement)
        self._tokenizer = self._llm.get_tokenizer()
        self._eos_ids = eos_token_ids(self._tokenizer, model_path)
        self.policy_version = 0

    @property
    def max_model_len(self) -> int:
        """The longest sequence (prompt and response) the engine takes."""
        return self._llm.model_config.max_model_len

    def stats(self) -> dict[str, float]:
        """vLLM's own statistics (``LLM.get_metrics()``: requests running and waiting, KV-cache use, prompt and
        generated tokens so far), each summed over its label sets; empty unless built with ``log_stats``."""
        if not self._llm.llm_engine.log_stats:
            return {}
        out: dict[str, float] = {}
        for metric in self._llm.get_metrics():
            value = getattr(metric, "value", None)
            if isinstance(value, (int, float)):
                out[metric.name] = out.get(metric.name, 0.0) + float(value)
        return out

    def generate(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                 prompts: list | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = []
        for i in range(len(prompt_token_ids)):
            params.append(SamplingParams(
                n=spec.n, temperature=spec.temperature, top_p=spec.top_p, max_tokens=spec.max_tokens,
                ignore_eos=spec.ignore_eos, stop_token_ids=[] if spec.ignore_eos else self._eos_ids,
                stop=spec.stop or None, seed=None if spec.seed is None else spec.seed + i))
        outputs = self._llm.generate([{"prompt_token_ids": ids} for ids in prompt_token_ids], params,
                                     use_tqdm=False)
        prompts = prompts if prompts is not None else [None] * len(prompt_token_ids)
        groups = []
        for prompt, ids, index, out in zip(prompts, prompt_token_ids, prompt_indices, outputs):
            group = []
            for o in out.outputs:
                response = list(o.token_ids)
                group.append(Completion(
                    prompt_index=index, prompt=prompt, prompt_token_ids=list(ids), response_token_ids=response,
                    response_text=self._tokenizer.decode(response, skip_special_tokens=True),
                    policy_version=self.policy_version,
                    finish_reason="length" if o.finish_reason == "length" else "stop"))
            groups.append(group)
        return groups

    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        """log p(token | prefix) for each prefix (token ids) and each of ``token_ids`` (a judge's verdicts)."""
        rows = self.sequence_logprobs([list(ids) + [t] for ids in prefixes for t in token_ids])
        flat = [row[-1] for row in rows]
        c = len(token_ids)
        return [flat[i * c:(i + 1) * c] for i in range(len(prefixes))]

    # -- weight transport (rollout.transport) -------------------------------------------------------

    def connect_weight_transport(self, kind: str, endpoint: dict, rank: int) -> None:
        """Join the learner's transport ``kind``; the engine's tensor-parallel workers take ranks ``rank`` onwards."""
        from selfplay.rollout.transport import build_receiver

        self._transport = build_receiver(kind)  # host side: fetch() runs here, where Ray is reachable
        self._llm.collective_rpc("selfplay_connect_weight_transport", args=(kind, endpoint, rank))

    def receive_weights(self, version: int, source=None, verify: bool = True) -> str:
        """Receive push ``version`` in place (blocks until the learner has sent it); returns the digest."""
        transport = getattr(self, "_transport", None)
        if transport is None:
            raise RuntimeError("connect_weight_transport was not called on this engine")
        fetched = transport.fetch(source)
        digests = self._llm.collective_rpc("selfplay_receive_weights", args=(version, fetched, verify))
        self._llm.reset_prefix_cache()
        self.policy_version = version
        # Every tensor-parallel worker loaded every tensor: one digest, or the push did not arrive intact.
        return digests[0] if len(set(digests)) == 1 else f"workers disagree: {sorted(set(digests))}"

    def load_weights(self, named_tensors, version: int, verify: bool = True) -> str:
        """Load (name, tensor) pairs in place as ``version``, inside this process (a colocated rank's own
        parameters, streamed: under ZeRO-3 each is gathered only while it loads); returns the digest."""
        digests = self._llm.collective_rpc("selfplay_load_weights", args=(named_tensors, verify))
        self._llm.reset_prefix_cache()
        self.policy_version = version
        return digests[0]

    def sleep(self) -> None:
        """Free the GPU for training: weights offloaded to host memory, KV cache dropped (vLLM's level 1)."""
        self._llm.sleep(level=1)

    def wake_up(self, tags: list[str]) -> None:
        """``["weights"]`` before a load, ``["kv_cache"]`` before generating."""
        self._llm.wake_up(tags=tags)

    def close_weight_transport(self) -> None:
        if getattr(self, "_transport", None) is not None:
            self._llm.collective_rpc("selfplay_close_weight_transport")
        self._transport = None

    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self._llm.generate([{"prompt_token_ids": ids} for ids in token_ids], params,
                                     use_tqdm=False)
        result = []
        for ids, out in zip(token_ids, outputs):
            # prompt_logprobs[0] is None (no context); position t holds a dict keyed by token id.
            result.append([out.prompt_logprobs[t][ids[t]].logprob for t in range(1, len(ids))])
        return result

