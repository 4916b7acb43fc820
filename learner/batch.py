"""The training batch the controller hands the learner: token ids plus per-sequence target fields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainingBatch:
    """Sequences to train on; ``fields`` holds per-sequence arrays an algorithm's loss reads
    (for SPPO: ``p_win``, the estimated win-rate of each response against the current policy)."""
    prompt_token_ids: list[list[int]]
    response_token_ids: list[list[int]]
    policy_versions: list[int]
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.response_token_ids)

    def split(self, parts: int) -> list["TrainingBatch"]:
        """Exactly ``parts`` contiguous micro-batches (some may be one shorter), for gradient accumulation."""
        bounds = np.linspace(0, len(self), parts + 1).round().astype(int)
        return [TrainingBatch(self.prompt_token_ids[a:b], self.response_token_ids[a:b],
                              self.policy_versions[a:b], {k: v[a:b] for k, v in self.fields.items()})
                for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
