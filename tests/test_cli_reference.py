"""docs/cli.md shows each command's own --help: the page fails this test when a flag or help line changes and the
page does not (regenerate a block with ``COLUMNS=100 .venv/bin/selfplay <command> --help``)."""

import re
from pathlib import Path

from selfplay.orchestration.commands.cli import _parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _helps() -> dict[str, str]:
    parser = _parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    return {"selfplay": parser.format_help(),
            **{f"selfplay {name}": sub.format_help() for name, sub in commands.items()}}


def test_every_command_has_its_help_on_the_page_as_it_prints(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    helps = _helps()
    blocks = dict(re.findall(r"^## (selfplay[\w -]*?)\n\n```text\n(.*?)```", PAGE.read_text(), re.M | re.S))
    assert set(blocks) == set(helps), f"commands without a section: {set(helps) - set(blocks)}"
    for command, block in blocks.items():
        assert block == helps[command], f"docs/cli.md '{command}' differs from `{command} --help`"
