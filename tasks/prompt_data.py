"""Prompt records from the user's data: a JSONL or Parquet file, a ``save_to_disk`` directory, or a hub dataset.

A record is what the data holds under the prompt key, checked and returned as plain ``str`` or ``list[dict]``
(records travel to the rollout workers through msgpack, so no custom classes):

- a string with some non-whitespace text, kept exactly as written;
- a chat: a non-empty list of ``{"role", "content"}`` messages, returned with only those two keys. A role is one
  of system/user/assistant/tool; content is a string. Only user messages must say something: an empty system,
  assistant or tool message is legal in chat data (an assistant turn that only called a tool), while a chat
  without a non-empty user message gives the policy nothing to answer. Datasets' columnar form of a chat,
  ``{"role": [...], "content": [...]}``, is read as the same list, and so is a ShareGPT-style chat,
  ``[{"from": "human"|"gpt"|"system"|..., "value": ...}]`` (``SHAREGPT_ROLES`` maps its speakers).

Chat data made for SFT usually ends with the reference answer (ultrachat's and ultrafeedback's ``messages``): the
policy must answer the last user turn, not continue after the answer, so ``drop_trailing_answers`` removes the
final assistant turn(s) (``task.trailing_assistant_turns``).

Errors are one line naming the source: ``file:LINE`` for JSONL (lines count from 1), ``file: row N`` for columnar
data (rows count from 0, as ``dataset[N]`` does), and ``message N`` within a chat (counting from 1).
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path

from selfplay.errors import InputError
from selfplay.tasks.jsonl import read_jsonl_objects

Prompt = str | list[dict]

ROLES = ("system", "user", "assistant", "tool")
# ShareGPT's speakers (``from``) as chat roles: the names FastChat, Axolotl and LLaMA-Factory read.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function_response": "tool"}
FORMATS = "a .jsonl or .parquet file, a directory written by datasets' save_to_disk, or a hub dataset name"
# Suffixes that say "a local file" even when no such file exists: such a path is a typo, not a hub name.
_FILE_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt", ".arrow", ".gz", ".zst"}
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class _Bad(ValueError):
    """One record is wrong; the caller prefixes where it is."""


def prompt_record(value, key: str) -> Prompt:
    """The record for one value found under ``key``, or ``_Bad`` saying what is wrong with it."""
    if isinstance(value, str):
        if not value.strip():
            raise _Bad(f"'{key}' is {'an empty' if not value else 'a blank'} string")
        return value
    if isinstance(value, dict) and isinstance(value.get("role"), list) and isinstance(value.get("content"), list):
        if len(value["role"]) != len(value["content"]):
            raise _Bad(f"'{key}' has {len(value['role'])} roles but {len(value['content'])} contents")
        value = [{"role": r, "content": c} for r, c in zip(value["role"], value["content"])]
    if isinstance(value, list):
        return _chat(_from_sharegpt(value, key) if _is_sharegpt(value) else value, key)
    kind = "null" if value is None else f"a {type(value).__name__}"
    raise _Bad(f"'{key}' is {kind}; expected a non-empty string or a chat [{{role, content}}, ...]")


def _is_sharegpt(messages: list) -> bool:
    return any(isinstance(m, dict) and "from" in m and "role" not in m for m in messages)


def _from_sharegpt(messages: list, key: str) -> list:
    chat = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "from" not in message:
            raise _Bad(f"'{key}' message {number} is not a ShareGPT turn {{from, value}} like the others")
        speaker = message["from"]
        if speaker not in SHAREGPT_ROLES:
            raise _Bad(f"'{key}' message {number} is from {speaker!r}, a ShareGPT speaker selfplay does not know "
                       f"(known: {', '.join(SHAREGPT_ROLES)}); map it to one of {', '.join(ROLES)} as "
                       f"{{role, content}} messages")
        chat.append({"role": SHAREGPT_ROLES[speaker], "content": message.get("value")})
    return chat


def drop_trailing_answers(records: list[Prompt]) -> tuple[list[Prompt], int]:
    """(the records with each chat's final assistant turns removed, how many chats had some): the policy
    answers the last user turn. A chat left with no user message after it cannot happen: every chat has one."""
    kept, count = [], 0
    for record in records:
        if isinstance(record, list) and record[-1]["role"] == "assistant":
            end = len(record)
            while record[end - 1]["role"] == "assistant":
                end -= 1
            record, count = record[:end], count + 1
        kept.append(record)
    return kept, count


def _chat(messages: list, key: str) -> list[dict]:
    if not messages:
        raise _Bad(f"'{key}' is an empty chat")
    chat, has_user = [], False
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise _Bad(f"'{key}' message {number} is not an object {{role, content}}")
        role, content = message.get("role"), message.get("content")
        if role is None:
            raise _Bad(f"'{key}' message {number} has no 'role'")
        if role not in ROLES:
            raise _Bad(f"'{key}' message {number} has role {role!r}; expected one of {', '.join(ROLES)}")
        if content is None:
            raise _Bad(f"'{key}' message {number} has no 'content'")
        if not isinstance(content, str):
            raise _Bad(f"'{key}' message {number} 'content' is a {type(content).__name__}; expected a string "
                       f"(content parts such as images are not supported)")
        if role == "user":
            if not content.strip():
                raise _Bad(f"'{key}' message {number} is a user message with empty content")
            has_user = True
        chat.append({"role": role, "content": content})
    if not has_user:
        raise _Bad(f"'{key}' chat has no user message")
    return chat


def load_prompt_records(source: str, prompt_key: str = "prompt", split: str = "train",
                        role: str = "task.prompts_path") -> list[Prompt]:
    """Every prompt record in ``source``, in order: a ``.jsonl`` or ``.parquet`` file, a ``save_to_disk``
    directory (a Dataset, or a DatasetDict's ``split``), or else a hub dataset name loaded with ``split``.
    ``role`` is the config key that named ``source``, used in messages."""
    path = Path(source).expanduser()
    if path.is_dir():
        records = _from_disk(path, prompt_key, split, role)
    elif path.is_file():
        if path.suffix == ".jsonl":
            records = _from_jsonl(path, prompt_key, role)
        elif path.suffix == ".parquet":
            records = _from_parquet(path, prompt_key)
        else:
            raise InputError(f"{role}: {path} is not a format selfplay reads; use {FORMATS}")
    elif _HUB_NAME.fullmatch(source) and path.suffix not in _FILE_SUFFIXES:
        records = _from_hub(source, prompt_key, split, role)
    else:
        raise InputError(f"{role}: no such file or directory: {path}")
    if not records:
        raise InputError(f"{role} {source} holds no prompts")
    return records


def _from_jsonl(path: Path, key: str, role: str) -> list[Prompt]:
    records = []
    for where, row in read_jsonl_objects(path, role, items="prompts"):
        if key not in row:
            raise InputError(f"{where}: no '{key}' key (this record has: {_names(row)}); set "
                             f"task.prompt_key=... to the one holding the prompt")
        try:
            records.append(prompt_record(row[key], key))
        except _Bad as bad:
            raise InputError(f"{where}: {bad}") from None
    return records


def _from_parquet(path: Path, key: str) -> list[Prompt]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        columns = file.schema_arrow.names
        values = file.read(columns=[key]).column(key).to_pylist() if key in columns else None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    if values is None:
        raise _missing_column(f"{path}", key, columns)
    return _from_column(values, key, f"{path}")


def _from_disk(path: Path, key: str, split: str, role: str) -> list[Prompt]:
    import datasets

    with _quiet():
        try:
            data = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise InputError(f"{role}: directory {path} was not written by datasets' save_to_disk (it has no "
                             f"dataset_info.json or dataset_dict.json); use {FORMATS}") from None
    where = f"{path}"
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise InputError(f"{role}: {path} has no split '{split}' (splits: {', '.join(data)}); set "
                             f"task.split=...")
        data, where = data[split], f"{path} (split {split})"
    return _from_dataset(data, key, where)


def _from_hub(name: str, key: str, split: str, role: str) -> list[Prompt]:
    import datasets

    try:
        with _quiet(hide_progress=False):  # a real download is long: keep its progress bars
            data = datasets.load_dataset(name, split=split)
    except Exception as exc:  # no network, no such dataset, a gated one, a bad split: all say the same to a user
        cause = _first_line(exc)
        if "unknown split" in cause.lower():
            raise InputError(f"{role}: hub dataset {name}: {cause}; set task.split=...") from None
        raise InputError(f"{role}={name} is neither a local file/directory nor a loadable hub dataset "
                         f"({cause})") from None
    return _from_dataset(data, key, f"{name} (split {split})")


def _from_dataset(data, key: str, where: str) -> list[Prompt]:
    if key not in data.column_names:
        raise _missing_column(where, key, data.column_names)
    # Arrow, not datasets' row decoding: a chat column stays a list of dicts and 100k rows take well under a second.
    return _from_column(data.with_format("arrow")[key].to_pylist(), key, where)


def _from_column(values: list, key: str, where: str) -> list[Prompt]:
    records = []
    for row, value in enumerate(values):
        try:
            records.append(prompt_record(value, key))
        except _Bad as bad:
            raise InputError(f"{where}: row {row}: {bad}") from None
    return records


def _missing_column(where: str, key: str, columns) -> InputError:
    return InputError(f"{where}: no column '{key}' (columns: {_names(columns)}); set task.prompt_key=... to the "
                      f"one holding the prompt")


def _names(keys, most: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(str(k) for k in keys[:most])
    return (shown + f", ... ({len(keys)} in all)" if len(keys) > most else shown) or "none"


def _first_line(exc: Exception, most: int = 300) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= most else text[:most] + "..."


@contextmanager
def _quiet(hide_progress: bool = True):
    """Hide datasets' and the hub client's warnings (an offline machine logs each of five retries) and, with
    ``hide_progress``, datasets' progress bars; both are restored after."""
    import datasets

    loggers = [logging.getLogger(name) for name in ("datasets", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    if hide_progress and bars_were_on:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if hide_progress and bars_were_on:
            datasets.enable_progress_bars()
