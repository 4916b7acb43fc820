"""What every config section is made of (the run's sections in orchestration/config, each algorithm's in its own
module): ``Section``, a pydantic model that refuses unknown keys and keeps the types YAML gives; ``_f``, a field
with its default, one-line help and the bounds of a number (``ge``, ``gt``, ``le``, ``lt``), which pydantic checks
and ``selfplay config`` shows; ``KeyProblem``, what a section's own rules raise, naming the key."""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, model_validator

BOUNDS = ("ge", "gt", "le", "lt")
Auto = Literal["auto"]  # a number field that also takes the word auto: ``Annotated[int, Field(ge=1)] | Auto``
Words = list[Annotated[str, Field(min_length=1)]]  # a list of non-empty strings (stop strings, game strategies)
_YAML_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+")


def _f(default: Any, help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
       lt: float | None = None) -> Any:
    """A field: ``default`` (a section class: a fresh section of its defaults; a list or dict: a fresh copy)."""
    bounds = {name: value for name, value in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if value is not None}
    if isinstance(default, type) and issubclass(default, BaseModel):
        return Field(default_factory=default, description=help)
    if isinstance(default, (list, dict)):
        return Field(default_factory=lambda: _copy(default), description=help, **bounds)
    return Field(default=default, description=help, **bounds)


def _copy(value: Any) -> Any:
    return [_copy(v) for v in value] if isinstance(value, list) else \
        {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


class KeyProblem(ValueError):
    """A section's rule broken at one of its keys (named relative to the section); the loader's message names the
    key's whole dotted path (orchestration/config/errors.py)."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(f"{key} {what}")
        self.key, self.what = key, what


class Section(BaseModel):
    """A config section. Values keep the type YAML gives them (strict: ``3.0`` is not an integer, ``yes`` is not
    true), with three readings YAML needs: a number where text is expected is its text (``run.name=2024``),
    ``3e-4`` (a string to YAML 1.1) is a number, and one string where a list of strings is expected is a list of
    one (``rollout.stop=END``). Defaults are validated too, so a default outside its own bounds cannot ship."""
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _read_yaml_scalars(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic reports it: the key must be a mapping
        fields = cls.model_fields
        return {key: _as_yaml_meant(value, fields[key].annotation) if key in fields else value
                for key, value in data.items()}


def _as_yaml_meant(value: Any, hint: Any) -> Any:
    members = members_of(hint)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and str in members and not ({int, float} & set(members)):
        return str(value)
    if isinstance(value, str) and float in members and _YAML_FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, str) and Words in members:
        return [value]
    return value


def members_of(hint: Any) -> list[Any]:
    """The types a field takes, unwrapped: ``Annotated[int, ...] | Literal["auto"]`` -> [int, Literal["auto"]]."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(hint) for m in members_of(arg)]
    if typing.get_origin(hint) is Annotated:
        return members_of(typing.get_args(hint)[0])
    return [hint]


def takes_auto(hint: Any) -> bool:
    """Whether a field takes the word ``auto`` besides a number (``int | Literal["auto"]``)."""
    return any(typing.get_origin(m) is Literal and "auto" in typing.get_args(m) and len(members_of(hint)) > 1
               for m in members_of(hint))


def bounds_of(field: Any) -> dict[str, float]:
    """A field's bounds as ``{"ge": 1}``, from its ``Field(ge=...)`` or, for ``Annotated[int, Field(ge=1)] | Auto``,
    from its number's annotation."""
    metadata = list(field.metadata)
    stack = [field.annotation]
    while stack:
        hint = stack.pop()
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            stack += typing.get_args(hint)
        elif typing.get_origin(hint) is Annotated:
            for extra in typing.get_args(hint)[1:]:
                metadata += getattr(extra, "metadata", [extra])
    out = {}
    for item in metadata:
        for name, kind in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt), ("le", annotated_types.Le),
                           ("lt", annotated_types.Lt)):
            if isinstance(item, kind):
                out[name] = getattr(item, name)
    return out


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
