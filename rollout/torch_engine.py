"""torch/transformers rollout engine: the fallback behind the same interface as the vLLM engine.

On tiny models it is as fast as vLLM (per-step overhead dominates) and it needs nothing but transformers. Built
around a module it is given (``TorchEngine.around``), it is a colocated learner rank's engine: it generates with the
very parameters the rank trains, so a push loads nothing (rollout.colocate).
"""

from __future__ import annotations

import contextlib
import functools

import torch

from selfplay.rollout.chat_rendering import eos_token_ids, first_eos
from selfplay.rollout.engine import resolve_dtype
from selfplay.rollout.records import Completion, SamplingSpec
from selfplay.rollout.weights_digest import WeightsDigest

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _in_inference(method):
    """Run an engine call inside ``TorchEngine._inference`` (eval mode and a forked random state when shared)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._inference():
            return method(self, *args, **kwargs)
    return call


class TorchEngine:
    def __init__(self, model_path: str, dtype: str = "float32", seed: int = 0,
                 reference_path: str | None = None, model: torch.nn.Module | None = None,
                 reference: torch.nn.Module | None = None) -> None:
        """The policy from ``model_path`` (or ``model`` itself, shared: see ``around``); the fixed reference mu of
        the token-level mixture from ``reference_path`` (or ``reference`` itself)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if model is None \
            else next(model.parameters()).device
        self._tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._eos_ids = eos_token_ids(self._tokenizer, model_path)
        # Left padding for batched generation; tokenizers without a pad token (Llama's) pad with an EOS id,
        # which the attention mask hides.
        self._pad_id = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None \
            else (self._eos_ids[0] if self._eos_ids else 0)
        dtype = _DTYPES[resolve_dtype(dtype)]
        self.shared = model is not None  # generating with another owner's module (a learner rank's)
        self._model = model if model is not None else \
            AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self._device).eval()
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        # The fixed reference mu, for exact token-level geometric-mixture sampling (Nash-MD, IPO-MD).
        self._reference = reference
        if reference is None and reference_path:
            self._reference = AutoModelForCausalLM.from_pretrained(reference_path, dtype=dtype).to(
                self._device).eval()
        self.policy_version = 0

    @classmethod
    def around(cls, model: torch.nn.Module, model_path: str, seed: int = 0,
               reference: torch.nn.Module | None = None) -> TorchEngine:
        """An engine that generates with ``model`` itself, a learner rank's own module under ZeRO 0-2: no copy of
        the weights, and the policy it samples is exactly the one trained. ``model_path``: its tokenizer and
        generation config. Each call runs the module in eval mode (no dropout) and puts its mode back, with the
        random state forked so the owner's own random stream (dropout, its checkpointed RNG) is not consumed."""
        return cls(model_path, seed=seed, model=model, reference=reference)

    @contextlib.contextmanager
    def _inference(self):
        if not self.shared:
            yield
            return
        training = self._model.training
        devices = [self._device] if self._device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self._model.eval()
            try:
                yield
            finally:
                self._model.train(training)

    @_in_inference
    @torch.no_grad()
    def generate(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                 prompts: list | None = None) -> list[list[Completion]]:
        """``spec.n`` responses per prompt. Sampling from the whole softmax (temperature > 0, top_p 1) runs
        selfplay's own decoding loop over the KV cache, which draws each token by inverse CDF: transformers'
        ``generate`` draws with ``torch.multinomial``, 22 ms per token for 32 rows of a 32k vocabulary
        (``rollout/categorical.py``). Greedy and nucleus sampling go through ``generate``."""
        if spec.temperature > 0 and spec.top_p >= 1.0:
            return self._sample(prompt_token_ids, prompt_indices, spec, prompts)
        if spec.seed is not None:
            torch.manual_seed(spec.seed)
        width = max(len(ids) for ids in prompt_token_ids)
        input_ids = torch.tensor([[self._pad_id] * (width - len(ids)) + list(ids) for ids in prompt_token_ids],
                                 device=self._device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_token_ids],
                                 device=self._device)
        sampling = {"do_sample": True, "temperature": spec.temperature, "top_p": spec.top_p, "top_k": 0} \
            if spec.temperature > 0 else {"do_sample": False}  # temperature 0: greedy, as in vLLM
        stops = {"stop_strings": spec.stop, "tokenizer": self._tokenizer} if spec.stop and not spec.ignore_eos else {}
        out = self._model.generate(
            input_ids=input_ids, attention_mask=attention, **sampling, **stops,
            max_new_tokens=spec.max_tokens, num_return_sequences=spec.n,
            # ignore_eos: forbid EOS until max_tokens, the closest transformers has to vLLM's flag.
            min_new_tokens=spec.max_tokens if spec.ignore_eos else 0, pad_token_id=self._pad_id,
            eos_token_id=self._eos_ids or None)
        rows = out[:, width:].reshape(len(prompt_token_ids), spec.n, -1).tolist()
        return self._completions(prompt_token_ids, prompt_indices, rows, spec, prompts)

    def _sample(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                prompts: list | None) -> list[list[Completion]]:
        from selfplay.rollout.geometric_mixture import sample_policy_and_mixture_cached

        rows, _ = sample_policy_and_mixture_cached(
            self._model, None, prompt_token_ids, spec.max_tokens, 0.0, 0, spec.n, self._pad_id, spec.temperature,
            self._seeded(spec), self._device, stop_ids=self._stop_ids(spec))
        return self._completions(prompt_token_ids, prompt_indices, rows.tolist(), spec, prompts)

    def _stop_ids(self, spec: SamplingSpec) -> list[int]:
        """Where selfplay's decoding loop may stop early: once every row has drawn an EOS. With ignore_eos, as in
        vLLM, EOS may be drawn and decoding goes on past it (``generate``'s min_new_tokens, used for greedy and
        nucleus sampling, forbids EOS instead)."""
        return [] if spec.ignore_eos else list(self._eos_ids)

    def _seeded(self, spec: SamplingSpec) -> torch.Generator:
        """The request's own generator when it carries a seed, else the engine's (seeded when it was built)."""
        if spec.seed is None:
            return self._generator
        return torch.Generator(device="cpu").manual_seed(spec.seed)

    def _completions(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], rows: list[list[list[int]]],
                     spec: SamplingSpec, prompts: list | None) -> list[list[Completion]]:
        """Each prompt's group from its sampled rows (cut at the first EOS or stop string)."""
        prompts = prompts if prompts is not None else [None] * len(prompt_token_ids)
        groups = []
        for prompt, index, ids, group_rows in zip(prompts, prompt_indices, prompt_token_ids, rows):
            group = []
            for row in group_rows:
                response, reason = self._cut(row, spec)
                group.append(Completion(
                    prompt_index=index, prompt=prompt, prompt_token_ids=list(ids), response_token_ids=response,
                    response_text=self._tokenizer.decode(response, skip_special_tokens=True),
                    policy_version=self.policy_version, finish_reason=reason))
            groups.append(group)
        return groups

    def _cut(self, row: list[int], spec: SamplingSpec) -> tuple[list[int], str]:
        """The sampled response in ``row`` (generate pads finished rows) and its finish reason: through the
        first EOS id, or through the token that completes a stop string, as vLLM reports them."""
        if spec.ignore_eos:
            return row, "length"
        end = first_eos(row, self._eos_ids)
        body = row if end is None else row[:end]
        if spec.stop and any(s in self._tokenizer.decode(body) for s in spec.stop):
            for n in range(1, len(body) + 1):
                if any(s in self._tokenizer.decode(body[:n]) for s in spec.stop):
                    return body[:n], "stop"
        if end is not None:
            return row[:end + 1], "stop"
        return row, "length"

    @_in_inference
    @torch.no_grad()
    def generate_mixture(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], spec: SamplingSpec,
                         beta: float, prompts: list | None = None, policy_n: int = 0) -> list[list[Completion]]:
        """``spec.n`` responses per prompt from the token-level geometric mixture of the policy and the
        reference: softmax((1 - beta) logits_pi + beta logits_mu) at every step (temperature applied after).
        With ``policy_n``, each prompt's group starts with that many responses from the policy alone, drawn in the
        same decoding loop (``sample_policy_and_mixture_cached``)."""
        from selfplay.rollout.geometric_mixture import sample_policy_and_mixture_cached

        if self._reference is None:
            raise RuntimeError("token-level mixture sampling needs the torch engine built with a reference model")
        from_policy, from_mixture = sample_policy_and_mixture_cached(
            self._model, self._reference, prompt_token_ids, spec.max_tokens, beta, spec.n, policy_n, self._pad_id,
            spec.temperature, self._seeded(spec), self._device, stop_ids=self._stop_ids(spec))
        rows = torch.cat([from_policy, from_mixture], dim=1).tolist()
        return self._completions(prompt_token_ids, prompt_indices, rows, spec, prompts)

    @_in_inference
    @torch.no_grad()
    def next_token_logprobs(self, prefixes: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        result = []
        for ids in prefixes:
            logits = self._model(input_ids=torch.tensor([ids], device=self._device)).logits[0, -1].float()
            result.append(torch.log_softmax(logits, -1)[token_ids].tolist())
        return result

    # -- weight transport (rollout.transport) -------------------------------------------------------

    def connect_weight_transport(self, kind: str, endpoint: dict, rank: int) -> None:
        from selfplay.rollout.transport import build_receiver

        self.close_weight_transport()
        self._transport = build_receiver(kind)
        self._transport.connect(endpoint, rank)

    @torch.no_grad()
    def receive_weights(self, version: int, source=None, verify: bool = True) -> str:
        """Receive push ``version`` into the model in place, one tensor at a time; returns the digest."""
        transport = getattr(self, "_transport", None)
        if transport is None:
            raise RuntimeError("connect_weight_transport was not called on this engine")
        return self.load_weights(transport.receive(version, transport.fetch(source)), version, verify)

    @torch.no_grad()
    def load_weights(self, named_tensors, version: int, verify: bool = True) -> str:
        """Copy (name, tensor) pairs into the model in place as ``version``; returns the digest of what was loaded
        ("" without ``verify``). A colocated ZeRO-3 rank loads its gathered parameters this way."""
        targets = self._model.state_dict()
        digest, unexpected = WeightsDigest(), []
        for name, tensor in named_tensors:
            if name in targets:
                targets[name].copy_(tensor)
                if verify:
                    digest.add(name, tensor)
            else:
                unexpected.append(name)
        if unexpected:
            raise ValueError(f"weights the policy does not have: {unexpected[:5]}")
        self.policy_version = version
        return digest.hexdigest() if verify else ""

    def close_weight_transport(self) -> None:
        if getattr(self, "_transport", None) is not None:
            self._transport.close()
        self._transport = None

    @_in_inference
    @torch.no_grad()
    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        result = []
        for ids in token_ids:
            x = torch.tensor([ids], device=self._device)
            logp = torch.log_softmax(self._model(input_ids=x).logits.float(), dim=-1)
            result.append(logp[0, :-1].gather(-1, x[0, 1:, None]).squeeze(-1).tolist())
        return result
