"""How a config's validation error reads: one line naming the dotted key, what the key takes in the config's words
(``expects an integer``, ``must be >= 1 or auto``, ``must be one of vllm, torch``) and what it got; pydantic's own
messages name Python's types and its locations the members of a union."""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from selfplay.config_fields import KeyProblem, Words, bounds_of, describe_bounds, members_of, takes_auto
from selfplay.errors import ConfigError

_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def takes(hint: Any) -> str:
    """What a field takes, as its error message says it: ``an integer``, ``a number or auto``."""
    members = members_of(hint)
    if len(members) > 1:
        return " or ".join("null" if m is type(None) else "auto" if typing.get_args(m) == ("auto",) else takes(m)
                           for m in members)
    hint = members[0]
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if hint == Words:
        return "a list of non-empty strings"
    if typing.get_origin(hint) is dict:  # custom Ray resources
        return "a mapping of resource names to amounts >= 0, e.g. {rollout_node: 1}"
    if hint == list[list[float]]:  # a matrix (preference.payoff)
        return "a list of rows of numbers, e.g. [[0.5, 0.1], [0.9, 0.5]]"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _value_at(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _read(error: dict, root: type[BaseModel], data: dict) -> tuple[str, str]:
    """(the dotted key, the message) of one pydantic error."""
    model: type[BaseModel] | None = root
    path: list[str] = []
    field = None
    for part in error["loc"]:
        if model is not None and part in model.model_fields:
            path.append(str(part))
            field = model.model_fields[part]
            hint = field.annotation
            model = hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None
            continue
        if error["type"] == "extra_forbidden" and model is not None:
            key = ".".join([*path, str(part)])
            return key, (f"unknown config key '{key}' (valid keys here: {', '.join(sorted(model.model_fields))})")
        break
    key = ".".join(path)
    problem = (error.get("ctx") or {}).get("error")
    if isinstance(problem, KeyProblem):
        key = ".".join([*path, problem.key])
        return key, f"config key '{key}' {problem.what}"
    if error["type"] == "value_error" or field is None:
        return key, f"config key '{key or '(top level)'}' {error['msg'].removeprefix('Value error, ')}"
    value, hint = _value_at(data, path), field.annotation
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return key, f"config key '{key}' must be a mapping, got {type(value).__name__}"
    if typing.get_origin(hint) is Literal:
        return key, f"config key '{key}' must be {takes(hint)}; got {value!r}"
    if error["type"] in _BOUND_ERRORS and typing.get_origin(hint) is not dict:
        return key, (f"config key '{key}' must be {describe_bounds(bounds_of(field))}"
                     f"{' or auto' if takes_auto(hint) else ''}")
    return key, f"config key '{key}' expects {takes(hint)}, got {value!r}"


def config_error(exc: ValidationError, root: type[BaseModel], data: dict,
                 where: typing.Callable[[str], str] = lambda key: "") -> ConfigError:
    """The first problem as one line (``where(key)`` adds where the key was set), and how many keys have one."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        key, message = _read(error, root, data)
        # a union's members each fail; a bound broken says more than the other member's type error
        if key not in found or error["type"] in _BOUND_ERRORS:
            found[key] = message
    key, message = next(iter(found.items()))
    others = [k for k in found if k != key]
    more = f" (and {len(others)} more: {', '.join(others)})" if others else ""
    return ConfigError(message + where(key) + more)
