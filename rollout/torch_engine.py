"""torch/transformers rollout engine: the fallback behind the same interface as the vLLM engine.

On tiny models it is as fast as vLLM (per-step overhead dominates) and it needs nothing but transformers.
"""

from __future__ import annotations

import torch

from rollout.records import Completion, SamplingSpec, WeightBucket
from rollout.weight_buckets import unpack_bucket, weights_digest

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TorchEngine:
    def __init__(self, model_path: str, dtype: str = "float32", seed: int = 0) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._tokenizer.padding_side = "left"
        self._model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_DTYPES[dtype]).to(self._device)
        self._model.eval()
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        self.policy_version = 0

    @torch.no_grad()
    def generate(self, prompts: list[str], prompt_indices: list[int],
                 spec: SamplingSpec) -> list[list[Completion]]:
        if spec.seed is not None:
            torch.manual_seed(spec.seed)
        encoded = [self._tokenizer(p).input_ids for p in prompts]
        width = max(len(ids) for ids in encoded)
        pad = self._tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=self._device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded],
                                 device=self._device)
        eos = self._tokenizer.eos_token_id
        sampling = {"do_sample": True, "temperature": spec.temperature, "top_p": spec.top_p, "top_k": 0} \
            if spec.temperature > 0 else {"do_sample": False}  # temperature 0: greedy, as in vLLM
        out = self._model.generate(
            input_ids=input_ids, attention_mask=attention, **sampling,
            max_new_tokens=spec.max_tokens, num_return_sequences=spec.n,
            # ignore_eos: forbid EOS until max_tokens, the closest transformers has to vLLM's flag.
            min_new_tokens=spec.max_tokens if spec.ignore_eos else 0, pad_token_id=pad, eos_token_id=eos)
        groups = []
        for p, (prompt, index, ids) in enumerate(zip(prompts, prompt_indices, encoded)):
            group = []
            for row in out[p * spec.n:(p + 1) * spec.n, width:].tolist():
                finished = eos in row
                response = row[:row.index(eos) + 1] if finished else row
                group.append(Completion(
                    prompt_index=index, prompt=prompt, prompt_token_ids=ids, response_token_ids=response,
                    response_text=self._tokenizer.decode(response, skip_special_tokens=True),
                    policy_version=self.policy_version, finished=finished))
            groups.append(group)
        return groups

    @torch.no_grad()
    def load_weights(self, buckets: list[WeightBucket]) -> str:
        tensors: dict[str, torch.Tensor] = {}
        for bucket in sorted(buckets, key=lambda b: b.index):
            tensors.update(unpack_bucket(bucket))
        missing, unexpected = self._model.load_state_dict(tensors, strict=False)
        if unexpected:
            raise ValueError(f"weights the policy does not have: {unexpected[:5]}")
        self.policy_version = buckets[0].version
        return weights_digest(tensors.items())

    @torch.no_grad()
    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        result = []
        for ids in token_ids:
            x = torch.tensor([ids], device=self._device)
            logp = torch.log_softmax(self._model(input_ids=x).logits.float(), dim=-1)
            result.append(logp[0, :-1].gather(-1, x[0, 1:, None]).squeeze(-1).tolist())
        return result
