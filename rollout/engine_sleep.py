"""When a colocated engine gives its device to the learner and takes it back (rollout.colocate on GPUs).

vLLM's sleep mode frees the GPU memory of an engine that shares it with a training rank: ``sleep(level=1)`` offloads
the weights to host memory and drops the KV cache, ``wake_up(tags=["weights"])`` brings the weights back (so that a
load has somewhere to go), ``wake_up(tags=["kv_cache"])`` the cache (so that it can generate). The order is:

    awake --before_train--> asleep --before_load--> weights --before_generate--> awake
                               \\------------------before_generate---------------/

An engine without sleep mode (the torch engine, whose weights are the learner's own; vLLM's CPU build) goes through
the same states with no call made, so one code path serves both."""

from __future__ import annotations

from typing import Any

AWAKE, ASLEEP, WEIGHTS = "awake", "asleep", "weights"  # WEIGHTS: the weights are back, the KV cache is not


class EngineSleep:
    def __init__(self, engine: Any, enabled: bool) -> None:
        self.engine = engine
        self.enabled = enabled
        self.state = AWAKE

    def before_train(self) -> None:
        if self.state != ASLEEP:
            self._call("sleep")
            self.state = ASLEEP

    def before_load(self) -> None:
        if self.state == ASLEEP:
            self._call("wake_up", ["weights"])
            self.state = WEIGHTS

    def before_generate(self) -> None:
        self.before_load()
        if self.state == WEIGHTS:
            self._call("wake_up", ["kv_cache"])
            self.state = AWAKE

    def _call(self, method: str, *args) -> None:
        if self.enabled:
            getattr(self.engine, method)(*args)
