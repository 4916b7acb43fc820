"""The training batch the controller hands the learner: token ids plus per-sequence target fields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from selfplay.rollout.records import Completion


@dataclass
class TrainingBatch:
    """Sequences to train on; ``fields`` holds per-sequence arrays an algorithm's loss reads
    (for SPPO: ``p_win``, the estimated win-rate of each response against the current policy).

    ``group_size`` > 1 marks sequences that belong together and stay in one micro-batch: pair losses
    (DPO, IPO, OSP, DRIFT) store each pair as two consecutive sequences (first, second), group_size 2."""
    prompt_token_ids: list[list[int]]
    response_token_ids: list[list[int]]
    policy_versions: list[int]
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    group_size: int = 1

    def __len__(self) -> int:
        return len(self.response_token_ids)

    @property
    def num_samples(self) -> int:
        """Sequences that are policy samples: all but OSP's judge-warm-up examples (field ``judge`` = 1)."""
        judge = self.fields.get("judge")
        return len(self) if judge is None else int((np.asarray(judge) == 0).sum())

    @staticmethod
    def concat(batches: list["TrainingBatch"]) -> "TrainingBatch":
        """One batch of several with the same group size and fields, in order."""
        first = batches[0]
        if any(b.group_size != first.group_size or b.fields.keys() != first.fields.keys() for b in batches):
            raise ValueError("only batches with the same group size and fields can be concatenated")
        return TrainingBatch([p for b in batches for p in b.prompt_token_ids],
                             [r for b in batches for r in b.response_token_ids],
                             [v for b in batches for v in b.policy_versions],
                             {k: np.concatenate([b.fields[k] for b in batches]) for k in first.fields},
                             first.group_size)

    @property
    def num_groups(self) -> int:
        return len(self) // self.group_size

    def micro_batch_count(self, micro_batch_size: int) -> int:
        """Micro-batches of at most ``micro_batch_size`` sequences it takes, a group never cut (a group
        larger than that is a micro-batch of its own)."""
        return -(-self.num_groups // max(1, micro_batch_size // self.group_size))

    def groups(self, start: int, stop: int) -> "TrainingBatch":
        """Groups ``start`` to ``stop`` (exclusive) as a batch."""
        a, b = start * self.group_size, stop * self.group_size
        return TrainingBatch(self.prompt_token_ids[a:b], self.response_token_ids[a:b], self.policy_versions[a:b],
                             {k: v[a:b] for k, v in self.fields.items()}, self.group_size)

    def split(self, parts: int) -> list["TrainingBatch"]:
        """Up to ``parts`` contiguous batches of near-equal size that never cut a group (all ``parts`` of
        them, each non-empty, when there are at least that many groups; ``micro_batch_count`` parts hold at
        most the micro-batch size each)."""
        if len(self) % self.group_size:
            raise ValueError(f"batch of {len(self)} sequences is not a whole number of groups of {self.group_size}")
        bounds = [i * self.num_groups // parts for i in range(parts + 1)]  # sizes differ by at most one group
        return [self.groups(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def pair_batch(pairs: list[tuple[Completion, Completion, float]], prompt_token_ids: list[list[int]] | None = None
               ) -> TrainingBatch:
    """Pairs (first, second, p = P(first > second)) as consecutive sequences, group_size 2; ``p`` and the
    response length are per-sequence fields (each pair's p repeated on both of its sequences).
    ``prompt_token_ids`` overrides the prompt of each pair (DRIFT trains on x, not on its repair prompt)."""
    prompts, responses, versions, p_values, lengths = [], [], [], [], []
    for i, (first, second, p) in enumerate(pairs):
        prompt = prompt_token_ids[i] if prompt_token_ids is not None else first.prompt_token_ids
        for c in (first, second):
            prompts.append(prompt)
            responses.append(c.response_token_ids)
            versions.append(c.policy_version)
            p_values.append(p)
            lengths.append(max(len(c.response_token_ids), 1))
    return TrainingBatch(prompts, responses, versions,
                         {"p": np.asarray(p_values, dtype=np.float32),
                          "length": np.asarray(lengths, dtype=np.float32)}, group_size=2)


def labelled_pairs(groups, labels: str, rng: np.random.Generator) -> list[tuple[Completion, Completion, float]]:
    """(first, second, p) from two-response groups. ``soft`` keeps p = P(first > second); ``hard`` draws the
    winner with probability p (as a noisy annotator would) and puts it first with p = 1, which matches the
    soft target in expectation (taking the argmax of p would not)."""
    pairs = []
    for g in groups:
        a, b, p = g.completions[0], g.completions[1], float(g.matrix[0, 1])
        if labels == "hard":
            a, b, p = (a, b, 1.0) if rng.random() < p else (b, a, 1.0)
        pairs.append((a, b, p))
    return pairs


def first_second(values):
    """(values of the first sequences, values of the second sequences) of a pair batch."""
    return values[0::2], values[1::2]
