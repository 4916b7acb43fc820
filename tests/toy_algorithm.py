"""A toy algorithm in one file, as a user (or a new selfplay module) adds one: best-of-K rejection-sampling
fine-tuning (RAFT, arXiv 2304.06767). Per prompt, K responses from the policy; the ``top`` of them by win-rate
against the others are trained on with the mean token NLL,
    L = -mean over kept y of  log pi(y|x) / |y|
Loaded with SELFPLAY_ALGORITHM_MODULES=tests.toy_algorithm (tests/test_algorithm_registry.py)."""

from __future__ import annotations


import numpy as np
import torch

from selfplay.config_fields import Section, _f
from selfplay.learner.algorithms.base import AlgorithmEntry, RolloutNeeds
from selfplay.learner.batch import TrainingBatch
from selfplay.preference.matrix import win_rates


class BestOfK:
    name = "best_of_k"

    def __init__(self, k: int, top: int) -> None:
        self.top = top
        self.needs = RolloutNeeds(responses_per_prompt=k, preferences="matrix")

    def sequences_per_step(self, prompts_per_step: int) -> int:
        return prompts_per_step * self.top

    def build_batch(self, groups, rng=None):
        prompts, responses, versions, lengths, best = [], [], [], [], []
        for group in groups:
            rates = win_rates(group.matrix)
            for i in np.argsort(-rates, kind="stable")[: self.top]:
                c = group.completions[i]
                prompts.append(c.prompt_token_ids)
                responses.append(c.response_token_ids)
                versions.append(c.policy_version)
                lengths.append(max(1, len(c.response_token_ids)))
            best.append(rates.max())
        return (TrainingBatch(prompts, responses, versions, {"length": np.asarray(lengths, dtype=np.float32)}),
                {"best_win_rate": float(np.mean(best))})

    def loss(self, policy_logps, ref_logps, batch):
        lengths = torch.tensor(batch.fields["length"], dtype=policy_logps.dtype, device=policy_logps.device)
        loss = -(policy_logps / lengths).mean()
        return loss, {"loss": loss.item(), "sft_nll": loss.item()}

    def reference_resets_after(self, step: int) -> bool:
        return False


class BestOfKConfig(Section):
    top: int = _f(1, "responses kept per prompt, the best by win-rate against the others", ge=1)


ENTRIES = (AlgorithmEntry("best_of_k", "best_of_k", BestOfKConfig, lambda o, run: BestOfK(k=run.k, top=o.top),
                          "best-of-K rejection-sampling fine-tuning (a toy in tests/)",
                          embedded_preset={"top": 2}),)
