"""Reading JSONL input files with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from selfplay.errors import InputError


def read_jsonl_objects(path: str | Path, what: str, items: str = "rows") -> Iterator[tuple[str, dict]]:
    """(``file:line``, object) for each non-blank line; ``what`` names the file's role in errors and ``items``
    what an empty file lacks ("holds no prompts")."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    count = 0
    # Bytes, so that a line that is not UTF-8 is reported with its number rather than as a traceback.
    with p.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{p}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
            except UnicodeDecodeError:
                raise InputError(f"{where}: not UTF-8 text") from None
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object")
            count += 1
            yield where, row
    if not count:
        raise InputError(f"{what} {p} holds no {items}")
