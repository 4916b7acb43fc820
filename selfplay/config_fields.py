"""The one field helper every config section uses (the run's sections in orchestration/config, each algorithm's in
its own module): a default and a one-line help."""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)
