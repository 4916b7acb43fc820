"""The one field helper every config section uses (the run's sections in orchestration/config, each algorithm's in
its own module): a default, a one-line help, and the bounds of a number (``ge``, ``gt``, ``le``, ``lt``), which
the loader checks (``bound_problem``) and ``selfplay config`` shows."""

from __future__ import annotations

import copy
import math
from dataclasses import field
from typing import Any

BOUNDS = ("ge", "gt", "le", "lt")


def _f(default: Any, help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
       lt: float | None = None, **kw: Any) -> Any:
    bounds = {name: value for name, value in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if value is not None}
    metadata = {"help": help, "bounds": bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


def describe_bounds(bounds: dict[str, float]) -> str:
    """``{"ge": 1}`` -> ">= 1"; ``{"gt": 0, "le": 1}`` -> "in (0, 1]"; no bounds -> ""."""
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
    return ""


def bound_problem(value: Any, bounds: dict[str, float]) -> str | None:
    """What is wrong with a number outside ``bounds`` ("must be >= 1"), else None; a value that is not a number
    (``auto``, None) is the type's business, not the bounds'."""
    if not bounds or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    inside = (value >= bounds.get("ge", -math.inf) and value > bounds.get("gt", -math.inf)
              and value <= bounds.get("le", math.inf) and value < bounds.get("lt", math.inf))
    return None if inside else f"must be {describe_bounds(bounds)}"
