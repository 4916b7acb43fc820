"""One token per row from softmax(logits): ``torch.multinomial`` against the inverse CDF selfplay's decoding loops use
(``rollout/categorical.py``), side by side in one run, at the batch shapes of a decode step, under the system's
malloc and under the one the CPU actors preload (``ray.host_allocator=auto``: tcmalloc where installed)::

    .venv/bin/python bench/categorical_draw.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfplay.orchestration.cluster.host_allocator import host_allocator_env, resolve_host_allocator
from selfplay.rollout.categorical import sample_categorical

SHAPES = ((32, 128), (32, 32000), (16, 152000), (64, 152000))


def per_call_ms(draw, repeats: int = 20) -> float:
    draw()
    start = time.perf_counter()
    for _ in range(repeats):
        draw()
    return (time.perf_counter() - start) / repeats * 1000


def measure() -> None:
    generator = torch.Generator().manual_seed(0)
    for rows, vocab in SHAPES:
        logits = torch.randn(rows, vocab, generator=generator) * 3
        slow = per_call_ms(lambda: torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        fast = per_call_ms(lambda: sample_categorical(logits, generator))
        print(f"{f'{rows} x {vocab}':>20}  {slow:14.2f}  {fast:14.2f}  {slow / fast:5.1f}x", flush=True)


def main() -> None:
    if "--measure" in sys.argv:
        return measure()
    allocator = resolve_host_allocator("auto")
    for label, env in (("system malloc", {}), (allocator, host_allocator_env(allocator))):
        if label is None:
            print("(no tcmalloc on this machine: the actors run with the system's malloc)")
            continue
        print(f"{label}:\n{'rows x vocabulary':>20}  {'multinomial ms':>14}  {'inverse CDF ms':>14}  ratio", flush=True)
        subprocess.run([sys.executable, __file__, "--measure"], env={**os.environ, **env}, check=True)


if __name__ == "__main__":
    main()
