"""A preference model from a Python callable of the user's: how most runs start (verifiable rewards: an answer
checker, a unit test, a format check), like TRL's reward functions and veRL's custom reward function.

``function_kind=score``: ``score(prompt, response) -> float``, each response scored once (K calls a group) and
P(a > b) = sigmoid(sharpness * (s_a - s_b)) (Bradley-Terry). ``function_kind=pairwise``:
``pairwise(prompt, a, b) -> P(a > b)`` in [0, 1], each unordered pair asked once. ``prompt`` is the record as the
data holds it: a string, or a chat (a list of {role, content} messages).

An exception, a NaN or infinite score, or a probability outside [0, 1] never stops the run: that value is
NaN, its group is dropped by the experience phase, and the reason is logged and counted
(preference/rejections.py).
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Callable

from selfplay.preference.rejections import Rejections


def import_callable(spec: str, search_path: str | None = None) -> Callable:
    """``module:callable`` (dots allowed on both sides), importable from ``search_path`` (the working
    directory of the run) or an installed package. Raises ValueError with a one-line reason."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"'{spec}' must look like module:callable (e.g. my_rewards:score)")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error while importing
        raise ValueError(f"'{spec}': module '{module_name}' does not import ({type(exc).__name__}: {exc})") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"'{spec}': module '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"'{spec}' is not callable")
    return target


def module_search_path() -> str:
    """The directory user modules are imported from: the driver's working directory, handed to the actor
    that runs the function (a Ray worker's own working directory may differ)."""
    return str(Path.cwd())


class FunctionPreference:
    def __init__(self, function: str, function_kind: str = "score", sharpness: float = 1.0,
                 search_path: str | None = None) -> None:
        self.function = import_callable(function, search_path)
        self.spec = function
        self.kind = function_kind
        self.sharpness = sharpness
        self.rejections = Rejections(f"function {function}")

    @property
    def rejected(self) -> int:
        return self.rejections.count

    def _call(self, *args) -> float:
        try:
            value = self.function(*args)
        except Exception as exc:  # a user function's failure drops one group, it never stops the run
            return self.rejections.reject(f"raised {type(exc).__name__}: {exc}")
        return self.rejections.checked(value, probability=self.kind == "pairwise")

    @property
    def score_based(self) -> bool:
        return self.kind == "score"

    def scores(self, prompts: list, responses: list[str]) -> list[float]:
        """One score per response (NaN where rejected); only for ``function_kind=score``."""
        return [self._call(x, y) for x, y in zip(prompts, responses, strict=True)]

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        if self.kind == "pairwise":
            return [self._call(x, a, b) for x, a, b in zip(prompts, first, second, strict=True)]
        return [bradley_terry(self.sharpness, sa, sb)
                for sa, sb in zip(self.scores(prompts, first), self.scores(prompts, second))]


def bradley_terry(sharpness: float, score_a: float, score_b: float) -> float:
    """sigmoid(sharpness * (s_a - s_b)); NaN when either score is NaN."""
    margin = sharpness * (score_a - score_b)
    if math.isnan(margin):
        return math.nan
    return 1.0 / (1.0 + math.exp(-margin)) if margin >= 0 else math.exp(margin) / (1.0 + math.exp(margin))
