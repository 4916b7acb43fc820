"""Answers of a user's preference code that cannot be used (the function and python kinds): each becomes NaN,
so the experience phase drops its group, and is counted; the first few are printed with their reason. A bad
answer never stops the run and is never silently replaced by 1/2."""

from __future__ import annotations

import math
import sys

MAX_LOGGED_REASONS = 5  # the first few rejections are printed with their reason; all are counted


class Rejections:
    def __init__(self, source: str) -> None:
        self.source = source  # how the user's code is named in the printed line, e.g. "function my_rewards:score"
        self.count = 0
        self.reasons: list[str] = []

    def reject(self, reason: str, values: int = 1) -> float:
        """Count ``values`` rejected answers for one ``reason``; returns NaN, the value each of them becomes."""
        self.count += values
        if len(self.reasons) < MAX_LOGGED_REASONS:
            self.reasons.append(reason)
            what = "value" if values == 1 else f"{values} values"
            print(f"selfplay: preference {self.source}: {reason} ({what} rejected, its group dropped; "
                  f"{self.count} so far)", file=sys.stderr, flush=True)
        return math.nan

    def checked(self, value, probability: bool) -> float:
        """``value`` as a float, or NaN (rejected) when it is not a finite number, or, for a probability, not
        in [0, 1]."""
        try:
            number = float(value)
        except Exception:  # a string, None, a tensor of several elements: whatever the user's code returned
            return self.reject(f"returned {value!r}, not a number")
        if not math.isfinite(number):
            return self.reject(f"returned {number}")
        if probability and not 0.0 <= number <= 1.0:
            return self.reject(f"returned {number}, not a probability in [0, 1]")
        return number
