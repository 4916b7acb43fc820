"""Prompts as the policy sees them: a record (a string or a chat) rendered once to token ids.

The engines receive these ids and never re-tokenize text, so the vLLM engine, the torch engine and the learner
all see exactly the same ids. Rendering a chat template to text and tokenizing that text again would add the
tokenizer's BOS a second time to templates that already start with ``{{ bos_token }}`` (Llama 3), so a chat
is tokenized by ``apply_chat_template`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfplay.errors import ConfigError, InputError


def prompt_text(record) -> str:
    """A record as plain text, for templates that embed the prompt (OSP's judge, DRIFT's repair prompt): the
    string itself, or the chat's contents joined by newlines."""
    if isinstance(record, str):
        return record
    return "\n".join(m["content"] for m in record)


class PromptRenderer:
    """Renders prompt records with the policy tokenizer.

    ``chat_template``: ``auto`` uses the tokenizer's template when it has one, ``always`` requires one,
    ``never`` tokenizes the text as is (with the tokenizer's special tokens, e.g. its BOS). A string becomes
    one user message when a template is used; ``system_prompt`` goes first in a chat that has no system
    message. Without a template a chat's contents are joined by newlines."""

    def __init__(self, tokenizer, chat_template: str = "auto", system_prompt: str | None = None,
                 source: str = "the policy tokenizer", system_in_user_turn: bool = False) -> None:
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template == "always" and not has_template:
            raise ConfigError(f"task.chat_template=always, but {source} has no chat template "
                             "(use auto or never, or a tokenizer with a template)")
        self.tokenizer = tokenizer
        self.source = source
        # The prompt budget is enforced here (fit_prompt), so the tokenizer's own length warning is only noise.
        tokenizer.model_max_length = int(1e30)
        self.uses_template = has_template and chat_template != "never"
        self.system_prompt = system_prompt
        self.system_in_user_turn = system_in_user_turn
        if self.uses_template and system_prompt and not system_in_user_turn:
            self._check_system_role(source)

    def _check_system_role(self, source: str) -> None:
        """Templates without a system role (Gemma's) raise on one; say so before any prompt is rendered."""
        try:
            self.tokenizer.apply_chat_template(
                [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": "Hi"}],
                add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja's TemplateError, raised by the template's own raise_exception
            raise InputError(f"task.system_prompt is set, but the chat template of {source} takes no system "
                             f"message ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); set "
                             "task.system_prompt_in_user_turn=true to put it at the start of the first user "
                             "turn, or unset task.system_prompt") from None

    def messages(self, record) -> list[dict]:
        chat = [{"role": "user", "content": record}] if isinstance(record, str) else list(record)
        if self.system_prompt and not any(m["role"] == "system" for m in chat):
            chat = [{"role": "system", "content": self.system_prompt}] + chat
        if self.system_in_user_turn:
            chat = system_into_first_user_turn(chat)
        return chat

    def render(self, record) -> list[int]:
        """Token ids of the prompt, ending where the response starts (the generation prompt)."""
        if self.uses_template:
            ids = self.tokenizer.apply_chat_template(self.messages(record), add_generation_prompt=True,
                                                     tokenize=True, return_dict=False)
            return list(ids)
        text = record if isinstance(record, str) else prompt_text(self.messages(record))
        if self.system_prompt and isinstance(record, str):
            text = f"{self.system_prompt}\n{text}"
        return list(self.tokenizer(text, add_special_tokens=True).input_ids)

    def render_all(self, records: list) -> list[list[int]]:
        return [self.render(r) for r in records]


def system_into_first_user_turn(chat: list[dict]) -> list[dict]:
    """The chat with its system messages' text put before the first user turn's, separated by a blank line (what
    Gemma's own template does with a system message it is allowed to see)."""
    system = [m["content"] for m in chat if m["role"] == "system" and m["content"]]
    rest = [m for m in chat if m["role"] != "system"]
    if not system:
        return rest
    first = next(i for i, m in enumerate(rest) if m["role"] == "user")
    rest[first] = {"role": "user", "content": "\n\n".join(system + [rest[first]["content"]])}
    return rest


def fit_prompt(ids: list[int], budget: int, overlong: str, bos_id: int | None) -> list[int] | None:
    """``ids`` if it fits in ``budget`` tokens; otherwise None (``drop``) or its last tokens (``truncate``,
    keeping a leading BOS so the model still sees the start of a sequence)."""
    if len(ids) <= budget:
        return ids
    if overlong == "drop":
        return None
    keep_bos = bos_id is not None and ids and ids[0] == bos_id
    tail = budget - 1 if keep_bos else budget
    return ([bos_id] if keep_bos else []) + ids[len(ids) - tail:]


def eos_token_ids(tokenizer, model_path: str | None) -> list[int]:
    """Every id that ends a response: the tokenizer's EOS and each of ``generation_config.json``'s (chat
    models often list several, e.g. Llama 3's <|eot_id|> and <|end_of_text|>); no model path: the tokenizer's."""
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    path = Path(model_path) / "generation_config.json" if model_path else None
    if path is not None and path.is_file():
        value = json.loads(path.read_text()).get("eos_token_id")
        for token in value if isinstance(value, list) else [value]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    return ids


def first_eos(ids: list[int], eos_ids: list[int]) -> int | None:
    """Position of the first EOS id in ``ids``, or None."""
    stops = set(eos_ids)
    return next((i for i, t in enumerate(ids) if t in stops), None)
