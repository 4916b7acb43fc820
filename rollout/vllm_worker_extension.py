"""Methods injected into every vLLM worker (``worker_extension_cls``) and called through
``LLM.collective_rpc``.

They load weights in place through the worker's own ``reload_weights`` hook, so the engine keeps its KV
cache and process, and needs no restart. Names carry a ``selfplay_`` prefix: vLLM refuses an extension
whose method names clash with the worker's (it already has ``update_weights``).

``selfplay_receive_weights`` is one side of a collective for the broadcast transport: ``collective_rpc`` blocks
until it returns, and it returns only after the learner has sent the whole push, so the learner's send must
already be running (or be started concurrently) when the engine is asked to receive.
"""

from __future__ import annotations

from typing import Any

from selfplay.rollout.weights_digest import WeightsDigest


class SelfplayWorkerExtension:
    def selfplay_connect_weight_transport(self, kind: str, endpoint: dict, first_rank: int) -> None:
        """Join the learner's weight transport; this worker is rank ``first_rank`` + its rank in the engine."""
        from selfplay.rollout.transport import build_receiver

        previous = getattr(self, "_selfplay_receiver", None)
        if previous is not None:
            previous.close()
        receiver = build_receiver(kind)
        receiver.connect(endpoint, first_rank + int(getattr(self, "rank", 0)))
        self._selfplay_receiver = receiver

    def selfplay_receive_weights(self, version: int, fetched: Any = None, verify: bool = True) -> str:
        """Receive push ``version`` and load it in place; returns the digest of the tensors loaded (hashed as
        they stream, "" when ``verify`` is off)."""
        receiver = getattr(self, "_selfplay_receiver", None)
        if receiver is None:
            raise RuntimeError("selfplay_connect_weight_transport was not called on this worker")
        digest = WeightsDigest()
        incoming = receiver.receive(version, fetched)

        def stream():
            for name, tensor in incoming:
                if verify:
                    digest.add(name, tensor)
                yield name, tensor

        try:
            self.reload_weights(weights_iterator=stream())  # type: ignore[attr-defined]
        finally:
            incoming.close()  # if reload stopped early, finish the push (the digest then shows what loaded)
        self._selfplay_refresh_tied_head()
        return digest.hexdigest() if verify else ""

    def selfplay_load_weights(self, named_tensors, verify: bool = True) -> str:
        """Load (name, tensor) pairs handed over in this process (a colocated learner rank's parameters) in place;
        returns their digest ("" when ``verify`` is off)."""
        digest = WeightsDigest()

        def stream():
            for name, tensor in named_tensors:
                if verify:
                    digest.add(name, tensor)
                yield name, tensor

        self.reload_weights(weights_iterator=stream())  # type: ignore[attr-defined]
        self._selfplay_refresh_tied_head()
        return digest.hexdigest() if verify else ""

    def _selfplay_refresh_tied_head(self) -> None:
        """A model with tied embeddings receives no ``lm_head`` weight: it shares the embedding's tensor, which
        was updated in place. But vLLM's CPU build packs the head's weight into a oneDNN handle after loading,
        and only a layer that received weights is processed again, so the head would keep computing logits with
        the old weights. Re-running its post-load step repacks it (a no-op on GPUs)."""
        model = self.model_runner.model  # type: ignore[attr-defined]
        head = getattr(model, "lm_head", None)
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        if head is None or embed is None or getattr(head, "weight", None) is not getattr(embed, "weight", None):
            return
        method = getattr(head, "quant_method", None)
        if method is not None:
            method.process_weights_after_loading(head)

    def selfplay_close_weight_transport(self) -> None:
        receiver = getattr(self, "_selfplay_receiver", None)
        if receiver is not None:
            receiver.close()
        self._selfplay_receiver = None
