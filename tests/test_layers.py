"""The house's layering, checked on every import statement of the source (those inside functions too): a module
imports only from its own layer or the ones below it, siblings on one floor not from each other, and nothing
imports a bare top-level name (``tasks``, ``actors``, ...) that would load our code a second time."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"selfplay": "selfplay", "tasks": "tasks", "rollout": "rollout", "preference": "preference",
           "learner": "learner", "actors": "actors", "orchestration": "orchestration"}

# From the ground up; a tuple is a floor of siblings that must not import each other.
# "ground": the modules directly in selfplay/ (the errors, the config field helper) that every layer uses.
PACKAGE_LAYERS = ["ground", "tasks", "rollout", "preference", "learner", "actors", "orchestration"]
ROOM_LAYERS = ["config", ("cluster", "telemetry", "run"), "health", "loop", "commands"]


def _floor(layers: list, name: str) -> int:
    for n, floor in enumerate(layers):
        if name == floor or (isinstance(floor, tuple) and name in floor):
            return n
    raise AssertionError(f"{name} is in no layer of {layers}")


def _modules() -> list[tuple[str, Path]]:
    """Every source module as (its dotted selfplay name, path)."""
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join(p for p in ("selfplay", *([] if folder == "selfplay" else [folder]), *parts)
                            if p != "__init__")
            found.append((name, path))
    return found


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from selfplay.orchestration import loop` names its room in the imported name
            names += [f"{node.module}.{alias.name}" for alias in node.names] if node.module.count(".") < 2 \
                else [node.module]
    return names


def _position(module: str) -> tuple[str, str | None]:
    """(package floor, orchestration room or None) of a selfplay module name."""
    parts = module.split(".")
    package = parts[1] if parts[1] in FOLDERS else "ground"
    room = parts[2] if package == "orchestration" and len(parts) > 2 else None
    return package, room


def _violations(modules, root: Path = ROOT) -> list[str]:
    found = []
    for name, path in modules:
        here_package, here_room = _position(name) if name != "selfplay" else ("ground", None)
        for imported in _imports(path):
            head = imported.split(".")[0]
            if head in FOLDERS and head != "selfplay":
                found.append(f"{path.relative_to(root)}: bare import of {imported} (use selfplay.{imported})")
                continue
            if head != "selfplay" or imported == "selfplay":
                continue
            package, room = _position(imported)
            if package != here_package:
                if _floor(PACKAGE_LAYERS, package) > _floor(PACKAGE_LAYERS, here_package):
                    found.append(f"{path.relative_to(root)}: {here_package} imports {imported}, a higher layer")
            elif room and here_room and room != here_room and room in _rooms():
                below, above = _floor(ROOM_LAYERS, room), _floor(ROOM_LAYERS, here_room)
                if below >= above:
                    found.append(f"{path.relative_to(root)}: orchestration.{here_room} imports {imported}, "
                                 f"{'a sibling' if below == above else 'a higher room'}")
    return found


def _rooms() -> set[str]:
    return {r for floor in ROOM_LAYERS for r in (floor if isinstance(floor, tuple) else (floor,))}


def test_every_import_keeps_to_the_layers():
    assert _violations(_modules()) == []


def test_every_orchestration_room_is_in_a_layer_and_none_is_crowded():
    rooms = {p.name for p in (ROOT / "orchestration").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == _rooms()
    assert [p.name for p in (ROOT / "orchestration").glob("*.py")] == ["__init__.py"]
    for room in rooms:
        assert len(list((ROOT / "orchestration" / room).glob("*.py"))) <= 12, room


@pytest.mark.parametrize("source, expected", [
    ("from selfplay.actors.rollout_worker import RolloutWorker\n", "tasks imports selfplay.actors.rollout_worker"),
    ("def f():\n    import orchestration.cli as c\n", "bare import of orchestration.cli"),
])
def test_the_check_finds_an_upward_or_bare_import(tmp_path, source, expected):
    """The contract can fail: a task module that reaches up into the actors, or a bare name inside a function."""
    path = tmp_path / "bad.py"
    path.write_text(source)
    found = _violations([("selfplay.tasks.bad", path)], tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_a_sibling_room_import_is_refused(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from selfplay.orchestration.telemetry.metrics import MetricsLog\n")
    found = _violations([("selfplay.orchestration.cluster.bad", path)], tmp_path)
    assert len(found) == 1 and "a sibling" in found[0], found


def _python_files(folder: str) -> list[Path]:
    """The project's Python files under ``folder``: not those of hidden folders (bench/.envs holds TRL's venvs)."""
    root = ROOT / folder
    if not root.exists():
        return []
    return [p for p in sorted(root.rglob("*.py")) if not any(part.startswith(".") for part in p.relative_to(root).parts)]


def test_tests_scripts_and_benchmarks_import_selfplay_by_its_one_name():
    bare = [f"{path.relative_to(ROOT)}: {imported}"
            for folder in ("tests", "bench", "scripts", "examples")
            for path in _python_files(folder)
            for imported in _imports(path) if imported.split(".")[0] in set(FOLDERS) - {"selfplay"}]
    assert bare == []


def test_no_code_held_in_a_string_imports_a_bare_name():
    """Code run from a string (``python -c``, a Ray job's entrypoint) imports by the one name too."""
    import io
    import tokenize

    names = "|".join(set(FOLDERS) - {"selfplay"})
    bare = re.compile(rf"\bfrom (?:{names})(?:\.\w+)* import\b|(?:^|;\s*)import (?:{names})\b")
    found = []
    for folder in (*FOLDERS, "tests", "bench", "scripts", "examples"):
        for path in _python_files(folder):
            if path.name == "test_layers.py":
                continue
            for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
                if token.type == tokenize.STRING and bare.search(token.string):
                    found.append(f"{path.relative_to(ROOT)}:{token.start[0]}")
    assert found == []
