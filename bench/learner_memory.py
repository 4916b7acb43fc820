"""Peak CPU memory of one learner step's forward and backward: full-vocabulary log-softmax vs the chunked head.

A Llama-style model with a 150,000-token vocabulary and a small hidden size (random weights from a config, no
download), a few sequences of ~200 prompt + ~800 response tokens, and the step ``PolicyLearner.train_step``
runs on each micro-batch: reference log-probs without gradients, policy log-probs, an SPPO squared loss,
backward (no optimizer step: its state is the same for every variant). Variants, side by side in one run:

    full      the old path: log_softmax over the [batch, tokens, vocab] float32 logits
    chunked   lm_head, logsumexp and the target logit on ``--chunk`` response positions at a time, each
              of several chunks recomputed in the backward pass
    chunked+gc  the same with the model's gradient checkpointing on

Each variant runs in a fresh process. What is measured: the growth of that process's peak resident set size
(Linux VmHWM, reset through /proc/self/clear_refs once the models and inputs are built) over its resident
size at that moment, so it counts everything the step allocates (activations, logits, gradients) and nothing
built before it. The variants' log-probs and gradient norms are printed too: they compute the same thing.

    python bench/learner_memory.py                     # 4 sequences, hidden 128, 2 layers, chunk 1024
    python bench/learner_memory.py --sequences 2 --chunk 512
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {"full": dict(chunk=False, gc=False), "chunked": dict(chunk=True, gc=False),
            "chunked+gc": dict(chunk=True, gc=True)}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_variant(args) -> dict:
    """One learner step in this process; its peak memory growth and what it computed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from selfplay.learner.algorithms.sppo import sppo_loss
    from selfplay.learner.logprobs import pad_sequences, response_logprobs

    torch.set_num_threads(args.threads)
    variant = VARIANTS[args.variant]
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64, head_dim=64, max_position_embeddings=2048,
                         tie_word_embeddings=False, pad_token_id=0, use_cache=False)
    torch.manual_seed(0)
    policy = LlamaForCausalLM(config).train()
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    if variant["gc"]:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    generator = torch.Generator().manual_seed(1)
    prompts, responses = [], []
    for i in range(args.sequences):  # ~200 + ~800 tokens, lengths differing a little so padding is exercised
        prompts.append(torch.randint(1, args.vocab, (args.prompt_tokens - 8 * i,), generator=generator).tolist())
        responses.append(torch.randint(1, args.vocab, (args.response_tokens + 8 * i,), generator=generator).tolist())
    ids, attention, mask = pad_sequences(prompts, responses, pad_id=0)
    p_win = torch.rand(args.sequences, generator=generator)
    chunk = args.chunk if variant["chunk"] else None

    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    start = time.perf_counter()
    with torch.no_grad():
        ref_logps = response_logprobs(reference, ids, attention, mask, "sum", chunk_tokens=chunk)
    policy_logps = response_logprobs(policy, ids, attention, mask, "sum", chunk_tokens=chunk)
    loss, _ = sppo_loss(policy_logps - ref_logps, p_win, eta=1.0)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in policy.parameters()])).item()
    return {"variant": args.variant, "peak_growth_mib": (peak - baseline) / 1024, "baseline_mib": baseline / 1024,
            "seconds": seconds, "logps": policy_logps.tolist(), "grad_norm": grad_norm,
            "tokens": int(mask.sum().item()), "params_m": sum(p.numel() for p in policy.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=150_000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--response-tokens", type=int, default=800)
    parser.add_argument("--chunk", type=int, default=1024, help="learner.logprob_chunk_tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=list(VARIANTS), help="run one variant here (the parent's child)")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return

    forwarded = sys.argv[1:]
    results = {}
    for name in VARIANTS:
        out = subprocess.run([sys.executable, __file__, *forwarded, "--variant", name], check=True,
                             capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    full = results["full"]
    print(f"one learner step (reference + policy log-probs, SPPO loss, backward), {full['params_m']:.1f}M "
          f"parameters, vocabulary {args.vocab:,}, hidden {args.hidden}, {args.layers} layers, "
          f"{args.sequences} sequences, {full['tokens']} response tokens; peak RSS growth of a fresh process "
          f"over its RSS once the models were built ({full['baseline_mib']:.0f} MiB)")
    for name, r in results.items():
        logp_diff = max(abs(a - b) for a, b in zip(r["logps"], full["logps"]))
        print(f"  {name:<11} peak +{r['peak_growth_mib']:8.0f} MiB   {r['seconds']:6.1f} s   "
              f"full/this {full['peak_growth_mib'] / r['peak_growth_mib']:5.2f}x   "
              f"|logp - full| {logp_diff:.1e}   grad norm {r['grad_norm']:.6f}")


if __name__ == "__main__":
    main()
