"""The learner ranks' default process group, joined through a store that rank 0 hosts on a port it was given.

Rank 0 binds its ``TCPStore`` to port 0, so the operating system picks a free port and there is no window in
which another process can take it (choosing a "free" port first and binding it later raced with other tests'
servers in CI). The other ranks connect to that store; everyone then calls ``init_process_group`` with it, and
DeepSpeed, finding the group initialised, uses it as is. The same code serves gloo on CPU and NCCL on GPUs.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch.distributed as dist

from selfplay.rollout.transport.base import resolve_backend

_TIMEOUT = timedelta(minutes=10)


def host_store(host: str, world_size: int) -> tuple[dist.TCPStore, dict]:
    """Rank 0: the store, and the endpoint ``{"host", "port"}`` the other ranks join."""
    store = dist.TCPStore(host, 0, world_size, is_master=True, wait_for_workers=False, timeout=_TIMEOUT)
    return store, {"host": host, "port": store.port}


def join_process_group(rank: int, world_size: int, endpoint: dict, backend: str,
                       store: dist.TCPStore | None = None, timeout_s: float = 600.0) -> None:
    """Every rank, concurrently (gloo and NCCL connect all ranks before any returns). ``backend``: gloo, nccl,
    or auto (``rollout.transport.resolve_backend``, resolved on this rank). ``timeout_s``: how long any collective
    of the group may wait (run.step_timeout_s)."""
    import deepspeed

    backend = resolve_backend(backend)
    if store is None:
        store = dist.TCPStore(endpoint["host"], endpoint["port"], world_size, is_master=False, timeout=_TIMEOUT)
    # One accelerator per actor (Ray sets CUDA_VISIBLE_DEVICES), so the local rank is always 0.
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0",
                       "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": endpoint["host"],
                       "MASTER_PORT": str(endpoint["port"])})
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
