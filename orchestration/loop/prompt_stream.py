"""An endless, seeded, epoch-shuffled stream of prompt indices whose position can be saved and restored."""

from __future__ import annotations

import random


class PromptStream:
    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError("a prompt stream needs at least one prompt")
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.cursor = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(self.size))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            if self.cursor == self.size:
                self.epoch += 1
                self.cursor = 0
                self._order = self._shuffled(self.epoch)
            out.append(self._order[self.cursor])
            self.cursor += 1
        return out

    def state(self) -> dict:
        return {"seed": self.seed, "size": self.size, "epoch": self.epoch, "cursor": self.cursor}

    @classmethod
    def from_state(cls, state: dict) -> "PromptStream":
        stream = cls(state["size"], state["seed"])
        stream.epoch = state["epoch"]
        stream.cursor = state["cursor"]
        stream._order = stream._shuffled(stream.epoch)
        return stream
