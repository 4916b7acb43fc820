"""DRIFT's data: conversations whose assistant reply dissatisfied the user, with the user's complaint.

WildFeedback format, one JSON object per line: ``prompt`` a message list (or a string), ``rejected`` the
dissatisfied ("DSAT") reply (a string, or a message / message list whose last content is the reply),
``user_preference`` the complaint (a string or a list of strings). Errors name the file and line.
For the built-in sorting task, ``synthetic_sorting_dsat`` makes such rows: the reply is the prompt's letters
sorted the wrong way round (a plausible failure that scores about what a random policy does) and the complaint
asks for ascending order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfplay.errors import InputError
from selfplay.tasks.jsonl import read_jsonl_objects
from selfplay.tasks.sorting import DEFAULT_ALPHABET_SIZE, alphabet, prompt_letters


@dataclass
class DSATExample:
    prompt: list[dict]  # messages
    rejected: str
    complaint: str


def _messages(value, where: str) -> list[dict]:
    if isinstance(value, str) and value:
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and isinstance(m.get("role"), str)
            for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise InputError(f"{where}: 'prompt' must be a non-empty string or a list of {{role, content}} messages")


def _reply(value, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, list) and value and isinstance(value[-1], dict) and isinstance(value[-1].get("content"), str):
        return value[-1]["content"]
    raise InputError(f"{where}: 'rejected' must be the dissatisfying reply (a string or a message with content)")


def _complaint(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    raise InputError(f"{where}: 'user_preference' must be a string or a list of strings")


def load_wildfeedback_jsonl(path: str | Path) -> list[DSATExample]:
    rows = []
    for where, row in read_jsonl_objects(path, "DRIFT data file"):
        for key in ("prompt", "rejected", "user_preference"):
            if key not in row:
                raise InputError(f"{where}: missing '{key}'")
        rows.append(DSATExample(_messages(row["prompt"], where), _reply(row["rejected"], where),
                                _complaint(row["user_preference"], where)))
    return rows


def synthetic_sorting_dsat(prompts: list[str], alphabet_size: int = DEFAULT_ALPHABET_SIZE) -> list[DSATExample]:
    """A dissatisfying reply for each sorting prompt and the user's complaint: the letters sorted the wrong way
    round, a plausible failure of a deployed model that scores about what the random initial policy does
    (so the preference filter, when on, keeps the positives that are really better)."""
    alphabet(alphabet_size)  # validates the size
    return [DSATExample([{"role": "user", "content": prompt}],
                        " ".join(sorted(prompt_letters(prompt), reverse=True)), "wrong order ascending please")
            for prompt in prompts]
