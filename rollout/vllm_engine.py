"""vLLM rollout engine: the default. The same code runs vLLM's CPU build here and its CUDA build on GPUs."""

from __future__ import annotations

import os

from rollout.engine import TokenizerMethods
from rollout.records import Completion, SamplingSpec


class VLLMEngine(TokenizerMethods):
    def __init__(self, model_path: str, dtype: str = "float32", seed: int = 0, kv_cache_gib: int = 1,
                 gpu_memory_utilization: float = 0.5, enforce_eager: bool = True,
                 max_model_len: int = 64) -> None:
        # In-process engine core: one process per rollout actor, and collective_rpc is a plain call.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        from vllm import LLM

        self._llm = LLM(model=model_path, dtype=dtype, seed=seed, enforce_eager=enforce_eager,
                        max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                        worker_extension_cls="rollout.vllm_worker_extension.SelfplayWorkerExtension")
        self._tokenizer = self._llm.get_tokenizer()
        self.policy_version = 0

    def generate(self, prompts: list[str], prompt_indices: list[int],
                 spec: SamplingSpec) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = []
        for i in range(len(prompts)):
            params.append(SamplingParams(
                n=spec.n, temperature=spec.temperature, top_p=spec.top_p, max_tokens=spec.max_tokens,
                ignore_eos=spec.ignore_eos, seed=None if spec.seed is None else spec.seed + i))
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        groups = []
        for prompt, index, out in zip(prompts, prompt_indices, outputs):
            prompt_ids = list(out.prompt_token_ids)
            group = []
            for o in out.outputs:
                ids = list(o.token_ids)
                group.append(Completion(
                    prompt_index=index, prompt=prompt, prompt_token_ids=prompt_ids,
                    response_token_ids=ids,
                    response_text=self._tokenizer.decode(ids, skip_special_tokens=True),
                    policy_version=self.policy_version, finished=o.finish_reason == "stop"))
            groups.append(group)
        return groups

    def next_token_logprobs(self, prefixes: list[str], token_ids: list[int]) -> list[list[float]]:
        """log p(token | prefix) for each prefix and each of ``token_ids`` (a judge's verdict tokens)."""
        encoded = self.tokenize(prefixes)
        rows = self.sequence_logprobs([ids + [t] for ids in encoded for t in token_ids])
        flat = [row[-1] for row in rows]
        c = len(token_ids)
        return [flat[i * c:(i + 1) * c] for i in range(len(prefixes))]

    # -- weight transport (rollout.transport) -------------------------------------------------------

    def connect_weight_transport(self, kind: str, endpoint: dict, rank: int) -> None:
        """Join the learner's transport ``kind``; the engine's worker takes rank ``rank`` (one worker: TP=1)."""
        from rollout.transport import build_receiver

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
        return digests[0]

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

