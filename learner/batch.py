"""The training batch the controller hands the learner: token ids plus per-sequence target fields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    def split(self, parts: int) -> list["TrainingBatch"]:
        """Up to ``parts`` contiguous micro-batches of near-equal size that never cut a group, for
        gradient accumulation (DeepSpeed steps after exactly ``parts`` backward passes, so the caller
        pads with empty parts only if it must; here every part is non-empty when groups >= parts)."""
        if len(self) % self.group_size:
            raise ValueError(f"batch of {len(self)} sequences is not a whole number of groups of {self.group_size}")
        groups = len(self) // self.group_size
        bounds = (np.linspace(0, groups, parts + 1).round().astype(int) * self.group_size)
        return [TrainingBatch(self.prompt_token_ids[a:b], self.response_token_ids[a:b],
                              self.policy_versions[a:b], {k: v[a:b] for k, v in self.fields.items()},
                              self.group_size)
                for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
