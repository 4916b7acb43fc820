"""Where prompts come from: the user's prompt data (see ``tasks.prompt_data``), or the built-in task drawn from the
seed."""

from __future__ import annotations

import random

from selfplay.errors import InputError
from selfplay.tasks import game, sorting
from selfplay.tasks.prompt_data import Prompt, load_prompt_records


def train_and_eval_prompts(task, seed: int, strategies: list[str] = ()) -> tuple[list[Prompt], list[Prompt]]:
    """(training prompts, held-out evaluation prompts) for a ``TaskConfig``: strings, or chats with user data.
    ``strategies``: the game task's strategy words (``preference.strategies``)."""
    if task.prompts_path:
        records = load_prompt_records(task.prompts_path, task.prompt_key, task.split)
        if task.eval_prompts_path:
            # The eval file holds its own prompts: all of the training data trains.
            held_out = load_prompt_records(task.eval_prompts_path, task.prompt_key, task.eval_split or task.split,
                                           role="task.eval_prompts_path")
            return records, held_out[:task.num_eval_prompts]
        return held_out_split(records, task.num_eval_prompts, seed, task.prompts_path)
    if task.name == "game":  # every prompt means the same; the held-out ones only need fresh samples
        return (game.make_prompts(task.num_train_prompts, seed, list(strategies)),
                game.make_prompts(task.num_eval_prompts, seed + 1_000_003, list(strategies)))
    make = lambda count, s: sorting.make_prompts(count, s, task.prompt_letters, task.alphabet_size)  # noqa: E731
    # Distinct seeds for the two splits; held-out prompts that also occur in training are dropped.
    train = make(task.num_train_prompts, seed)
    seen = set(train)
    held_out = [p for p in make(task.num_eval_prompts * 4, seed + 1_000_003) if p not in seen]
    return train, held_out[:task.num_eval_prompts]


def held_out_split(records: list, count: int, seed: int, source: str) -> tuple[list, list]:
    """(the rest, ``count`` records chosen by the seed), each in the data's order."""
    if len(records) <= count:
        raise InputError(f"task.prompts_path {source} has {len(records)} prompts; it needs more than "
                         f"task.num_eval_prompts={count} to hold some out (or set task.eval_prompts_path)")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]
