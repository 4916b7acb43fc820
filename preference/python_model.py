"""preference.kind=python: a preference model class of the user's, for what no built-in kind covers (an ensemble,
a judge behind an API of theirs, a model with custom pre-processing).

``preference.class_path=module:Class`` is imported like the function kind (the run's working directory first,
then installed packages) and constructed once, with no arguments, in the preference service. Its
``probabilities(prompts, first, second)`` returns P(first[i] > second[i] | prompts[i]) for every i; each
unordered pair is asked once (P(b > a) = 1 - P(a > b)). A prompt is the record as the data holds it: a string or
a chat.

An exception or a wrong number of answers rejects the whole call; a value that is not a number, NaN, or outside
[0, 1] rejects that value. Rejected values are NaN, counted and logged (preference/rejections.py), and drop their
groups; the run goes on.
"""

from __future__ import annotations

from selfplay.preference.function_model import import_callable
from selfplay.preference.rejections import Rejections


class PythonPreference:
    score_based = False

    def __init__(self, class_path: str, search_path: str | None = None) -> None:
        self.model = import_callable(class_path, search_path)()
        self.rejections = Rejections(f"class {class_path}")

    @property
    def rejected(self) -> int:
        return self.rejections.count

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        n = len(prompts)
        if not n:
            return []
        try:
            values = list(self.model.probabilities(prompts, first, second))
        except Exception as exc:  # the user's failure drops this call's groups, it never stops the run
            return [self.rejections.reject(f"raised {type(exc).__name__}: {exc}", n)] * n
        if len(values) != n:
            return [self.rejections.reject(f"returned {len(values)} probabilities for {n} pairs", n)] * n
        return [self.rejections.checked(v, probability=True) for v in values]
