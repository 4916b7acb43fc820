"""Weight transport: push the learner's weights to every rollout engine, through one interface with backends.

Backends, selected by name (``build_sender`` / ``build_receiver``):
  - ``object_store``: the same buckets as bytes through Ray's object store;
  - ``broadcast``: flat buckets broadcast over an independent torch.distributed group of learner rank 0 and
    every engine worker; gloo on CPU, NCCL on GPU, the same code;
  - ``shared_memory``: engines on the learner's node read each flat bucket from the file in /dev/shm the
    learner packed it into (the CPU sibling of CUDA IPC), with a small gloo group for control;
  - ``mixed``: shared memory to the engines on the learner's node, the broadcast to the others (what
    ``sync.transport=auto`` picks for a fleet that spans nodes, ``base.choose_transport``).
Every backend packs the same flat buckets (``rollout.transport.buckets``). Steps and their ordering contract,
and the torch.distributed backend choice (``resolve_backend``): ``rollout.transport.base``; Ray calling order:
``actors.weight_transport``.

vLLM 0.32's native weight transfer (``vllm.distributed.weight_transfer``: worker methods
``init_weight_transfer_engine`` / ``start_weight_update`` / ``update_weights`` / ``finish_weight_update``, a
trainer-side ``NCCLTrainerWeightTransferEngine`` that drives the workers itself through a Ray/HTTP client)
has the same shape as our broadcast backend on GPUs (TCPStore rendezvous, packed NCCL buckets, layerwise
reload) and could sit behind this interface there. But all its backends are CUDA-only (PyNccl, CUDA IPC, RDT),
it needs the full parameter metadata before the first byte, and the offline ``LLM`` does not expose it, so it
cannot run on the CPU build we test with. We chose our own group (gloo or NCCL objects from torch) feeding the
worker's ``reload_weights``: one code path on CPU and GPU; a ``vllm_nccl`` backend can be added to the registry.
"""

from selfplay.rollout.transport.base import (PushStats, WeightReceiver, WeightSender, build_receiver, build_sender,
                                    resolve_backend, transport_names)

__all__ = ["PushStats", "WeightReceiver", "WeightSender", "build_receiver", "build_sender", "resolve_backend",
           "transport_names"]
