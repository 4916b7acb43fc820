"""Methods injected into every vLLM worker (``worker_extension_cls``) and called through
``LLM.collective_rpc``.

They load weights in place through the worker's own ``reload_weights`` hook, so the engine keeps its KV
cache and process, and needs no restart. Names carry a ``selfplay_`` prefix: vLLM refuses an extension
whose method names clash with the worker's (it already has ``update_weights``).
"""

from __future__ import annotations

from rollout.weight_buckets import iter_bucket_tensors, weights_digest


class SelfplayWorkerExtension:
    def selfplay_load_weights(self, payloads: list[bytes]) -> str:
        """Load safetensors buckets in place; returns the digest of the tensors loaded."""
        tensors = list(iter_bucket_tensors(payloads))
        self.reload_weights(weights_iterator=iter(tensors))  # type: ignore[attr-defined]
        return weights_digest(tensors)
