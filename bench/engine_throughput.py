"""vLLM CPU engine vs the torch/transformers engine: generated tokens/s at batch sizes 8/64/256, on the tiny
embedded model and on a ~100M-parameter Llama-style model (random weights, built offline), side by side.

    .venv/bin/python bench/engine_throughput.py [--new-tokens 32] [--batches 8,64,256]

Each engine runs in its own Ray actor (vLLM's CPU backend pins the process's threads), through selfplay's
engine classes, sampling at temperature 1 with EOS ignored so every sequence generates the same count.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import ray


@ray.remote(num_cpus=1)
class EngineBench:
    def __init__(self, kind: str, model_dir: str, max_model_len: int) -> None:
        from selfplay.rollout.engine import build_engine
        self.model_dir = model_dir
        self.engine = build_engine(kind, model_dir, "float32", 0, {"max_model_len": max_model_len})

    def tokens_per_second(self, batch: int, new_tokens: int) -> float:
        from selfplay.rollout.records import SamplingSpec
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        prompts = [tokenizer(f"sort: {' '.join('abcdefghijklmnop'[(i + j) % 16] for j in range(6))}").input_ids
                   for i in range(batch)]
        spec = SamplingSpec(n=1, temperature=1.0, max_tokens=new_tokens, ignore_eos=True, seed=0)
        self.engine.generate(prompts[:2], [0, 1], spec)  # warm-up
        start = time.perf_counter()
        groups = self.engine.generate(prompts, list(range(batch)), spec)
        seconds = time.perf_counter() - start
        return sum(len(g[0].response_token_ids) for g in groups) / seconds


def build_models(root: str) -> dict[str, str]:
    from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir
    tiny = build_tiny_model_dir(os.path.join(root, "tiny"))
    # ~100M parameters: the tiny tokenizer with a 32k-row embedding (ids beyond the tokenizer are never sampled
    # often enough to matter for timing; they decode to nothing).
    spec = TinyModelSpec(hidden_size=768, intermediate_size=3072, num_layers=12, num_heads=12, head_dim=64,
                         max_positions=128)
    big = build_tiny_model_dir(os.path.join(root, "m100"), spec, vocab_size=32000)
    return {"tiny": (str(tiny), 64), "~100M": (str(big), 128)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batches", default="8,64,256")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"VLLM_LOGGING_LEVEL": "ERROR"}})
    with tempfile.TemporaryDirectory() as root:
        models = build_models(root)
        print(f"{'model':8} {'batch':>5} {'vllm tok/s':>11} {'torch tok/s':>12} {'vllm/torch':>10}")
        for name, (path, max_len) in models.items():
            results = {}
            for kind in ("vllm", "torch"):
                actor = EngineBench.remote(kind, path, max_len)
                results[kind] = [ray.get(actor.tokens_per_second.remote(b, args.new_tokens)) for b in batches]
                ray.kill(actor)
            for b, v, t in zip(batches, results["vllm"], results["torch"]):
                print(f"{name:8} {b:>5} {v:>11.0f} {t:>12.0f} {v / t:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
