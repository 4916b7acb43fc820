"""One YAML file plus ``key=value`` overrides -> the typed ``Config``, presets filled in under what the user set;
every error one line naming the key and where it was set (the override, or the file and line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from selfplay.errors import ConfigError
from selfplay.orchestration.config.errors import config_error
from selfplay.orchestration.config.presets import apply_presets
from selfplay.orchestration.config.schema import Config


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (["a", "b"], 3); the value is parsed as YAML so numbers and booleans keep their type."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p}{where} is not valid YAML") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    overrides = list(overrides or [])
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides)
    preset = apply_presets(data)
    config = config_from_dict(data, where=lambda key: _where_set(key, path, overrides, preset))
    config._preset_keys = preset  # --dry-run lists them; the saved config holds the values
    return config


def config_from_dict(data: dict, where=lambda key: "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, Config, data, where) from None


def _where_set(key: str, path: str | Path | None, overrides: list[str], preset: list[str]) -> str:
    """Where the bad ``key`` came from: the override that set it (or its section), the file's line, a preset."""
    for text in reversed(overrides):
        name = text.split("=", 1)[0]
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            return f" (set by the override {text})"
    line = _yaml_line(path, key) if path is not None else None
    if line is not None:
        return f" ({path}, line {line})"
    if any(entry.split("=", 1)[0] == key for entry in preset):
        return " (a preset's value: set the key yourself to change it)"
    return ""


def _yaml_line(path: str | Path, key: str) -> int | None:
    """The line of the file where ``key`` (or the deepest section of it that the file has) is written."""
    try:
        node = yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == part), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def to_dict(config: Config) -> dict:
    return config.model_dump()


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
