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
    winner_p_sum: float = 0.0     # sum over groups of P(winner > loser): the in-group best and worst responses
    groups: int = 0               # groups with a finite matrix (the winner_p_sum's count)

    @classmethod
    def combined(cls, parts: list[PreferenceStats], seconds: float) -> PreferenceStats:
        """The stats of one batch answered in ``parts`` (by several replicas at once, in ``seconds``)."""
        total = cls(seconds=seconds, order_averaged=any(p.order_averaged for p in parts))
        for p in parts:
            for name in ("calls", "pairs", "ties", "asked_both_orders", "swap_disagreements", "winner_p_sum",
                         "groups"):
                setattr(total, name, getattr(total, name) + getattr(p, name))
        return total

    def count_ties(self, matrices: list[np.ndarray]) -> None:
        """Ties among the pairs, and how decisive each group is: P(winner > loser), winner and loser the
        responses with the highest and lowest win-rate in the group (the pair a best-vs-worst update trains on;
        for K = 2 the pair itself, max(p, 1 - p))."""
        for m in matrices:
            upper = m[np.triu_indices(len(m), 1)]
            self.pairs += upper.size
            self.ties += int((upper == 0.5).sum())
            if len(m) > 1 and np.all(np.isfinite(m)):
                rates = m.mean(axis=1)
                self.winner_p_sum += float(m[int(np.argmax(rates)), int(np.argmin(rates))])
                self.groups += 1

    def metrics(self) -> dict[str, float]:
        row = {"preference/calls": self.calls, "preference/seconds": self.seconds,
               "preference/ties": self.ties / self.pairs if self.pairs else 0.0,
               "preference/winner_p": self.winner_p_sum / self.groups if self.groups else float("nan")}
        if self.order_averaged:
            row["preference/swap_inconsistency"] = (self.swap_disagreements / self.asked_both_orders
                                                    if self.asked_both_orders else 0.0)
        return row
