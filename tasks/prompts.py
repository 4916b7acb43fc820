"""Where prompts come from: a user's JSONL file, or the built-in task drawn from the seed."""

from __future__ import annotations

import random
from pathlib import Path

from orchestration.errors import InputError
from tasks import sorting
from tasks.jsonl import read_jsonl_objects


def load_prompts_jsonl(path: str | Path) -> list[str]:
    """One JSON object per line with a non-empty string ``prompt``; blank lines are skipped.
    Errors name the file and line."""
    prompts = []
    for where, row in read_jsonl_objects(path, "prompts file"):
        if not isinstance(row.get("prompt"), str) or not row["prompt"]:
            raise InputError(f"{where}: expected an object with a non-empty string 'prompt'")
        prompts.append(row["prompt"])
    return prompts


def train_and_eval_prompts(task, seed: int) -> tuple[list[str], list[str]]:
    """(training prompts, held-out evaluation prompts) for a ``TaskConfig``."""
    if task.prompts_path:
        prompts = load_prompts_jsonl(task.prompts_path)
        if len(prompts) <= task.num_eval_prompts:
            raise InputError(f"prompts file {task.prompts_path} has {len(prompts)} prompts; it needs more "
                             f"than task.num_eval_prompts={task.num_eval_prompts} to hold some out")
        order = list(range(len(prompts)))
        random.Random(seed).shuffle(order)
        held = set(order[:task.num_eval_prompts])
        return ([p for i, p in enumerate(prompts) if i not in held], [prompts[i] for i in sorted(held)])
    make = lambda count, s: sorting.make_prompts(count, s, task.prompt_letters, task.alphabet_size)  # noqa: E731
    # Distinct seeds for the two splits; held-out prompts that also occur in training are dropped.
    train = make(task.num_train_prompts, seed)
    seen = set(train)
    held_out = [p for p in make(task.num_eval_prompts * 4, seed + 1_000_003) if p not in seen]
    return train, held_out[:task.num_eval_prompts]
