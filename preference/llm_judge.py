"""preference.kind=judge: a generative LLM as the judge (RLHFlow's pair-preference model, an instruct model asked
"which is better?"), a model of its own on its own vLLM engine inside the preference service.

The judge reads ``preference.judge_template`` filled with the prompt's text, a and b as ONE user turn, rendered
with the JUDGE's tokenizer and chat template with the generation prompt (plain text with its special tokens when
it has no template). Its answer is the next token: with V_a the first token of ``preference.verdict_a`` under the
judge's tokenizer plus, where it exists and differs, the first token of " " + verdict_a (and V_b likewise),

    f(a, b) = sum_{t in V_a} p(t) / (sum_{t in V_a} p(t) + sum_{t in V_b} p(t)),

and, asked in both orders (preference/self_judge.py's math, shared with OSP's self-judge and the pairwise kind),

    P(a > b | x) = (f(a, b) + 1 - f(b, a)) / 2.

A judge prompt longer than the engine's context (``preference.judge_max_model_len``) is not cut: its value is
rejected (NaN, counted and printed), which drops its group.
"""

from __future__ import annotations

import math

import numpy as np

from selfplay.preference.rejections import Rejections
from selfplay.preference.self_judge import ask_both_orders, verdict_probability
from selfplay.rollout.chat_rendering import PromptRenderer, prompt_text
from selfplay.errors import ConfigError


def verdict_variants(tokenizer, verdict: str) -> list[int]:
    """The first token of ``verdict``, and of " " + verdict when that is a different token that still carries
    the verdict's text (a bare space token does not count)."""
    ids = []
    for text in (verdict, " " + verdict):
        tokens = tokenizer(text, add_special_tokens=False).input_ids
        piece = tokenizer.decode(tokens[:1]).strip() if tokens else ""
        if piece and verdict.startswith(piece) and tokens[0] not in ids:
            ids.append(tokens[0])
    return ids


def verdict_token_ids(tokenizer, verdict_a: str, verdict_b: str) -> tuple[list[int], list[int]]:
    """(V_a, V_b); a ConfigError naming the keys when a verdict has no token or the two share a first token."""
    a, b = verdict_variants(tokenizer, verdict_a), verdict_variants(tokenizer, verdict_b)
    if not a or not b:
        raise ConfigError(f"config key 'preference.verdict_{'a' if not a else 'b'}' has no first token under the "
                          "judge's tokenizer")
    if set(a) & set(b):
        raise ConfigError(f"config keys 'preference.verdict_a' ({verdict_a!r}) and 'preference.verdict_b' "
                          f"({verdict_b!r}) start with the same token of the judge's tokenizer: the next token "
                          "cannot tell them apart (use e.g. A and B)")
    return a, b


class LLMJudge:
    score_based = False
    order_averaged = True

    def __init__(self, engine, tokenizer, template: str, verdict_a: str = "A", verdict_b: str = "B",
                 max_len: int | None = None, source: str = "judge") -> None:
        """``engine``: anything with ``next_token_logprobs(prefixes, token_ids)`` (rollout/engine.py), holding
        the judge model; ``max_len``: the longest sequence it takes (the judge prompt plus the verdict token)."""
        self.engine = engine
        self.renderer = PromptRenderer(tokenizer, "auto", source=f"the tokenizer of {source}")
        self.template = template
        self.variants_a, self.variants_b = verdict_token_ids(tokenizer, verdict_a, verdict_b)
        self.max_len = max_len
        self.rejections = Rejections(source)

    @property
    def rejected(self) -> int:
        return self.rejections.count

    def render(self, prompt, a: str, b: str) -> list[int]:
        """What the judge reads for the pair (a, b) in this order, up to where its verdict comes."""
        return self.renderer.render(self.template.format(prompt=prompt_text(prompt), a=a, b=b))

    def first_wins(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        """f(first_i, second_i): the judge's probability of verdict_a, renormalised over the two verdicts."""
        ids = [self.render(x, a, b) for x, a, b in zip(prompts, first, second, strict=True)]
        out = [math.nan] * len(ids)
        fits = [n for n, seq in enumerate(ids) if self.max_len is None or len(seq) < self.max_len]
        if len(fits) < len(ids):
            longest = max(len(seq) for seq in ids)
            self.rejections.reject(f"judge prompts of up to {longest} tokens do not fit its context of "
                                   f"{self.max_len} (preference.judge_max_model_len)", len(ids) - len(fits))
        if not fits:
            return out
        na = len(self.variants_a)
        rows = self.engine.next_token_logprobs([ids[n] for n in fits], self.variants_a + self.variants_b)
        for n, row in zip(fits, rows, strict=True):
            out[n] = verdict_probability(np.logaddexp.reduce(row[:na]), np.logaddexp.reduce(row[na:]))
        return out

    def both_orders(self, prompts: list, first: list[str], second: list[str]):
        return ask_both_orders(self.first_wins, prompts, first, second)

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        return self.both_orders(prompts, first, second)[0].tolist()


def load_judge(model_path: str, template: str, verdict_a: str, verdict_b: str, engine_options: dict) -> LLMJudge:
    """The judge on a vLLM engine of its own; ``engine_options``: VLLMEngine's keyword arguments (dtype, seed,
    max_model_len, ...)."""
    from transformers import AutoTokenizer

    from selfplay.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(model_path, **engine_options)
    return LLMJudge(engine, AutoTokenizer.from_pretrained(model_path), template, verdict_a, verdict_b,
                    engine.max_model_len, source=f"judge {model_path}")
