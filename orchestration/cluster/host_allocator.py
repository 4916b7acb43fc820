"""The memory allocator preloaded into the actors that compute on the CPU.

glibc's malloc maps every large block (logits, activations, optimizer temporaries) fresh and unmaps it when freed,
so each training step faults its large tensors' pages in again: ~500k minor faults, about a second of a ~66M
learner step on 2 cores. tcmalloc keeps freed blocks for reuse, as the CUDA caching allocator does on GPUs, and it is
what vLLM's CPU docs and PyTorch's CPU tuning guide recommend. Keeping glibc's blocks instead (its
``mmap_max``/``trim_threshold`` tunables) was tried and rejected: with the 64-byte aligned allocations torch makes,
its heap grew to 8x the live memory within 12 rounds of one re-allocated block.
"""

from __future__ import annotations

import ctypes.util
import os

# Debian/Ubuntu package libtcmalloc-minimal4; a bare soname so that each node's loader finds its own copy.
TCMALLOC = "libtcmalloc_minimal.so.4"


def resolve_host_allocator(setting: str) -> str | None:
    """The library to preload for ``ray.host_allocator``: ``auto`` is tcmalloc when this machine has it, else
    None (the system's malloc); ``system`` is None; anything else is a library path or soname, used as given."""
    if setting == "system":
        return None
    if setting == "auto":
        return TCMALLOC if ctypes.util.find_library("tcmalloc_minimal") else None
    return setting


def host_allocator_env(library: str | None) -> dict[str, str]:
    """The environment that preloads ``library`` into a process (after anything the driver preloads already)."""
    if library is None:
        return {}
    preload = ":".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
    # tcmalloc reports every allocation over 1 GiB on stderr (an engine's KV cache is one): only past 1 TiB.
    return {"LD_PRELOAD": preload, "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2**40)}
