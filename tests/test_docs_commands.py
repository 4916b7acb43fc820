"""Every command in README.md and docs/ runs as written, every link points at a file, every config key named exists.

What is checked, without starting Ray, vLLM or a training run. A command that sets environment variables (a plug-in
module) runs through the console script next to this interpreter, in a process of its own; the others through the
script's own ``main`` in this process (a fresh process imports torch, about a second of CPU each):

- every ``selfplay train ...`` found in a fenced ```bash block (also after ``ray job submit ... --``, behind
  environment assignments, inside ``$(...)``; backslash continuations joined) runs with ``--dry-run`` appended, from
  the repository root, and exits 0. ``--dry-run`` resolves the
  whole config: an unknown key, a bad value or a cross-key rule broken fails it;
- the config file and key=value overrides of ``selfplay resume``, ``serve-preference`` and ``config`` commands are
  resolved the same way (they read the same config as ``train``), and every other subcommand named (``status``,
  ``export``, ``plot``, ...) answers ``--help`` with exit 0, so a renamed or removed subcommand fails;
- every relative markdown link (and its #anchor) in README.md and docs/ resolves;
- every dotted config key named in inline code or a bash block (``learner.micro_batch_size``, ``rollout.vllm.*``,
  ``metrics.wandb.{enabled, ...}``) exists in the config ``selfplay train --dry-run`` prints;
- README.md is at most 320 lines and holds the two set-up commands verbatim (CI runs the second one).

A command is skipped only when it needs what this machine cannot have; each is listed in SKIP with its reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SELFPLAY = Path(sys.executable).parent / "selfplay"
README = ROOT / "README.md"
FILES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
README_MAX_LINES = 320
SETUP_COMMANDS = ("bash scripts/install.sh && .venv/bin/selfplay train",
                  "bash scripts/install.sh && .venv/bin/python -m pytest tests")

# (file relative to the repository root, a substring of the command) -> why it cannot run here. Only what this
# machine cannot have: a GPU, a cluster address, a file an earlier command of the same guide makes that this test
# does not make. (--dry-run needs none of these today, so the list is empty; an entry that matches no command fails.)
SKIP: dict[tuple[str, str], str] = {}

# Dotted words in inline code that start like a config section but are not config keys: files, Ray's API, and the
# wrong key of an error message shown as an example.
NOT_CONFIG_KEYS = {"metrics.jsonl", "ray.util.metrics", "ray.init", "rollout.kk"}

BASH_LANGUAGES = {"bash", "sh", "shell"}


@dataclass(frozen=True)
class Command:
    file: str  # relative to ROOT
    line: int  # where the (joined) command line starts
    text: str  # the whole shell line
    argv: tuple[str, ...]  # the selfplay invocation: ("train", "key=value", ...)
    env: tuple[tuple[str, str], ...] = ()  # NAME=value assignments before it on the line

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{' '.join(self.argv)[:60]}"


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fenced_blocks(path: Path) -> list[tuple[str, list[tuple[int, str]]]]:
    """(language, [(line number, line), ...]) of every fenced code block."""
    blocks, current, fence, language = [], None, None, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if current is None:
            match = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence, language, current = match.group(1), match.group(2).lower(), []
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((language, current))
            current = None
        else:
            current.append((number, line))
    return blocks


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks."""
    inside = {n for _, lines in fenced_blocks(path) for n, _ in lines}
    fences = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"\s*(`{3,}|~{3,})", line):
            fences.add(number)
    return [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1)
            if n not in inside and n not in fences]


def joined_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Backslash continuations joined; each joined line keeps the number of its first line. A here-document's
    body (``cat > f.py <<'EOF'`` ... ``EOF``) is data, not commands: it is left out."""
    out, pending, start, heredoc = [], "", None, None
    for number, line in lines:
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        marker = re.search(r"<<-?\s*(['\"]?)(\w+)\1", strip_comment(line))
        if marker:
            heredoc = marker.group(2)
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending, start = "", None
    if start is not None:
        out.append((start, pending))
    return out


def strip_comment(line: str) -> str:
    """The line without its shell comment: a # that starts a word, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


Invocation = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]  # (environment assignments, argv after selfplay)


def selfplay_invocations(line: str) -> list[Invocation]:
    """Every selfplay command on one shell line (also inside quotes and $(...)): its leading NAME=value environment
    assignments and its argv after ``selfplay``."""
    lexer = shlex.shlex(strip_comment(line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens = list(lexer)
    found, segment = [], []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("();<>|&"):  # an operator ends a simple command
            found += _in_segment(segment)
            segment = []
        else:
            segment.append(token)
    for token in tokens:  # a command inside a quoted word: "selfplay export ...", "$(selfplay status ...)"
        if "selfplay " in token and token.split()[0] != token:
            inner = token[2:-1] if token.startswith("$(") and token.endswith(")") else token
            found += selfplay_invocations(inner)
    return found


def _in_segment(segment: list[str]) -> list[Invocation]:
    for i, token in enumerate(segment):
        if token == "selfplay" or token.endswith("/selfplay"):
            before = segment[:i]
            assignments = all(re.match(r"[A-Za-z_]\w*=", t) for t in before)
            env = tuple(tuple(t.split("=", 1)) for t in before) if assignments else ()
            return [(env, tuple(segment[i + 1:]))]
    return []


def collect_commands() -> list[Command]:
    commands = []
    for path in FILES:
        for language, lines in fenced_blocks(path):
            if language not in BASH_LANGUAGES:
                continue
            for number, line in joined_lines(lines):
                for env, argv in selfplay_invocations(line):
                    commands.append(Command(_rel(path), number, line.strip(), argv, env))
    return commands


COMMANDS = collect_commands()
TRAIN = [c for c in COMMANDS if c.argv[:1] == ("train",)]
# Subcommands that read a config like train (a file, then key=value overrides): checked with train --dry-run too.
CONFIGURED = [c for c in COMMANDS if c.argv[:1] in (("resume",), ("serve-preference",), ("config",))]
OPTIONS_WITH_VALUES = ("--address", "--host", "--port", "--section", "--step", "--stale-after")
OTHER = [c for c in COMMANDS if c.argv[:1] != ("train",)]


def _skip_reason(command: Command) -> str | None:
    for (file, fragment), reason in SKIP.items():
        if file == command.file and fragment in command.text:
            return reason
    return None


Call = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]  # (environment assignments, selfplay arguments)


def _selfplay(call: Call) -> subprocess.CompletedProcess:
    assert SELFPLAY.exists(), f"no console script at {SELFPLAY} (install the project into this interpreter's venv)"
    assignments, args = call
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PWD": str(ROOT)}
    env.update({name: os.path.expandvars(value.replace("$PWD", str(ROOT))) for name, value in assignments})
    return subprocess.run([str(SELFPLAY), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _config_items(argv: tuple[str, ...]) -> list[str]:
    """The config file and key=value overrides of a resume, serve-preference or config command (options dropped)."""
    items, skip_next, positional = [], False, 0
    for arg in argv[1:]:
        if skip_next:
            skip_next = False
        elif arg in OPTIONS_WITH_VALUES:
            skip_next = True
        elif arg.startswith("-"):
            continue
        else:
            positional += 1
            if "=" in arg or (argv[0] != "resume" and positional == 1):
                items.append(arg)
    return items


def _train_call(command: Command) -> Call:
    dry_run = () if "--dry-run" in command.argv else ("--dry-run",)
    return command.env, (*command.argv, *dry_run)


def _config_call(command: Command) -> Call:
    return command.env, ("train", *_config_items(command.argv), "--dry-run")


def _help_call(command: Command) -> Call:
    return (), (command.argv[0], "--help")


def _calls(command: Command) -> list[Call]:
    """The selfplay calls that check ``command``."""
    if command.argv[:1] == ("train",):
        return [_train_call(command)]
    calls = [_help_call(command)] if command.argv else []
    if command in CONFIGURED:
        calls.append(_config_call(command))
    return calls


DEFAULT_DRY_RUN: Call = ((), ("train", "--dry-run"))


def _selfplay_here(call: Call) -> subprocess.CompletedProcess:
    """A call without environment assignments, through the console script's own ``main`` in this process (a
    process each would import torch again: a second of CPU per call), from the repository root, offline."""
    from selfplay.orchestration.commands.cli import main

    _, args = call
    out, err = io.StringIO(), io.StringIO()
    here, offline = os.getcwd(), os.environ.get("HF_HUB_OFFLINE")
    os.chdir(ROOT)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, or a usage error
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(here)
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline
    return subprocess.CompletedProcess(["selfplay", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def results(request) -> dict[Call, subprocess.CompletedProcess]:
    """Every distinct call the selected tests need, run once: those that set environment variables (a plug-in
    module, a token) through the console script, in processes of their own, the others in this process."""
    selected = [item.callspec.params["command"] for item in request.session.items
                if hasattr(item, "callspec") and "command" in item.callspec.params]
    calls = {DEFAULT_DRY_RUN}
    calls.update(call for command in selected if not _skip_reason(command) for call in _calls(command))
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {call: pool.submit(_selfplay, call) for call in sorted(calls) if call[0]}
        here = {call: _selfplay_here(call) for call in sorted(calls) if not call[0]}
    return {**here, **{call: future.result() for call, future in futures.items()}}


def test_the_docs_hold_commands_to_check():
    assert len(TRAIN) >= 20, [c.id for c in TRAIN]
    assert any(c.file == "README.md" for c in TRAIN)


def test_every_skip_entry_matches_a_command():
    for (file, fragment), reason in SKIP.items():
        assert any(c.file == file and fragment in c.text for c in COMMANDS), f"stale SKIP entry {file}: {fragment}"
        assert reason, f"SKIP entry {file}: {fragment} gives no reason"


def _assert_resolves(results, command: Command, call, what: str) -> None:
    """The command's config resolves (exit 0), unless SKIP lists why it cannot here."""
    reason = _skip_reason(command)
    if reason:
        pytest.skip(reason)
    result = results[call(command)]
    assert result.returncode == 0, (f"{command.file}:{command.line}: `{command.text}` {what} (exit "
                                    f"{result.returncode}): {result.stderr.strip()[-2000:]}")


@pytest.mark.parametrize("command", TRAIN, ids=[c.id for c in TRAIN])
def test_train_command_resolves_with_dry_run(results, command: Command):
    _assert_resolves(results, command, _train_call, "fails with --dry-run")


@pytest.mark.parametrize("command", CONFIGURED, ids=[c.id for c in CONFIGURED])
def test_config_of_other_subcommands_resolves(results, command: Command):
    _assert_resolves(results, command, _config_call, "has a config that does not resolve")


@pytest.mark.parametrize("command", OTHER, ids=[c.id for c in OTHER])
def test_subcommand_exists(results, command: Command):
    assert command.argv, f"{command.file}:{command.line}: `{command.text}` names no subcommand"
    result = results[_help_call(command)]
    assert result.returncode == 0, (f"{command.file}:{command.line}: `selfplay {command.argv[0]} --help` exited "
                                    f"{result.returncode}: {result.stderr.strip()[-500:]}")


# -- links -----------------------------------------------------------------------------------------------------

def github_anchors(path: Path) -> set[str]:
    """The #anchors GitHub gives a markdown file's headings."""
    anchors, seen = set(), {}
    for _, line in prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower().replace("`", "")).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def collect_links() -> list[tuple[str, int, str]]:
    links = []
    for path in FILES:
        for number, line in prose_lines(path):
            text = re.sub(r"`[^`]*`", "", line)  # a link inside inline code is not a link
            for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                links.append((_rel(path), number, target))
    return links


LINKS = collect_links()


def test_the_docs_link_to_each_other():
    assert any(file == "README.md" and target.startswith("docs/") for file, _, target in LINKS)


@pytest.mark.parametrize("file,line,target", LINKS, ids=[f"{f}:{n}:{t}" for f, n, t in LINKS])
def test_relative_link_resolves(file: str, line: int, target: str):
    source = ROOT / file
    path_part, _, anchor = target.partition("#")
    dest = (source.parent / path_part).resolve() if path_part else source
    assert dest.exists(), f"{file}:{line}: link to {target}: {dest} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in github_anchors(dest), (f"{file}:{line}: link to {target}: no heading makes #{anchor} "
                                                f"(there: {sorted(github_anchors(dest))})")


# -- config keys named in the text -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_keys(results) -> tuple[set[str], set[str]]:
    """(every dotted key of the resolved default config, the keys that are sections)."""
    result = results[DEFAULT_DRY_RUN]
    assert result.returncode == 0, result.stderr
    keys, sections = set(), set()

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            keys.add(dotted)
            if isinstance(value, dict) and value:
                sections.add(dotted)
                walk(value, dotted + ".")

    walk(yaml.safe_load(result.stdout), "")
    return keys, sections


SECTIONS = ("run", "policy", "task", "rollout", "preference", "algorithm", "learner", "sync", "eval", "checkpoint",
            "pipeline", "ray", "metrics")
KEY = re.compile(r"(?<![\w./$-])((?:" + "|".join(SECTIONS) + r")(?:\.[A-Za-z_]\w*)+)(\.\*|\.\{)?")


def collect_key_mentions() -> list[tuple[str, int, str, bool]]:
    """(file, line, dotted key, named as a section: `x.*` or `x.{a, b}`) for every key named in inline code or in a
    bash block, once per file."""
    mentions, seen = [], set()
    for path in FILES:
        spans = [(n, span) for n, line in prose_lines(path) for span in re.findall(r"`([^`\n]+)`", line)]
        spans += [(n, line) for language, lines in fenced_blocks(path) if language in BASH_LANGUAGES
                  for n, line in lines]
        for number, span in spans:
            for key, section_form in KEY.findall(span):
                if key in NOT_CONFIG_KEYS or (_rel(path), key) in seen:
                    continue
                seen.add((_rel(path), key))
                mentions.append((_rel(path), number, key, bool(section_form)))
    return mentions


KEY_MENTIONS = collect_key_mentions()


def test_the_docs_name_config_keys():
    assert len({key for _, _, key, _ in KEY_MENTIONS}) >= 100


@pytest.mark.parametrize("file,line,key,section_form", KEY_MENTIONS,
                         ids=[f"{f}:{n}:{k}" for f, n, k, _ in KEY_MENTIONS])
def test_named_config_key_exists(config_keys, file: str, line: int, key: str, section_form: bool):
    keys, sections = config_keys
    assert key in keys, f"{file}:{line}: `{key}` is not a config key (selfplay train --dry-run does not print it)"
    if section_form:
        assert key in sections, f"{file}:{line}: `{key}.*` names a section, but {key} is a single key"


# -- README ----------------------------------------------------------------------------------------------------

def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_readme_opens_with_the_two_setup_commands_verbatim():
    bash = [[line for _, line in lines] for language, lines in fenced_blocks(README) if language in BASH_LANGUAGES]
    assert len(bash) >= 2 and bash[0] == [SETUP_COMMANDS[0]] and bash[1] == [SETUP_COMMANDS[1]], bash[:2]
