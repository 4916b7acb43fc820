"""What one batch of preference matrices cost and how decisive it was: the numbers a user needs to trust a
preference model, logged by the controller every step as ``preference/*``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PreferenceStats:
    calls: int = 0                # sequences the model read: responses scored, or pairs asked (x2 for both orders)
    seconds: float = 0.0          # wall time of the batch in the service
    pairs: int = 0                # off-diagonal unordered pairs of the batch's groups
    ties: int = 0                 # of them with P exactly 1/2 (identical responses included)
    order_averaged: bool = False  # the model reads each pair in both orders (pairwise, judge)
    asked_both_orders: int = 0    # pairs it read in both orders, with a valid answer
    swap_disagreements: int = 0   # of them whose two orders disagreed on the winner

    @classmethod
    def combined(cls, parts: list[PreferenceStats], seconds: float) -> PreferenceStats:
        """The stats of one batch answered in ``parts`` (by several replicas at once, in ``seconds``)."""
        total = cls(seconds=seconds, order_averaged=any(p.order_averaged for p in parts))
        for p in parts:
            for name in ("calls", "pairs", "ties", "asked_both_orders", "swap_disagreements"):
                setattr(total, name, getattr(total, name) + getattr(p, name))
        return total

    def count_ties(self, matrices: list[np.ndarray]) -> None:
        for m in matrices:
            upper = m[np.triu_indices(len(m), 1)]
            self.pairs += upper.size
            self.ties += int((upper == 0.5).sum())

    def metrics(self) -> dict[str, float]:
        row = {"preference/calls": self.calls, "preference/seconds": self.seconds,
               "preference/ties": self.ties / self.pairs if self.pairs else 0.0}
        if self.order_averaged:
            row["preference/swap_inconsistency"] = (self.swap_disagreements / self.asked_both_orders
                                                    if self.asked_both_orders else 0.0)
        return row
