"""The policy learner: a DeepSpeed engine around the HF policy, a frozen reference, one algorithm's loss.

The same code runs DeepSpeed's CPU accelerator with gloo here and CUDA with NCCL on GPUs; only the
accelerator and backend differ. The reference policy is a frozen module without optimizer state. Under
ZeRO-3 it is partitioned like the policy (a DeepSpeed engine without an optimizer), so each rank holds 1/N of
it and gathers a layer at a time in the forward pass; under ZeRO 0-2 every rank keeps a whole copy, which is
what those stages do with the policy's weights too. It is refreshed from the policy when the algorithm says so.
"""

from __future__ import annotations

import math
from functools import partial
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgpack
import torch

from selfplay.learner.algorithms.base import Algorithm
from selfplay.learner.checkpoint_files import digests, engine_files_of
from selfplay.learner.sharded_safetensors import INDEX, ShardedTensors, write_sharded
from selfplay.learner.batch import TrainingBatch
from selfplay.learner.logprobs import pad_sequences, response_logprobs, token_logprobs
from selfplay.rollout.engine import resolve_dtype
from selfplay.rollout.weights_digest import WeightsDigest, weights_digest

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def deepspeed_config(micro_batch_size: int, grad_accum: int, zero_stage: int, grad_clip: float,
                     dtype: str) -> dict:
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": grad_clip,
        "zero_optimization": {
            "stage": zero_stage,
            # Tiny models: without this ZeRO-3 keeps every (small) parameter whole on every rank.
            "stage3_param_persistence_threshold": 0,
        },
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": dtype == "bfloat16"},
        "fp16": {"enabled": dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def lr_factor(schedule: str, warmup_steps: int, total_steps: int, step: int) -> float:
    """The learning rate after ``step`` optimizer steps, as a fraction of ``learner.lr``: a linear warm-up from
    1/(warmup_steps + 1), then constant, or a linear or cosine decay that reaches 0 after ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


class PolicyLearner:
    def __init__(self, model_path: str, algorithm: Algorithm, *, lr: float, weight_decay: float,
                 grad_clip: float, micro_batch_size: int, sequences_per_step: int, zero_stage: int,
                 dtype: str, reduction: str, seed: int, logprob_chunk_tokens: int = 1024,
                 gradient_checkpointing: bool = False, lr_schedule: str = "constant", warmup_steps: int = 0,
                 total_steps: int = 1) -> None:
        import deepspeed
        from deepspeed.accelerator import get_accelerator
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        dtype = resolve_dtype(dtype)  # "auto" is decided where the rank runs (bf16 on GPUs that have it)
        self.dtype = dtype
        self.algorithm = algorithm
        self.reduction = reduction
        self.zero_stage = zero_stage
        self.micro_batch_size = micro_batch_size
        self.chunk_tokens = logprob_chunk_tokens
        self.device = torch.device(get_accelerator().device_name(), get_accelerator().current_device()) \
            if get_accelerator().device_name() != "cpu" else torch.device("cpu")
        # Only DeepSpeed's bookkeeping reads this: train_step marks the accumulation boundary itself.
        expected_passes = max(1, math.ceil(sequences_per_step / micro_batch_size))
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_DTYPES[dtype])
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        # DeepSpeed steps the schedule with the optimizer and saves it in its checkpoints.
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, lr_schedule, warmup_steps, total_steps))
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(micro_batch_size, expected_passes, zero_stage, grad_clip, dtype))
        reference = AutoModelForCausalLM.from_pretrained(model_path, dtype=_DTYPES[dtype]).requires_grad_(False)
        if zero_stage == 3:
            self._reference_engine, *_ = deepspeed.initialize(
                model=reference, config=deepspeed_config(micro_batch_size, expected_passes, 3, grad_clip, dtype))
            self.reference = self._reference_engine.module.eval()  # DeepSpeed placed its partitions
        else:
            self.reference = reference.to(self.device).eval()
        self.model_path = model_path
        self.steps = 0

    # -- training -----------------------------------------------------------------------------------

    def train_step(self, batch: TrainingBatch, loss_scale: float = 1.0, num_micro_batches: int | None = None
                   ) -> dict[str, float]:
        """One optimizer step over ``batch``, in micro-batches of at most ``micro_batch_size`` sequences that
        never cut a group, each mean loss weighted by its share of the groups so that the gradient is the mean
        over the batch's groups. With several ranks this is one rank's shard: ``loss_scale`` weights it so that
        DeepSpeed's mean over ranks is the mean over the whole batch when shards differ in size, and
        ``num_micro_batches`` (the most any rank needs, see ``actors.learner_group``) pads a short shard with
        zero-weight passes, because under ZeRO-3 every forward and backward is a collective of all ranks."""
        self.engine.train()
        parts = batch.split(batch.micro_batch_count(self.micro_batch_size))
        passes = num_micro_batches or len(parts)
        if passes < len(parts):
            raise ValueError(f"{passes} micro-batches cannot hold {len(batch)} sequences in micro-batches of "
                             f"{self.micro_batch_size}")
        weights = [p.num_groups / batch.num_groups for p in parts] + [0.0] * (passes - len(parts))
        parts += [batch.groups(0, 1)] * (passes - len(parts))
        sums: dict[str, float] = {}
        norms: dict[str, float] = {}
        for i, (micro, weight) in enumerate(zip(parts, weights)):
            # One optimizer step whatever the number of passes: DeepSpeed reduces gradients and may step only
            # at the boundary, which we mark on the last pass (instead of its count of configured passes).
            self.engine.set_gradient_accumulation_boundary(i == passes - 1)
            ids, attention, mask = (t.to(self.device) for t in pad_sequences(
                micro.prompt_token_ids, micro.response_token_ids, self.pad_id))
            chunks = self._common_chunk_count(mask)
            with torch.no_grad():
                ref_logps = response_logprobs(self.reference, ids, attention, mask, self.reduction,
                                              self.chunk_tokens, chunks)
            policy_logps = response_logprobs(self.engine, ids, attention, mask, self.reduction,
                                             self.chunk_tokens, chunks)
            loss, terms = self.algorithm.loss(policy_logps, ref_logps, micro)
            # The weights already sum the passes to a mean: no division by DeepSpeed's accumulation steps.
            self.engine.backward(loss * (weight * loss_scale), scale_wrt_gas=False)
            if weight == 0.0:
                continue
            terms["kl_to_ref"] = (policy_logps - ref_logps).detach().mean().item()
            for key, value in terms.items():  # weighted means over the passes that log the term
                sums[key] = sums.get(key, 0.0) + weight * value
                norms[key] = norms.get(key, 0.0) + weight
        self.engine.step()
        self.steps += 1
        totals = {key: sums[key] / norms[key] for key in sums}
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            totals["grad_norm"] = float(grad_norm)
        totals["lr"] = float(self.engine.get_lr()[0])  # the rate of the next step
        return totals

    def _common_chunk_count(self, response_mask: torch.Tensor) -> int | None:
        """Under ZeRO-3 with several ranks, the number of head chunks every rank runs in this pass (the most any
        rank needs): each head call gathers the head's weight, a collective. Otherwise None (as many as needed)."""
        import torch.distributed as dist

        if self.zero_stage != 3 or not dist.is_initialized() or dist.get_world_size() == 1:
            return None
        count = torch.tensor([math.ceil(response_mask.sum().item() / self.chunk_tokens)], device=self.device)
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        return int(count.item())

    @torch.no_grad()
    def policy_and_reference_logprobs(self, prompts: list[list[int]], responses: list[list[int]]
                                      ) -> tuple[list[float], list[float]]:
        """Summed response log-probs under the policy and the reference (sequence-level mixture weights)."""
        self.engine.eval()
        policy, reference = [], []
        for start in range(0, len(prompts), self.micro_batch_size):
            ids, attention, mask = (t.to(self.device) for t in pad_sequences(
                prompts[start:start + self.micro_batch_size], responses[start:start + self.micro_batch_size],
                self.pad_id))
            policy += response_logprobs(self.engine, ids, attention, mask, "sum", self.chunk_tokens).tolist()
            reference += response_logprobs(self.reference, ids, attention, mask, "sum", self.chunk_tokens).tolist()
        return policy, reference

    # -- parameters ---------------------------------------------------------------------------------

    def full_parameters(self, keep: bool = True) -> Iterator[tuple[str, torch.Tensor | None]]:
        """(HF name, full tensor) one at a time; under ZeRO-3 each is gathered, then released. With ``keep``
        False this rank only takes part in the gathers and gets None, no copy."""
        import deepspeed

        for name, param in self.engine.module.named_parameters():
            if self.zero_stage == 3:
                with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                    yield name, param.detach().to("cpu").clone() if keep else None
            else:
                yield name, param.detach().to("cpu") if keep else None

    def device_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, full tensor on the learner's device) one at a time, without a copy; each tensor is valid
        only until the next is requested (under ZeRO-3 it is released when its gather ends)."""
        import deepspeed

        for name, param in self.engine.module.named_parameters():
            if self.zero_stage == 3:
                with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                    yield name, param.detach()
            else:
                yield name, param.detach()

    def send_weights(self, sender, version: int, verify: bool = True):
        """Push the full policy as ``version`` through a ``rollout.transport`` sender; returns its PushStats,
        with the digest of what was sent when ``verify`` (each tensor hashed as it goes, before the next is
        gathered). Streaming senders get on-device tensors, the others stable CPU copies."""
        digest = WeightsDigest()

        def tapped(named_tensors):
            for name, tensor in named_tensors:
                if verify:
                    digest.add(name, tensor)
                yield name, tensor

        source = iter(self.device_parameters() if sender.streaming else self.full_parameters())
        try:
            stats = sender.send(version, tapped(source))
        except BaseException:
            # An aborted push (a receiver died): the other ranks are still gathering under ZeRO-3, collectives of
            # every rank, so this rank takes its part in the rest of them before it reports the error.
            for _ in source:
                pass
            raise
        stats.digest = digest.hexdigest() if verify else ""
        return stats

    def weights_digest(self) -> str:
        return weights_digest(self.full_parameters())

    def reset_reference(self) -> None:
        """pi_ref <- current policy (a collective under ZeRO-3)."""
        with torch.no_grad():
            ref = dict(self.reference.named_parameters())
            for name, tensor in self.full_parameters():
                with self._gathered_reference(ref[name], modify=True):
                    ref[name].data.copy_(tensor.to(ref[name].device))

    def _gathered_reference(self, param: torch.nn.Parameter, modify: bool = False):
        """The whole reference parameter for the duration (ZeRO-3: gathered; with ``modify``, what rank 0
        holds at the end is partitioned back to every rank)."""
        import contextlib

        import deepspeed

        if self.zero_stage != 3:
            return contextlib.nullcontext()
        return deepspeed.zero.GatheredParameters([param], modifier_rank=0 if modify else None)

    def reference_tensors(self, keep: bool = True) -> Iterator[tuple[str, torch.Tensor | None]]:
        """(name, the reference's full parameter on the CPU) one at a time (a collective under ZeRO-3); with
        ``keep`` False this rank only takes part in the gathers and gets None, no copy."""
        for name, param in self.reference.named_parameters():
            with self._gathered_reference(param):
                yield name, param.detach().to("cpu").clone() if keep else None

    def local_parameter_counts(self) -> dict[str, int]:
        """Elements of the policy and of the reference this rank holds (ZeRO-3: its partitions)."""
        def held(module):
            return sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in module.parameters())
        return {"policy": held(self.engine.module), "reference": held(self.reference)}

    # -- checkpoints --------------------------------------------------------------------------------

    def save_checkpoint(self, directory: str, rank: int) -> dict[str, str]:
        """Engine state (model, optimizer, ZeRO shards) through DeepSpeed and each rank's RNG; on rank 0 also
        the reference policy and the full policy as Hugging Face directories (``policy/`` is what ``selfplay
        export`` copies), streamed into shards. A collective: every rank calls it (ZeRO-3 gathers each tensor for
        rank 0 to write; the other ranks keep no copy). Returns the digests of the files this rank wrote, by path
        relative to ``directory``."""
        from deepspeed.checkpoint.constants import (UNIVERSAL_CHECKPOINT_INFO, UNIVERSAL_CHECKPOINT_VERSION_KEY,
                                                    UNIVERSAL_CHECKPOINT_VERSION_VALUE)

        out = Path(directory)
        # The universal-checkpoint version is what ds_to_universal needs to reshape it for another number of ranks.
        self.engine.save_checkpoint(str(out / "engine"), tag="state", save_latest=False,
                                    client_state={UNIVERSAL_CHECKPOINT_INFO: {
                                        UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}})
        own = out / f"learner_rank{rank}.msgpack"
        own.write_bytes(msgpack.packb({"steps": self.steps,
                                       "torch_rng": bytes(torch.get_rng_state().numpy().tobytes())}))
        written = [own, *engine_files_of(rank, out / "engine")]
        if rank != 0:
            for _ in self.reference_tensors(keep=False):
                pass
            for _ in self.full_parameters(keep=False):
                pass
            return digests(out, written)
        written += [out / "reference" / f for f in write_sharded(self.reference_tensors(), out / "reference")]
        written += self.save_hf_policy(out / "policy")
        return digests(out, written)

    def load_checkpoint(self, directory: str, rank: int, universal_dir: str | None = None) -> None:
        """The state ``save_checkpoint`` wrote; ``universal_dir``: its engine state reshaped for another number
        of ranks (``learner/checkpoint_reshape.py``), loaded instead of the per-rank files."""
        path = Path(directory)
        engine_dir, tag = (Path(universal_dir).parent, Path(universal_dir).name) if universal_dir \
            else (path / "engine", "state")
        # DeepSpeed reads this flag only while loading; the engine was built before the checkpoint's layout was
        # known, so it is set for this load alone.
        self.engine._config.load_universal_checkpoint = bool(universal_dir)
        try:
            loaded, _ = self.engine.load_checkpoint(str(engine_dir), tag=tag, load_optimizer_states=True,
                                                    load_lr_scheduler_states=True)
        finally:
            self.engine._config.load_universal_checkpoint = False
        if loaded is None:
            raise RuntimeError(f"DeepSpeed could not load the engine state under {engine_dir / tag}")
        legacy = path / "reference.safetensors"  # checkpoints of earlier versions: one file
        reference = ShardedTensors([legacy]) if legacy.is_file() else ShardedTensors.in_directory(path / "reference")
        params = dict(self.reference.named_parameters())
        if reference.keys() != params.keys():
            raise RuntimeError(f"reference weights do not fit the model: missing "
                               f"{sorted(params.keys() - reference.keys())[:3]}, unexpected "
                               f"{sorted(reference.keys() - params.keys())[:3]}")
        with torch.no_grad():
            for name, param in params.items():
                with self._gathered_reference(param, modify=True):
                    param.data.copy_(reference[name].to(param.device))
        own = path / f"learner_rank{rank}.msgpack"  # a rank the checkpoint did not have takes rank 0's
        state = msgpack.unpackb((own if own.is_file() else path / "learner_rank0.msgpack").read_bytes())
        self.steps = state["steps"]
        torch.set_rng_state(torch.frombuffer(bytearray(state["torch_rng"]), dtype=torch.uint8))

    def save_hf_policy(self, out: Path) -> list[Path]:
        """The current policy as a Hugging Face model directory: config and tokenizer from the initial model,
        weights gathered from the engine one tensor at a time into safetensors shards (with an index when there
        are several, as ``save_pretrained`` writes them). Returns the files written."""
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for item in Path(self.model_path).iterdir():
            if item.is_file() and not item.name.endswith((".safetensors", ".bin", ".pt")) \
                    and item.name != INDEX:
                shutil.copy2(item, out / item.name)
                written.append(out / item.name)
        return written + [out / name for name in write_sharded(self.full_parameters(), out)]

    @torch.no_grad()
    def sequence_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """Per-token log-probs of whole sequences under the current policy (for weight fingerprints)."""
        self.engine.eval()
        result = []
        for start in range(0, len(token_ids), self.micro_batch_size):
            rows = token_ids[start:start + self.micro_batch_size]
            ids, attention, mask = (t.to(self.device) for t in pad_sequences(
                [r[:1] for r in rows], [r[1:] for r in rows], self.pad_id))
            logps = token_logprobs(self.engine, ids, attention, mask, self.chunk_tokens)
            result += [row[:len(r) - 1] for row, r in zip(logps.tolist(), rows)]
        return result
