"""The experience phase: turn a step's prompts into scored groups, as the algorithm's ``RolloutNeeds`` say.

- sample K responses from the policy, or from the geometric mixture pi^beta (token-level in the torch
  engine, or sequence-level importance resampling of policy samples weighted with the learner's log-probs);
- add a mixture opponent per prompt (Nash-MD);
- ask the preference service for each group's matrix and the batch's preference/* stats, let the policy judge
  its own responses (OSP), or build DRIFT's (positive, dissatisfying reply) pairs;
- drop groups whose preferences are NaN or outside [0, 1], and count them.

What a batch counts (preference calls, rejected groups, sampled responses and tokens) is returned with it, never
written into the run state here: in ``mode=async`` this runs in the producer thread, and only the controller's
thread folds a batch's counts into the run state, when it takes the batch.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from selfplay.errors import ConfigError
from selfplay.preference.self_judge import judge_pairs, judge_matrix
from selfplay.rollout.chat_rendering import fit_prompt
from selfplay.rollout.geometric_mixture import resample_sequence_mixture
from selfplay.rollout.records import Completion, PreferenceGroup, SamplingSpec

if TYPE_CHECKING:
    from selfplay.actors.learner_group import LearnerGroup
    from selfplay.actors.preference_replicas import PreferenceReplicas
    from selfplay.actors.rollout_fleet import RolloutFleet
    from selfplay.learner.algorithms.base import RolloutNeeds
    from selfplay.config_fields import Section
    from selfplay.orchestration.config.schema import RolloutConfig
    from selfplay.orchestration.run.inputs import PromptSet, RunInputs


def valid_matrix(matrix: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(matrix)) and matrix.min() >= 0.0 and matrix.max() <= 1.0)


class Experience:
    """The experience phase of one run, given the config it reads and the handles it uses: the ``rollout``
    section, the run's ``seed``, the chosen algorithm's own ``options`` (OSP's judge, DRIFT's filter) and their
    ``section`` name (for errors), its ``needs``; the run's inputs and its training prompts (DRIFT's
    conversations, or the task's), the rollout fleet, the learner (the sequence-level mixture's log-probs), the
    preference replicas, and ``on_phase`` (sync mode: the run's current phase is told each part as it starts;
    None in async mode, where the producer runs beside the step)."""

    def __init__(self, rollout: RolloutConfig, seed: int, options: Section, section: str, needs: RolloutNeeds,
                 inputs: RunInputs, train: PromptSet, fleet: RolloutFleet, learner: LearnerGroup,
                 preference: PreferenceReplicas, on_phase: Callable[[str], None] | None) -> None:
        self.rollout = rollout
        self.seed = seed
        self.options = options
        self.section = section
        self.needs = needs
        self.inputs = inputs
        self.train = train
        self.fleet = fleet
        self.learner = learner
        self.preference = preference
        self.on_phase = on_phase
        self.sampler = None
        if self.needs.uses_mixture:
            self.sampler = self.needs.mixture_sampler
            if self.sampler == "auto":
                self.sampler = "token" if self.rollout.engine == "torch" else "sequence"
            if self.sampler == "token" and self.rollout.engine != "torch":
                raise ConfigError(f"algorithm.{self.section}.mixture.sampler=token needs "
                                  "rollout.engine=torch (vLLM holds only the policy); use sampler=sequence")
            if self.sampler == "sequence" and (self.rollout.temperature != 1.0 or self.rollout.top_p != 1.0):
                raise ConfigError("the sequence-level mixture sampler reweights samples of pi itself: it needs "
                                  "rollout.temperature=1 and rollout.top_p=1")
            self.candidates = self.needs.mixture_candidates
        self.verdict_ids: list[int] = []
        if self.needs.preferences == "self_judge":
            self.verdict_ids = self._verdict_token_ids()

    # -- sampling -----------------------------------------------------------------------------------

    def spec(self, n: int, step: int) -> SamplingSpec:
        r = self.rollout
        return SamplingSpec(n=n, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens,
                            ignore_eos=r.ignore_eos, seed=self.seed * 1_000_003 + step * 10_007,
                            stop=list(r.stop))

    def from_mixture(self, indices: list[int], n: int, step: int) -> tuple[list[list[Completion]], dict]:
        """``n`` responses per prompt from pi^beta, with the configured sampler."""
        beta = self.needs.mixture_beta
        spec = self.spec(n, step + 500_000)
        ids, records = self.prompts(indices)
        if self.sampler == "token":
            return self.fleet.generate(indices, ids, records, spec, mixture_beta=beta), {}
        # Sequence level: M candidates from pi per draw, weights ∝ exp(beta (log mu - log pi)), resample one.
        spec.n = n * self.candidates
        candidates = self.fleet.generate(indices, ids, records, spec)
        flat = [c for group in candidates for c in group]
        policy, reference = self.learner.call(
            "policy_and_reference_logprobs", [c.prompt_token_ids for c in flat], [c.response_token_ids for c in flat])
        generator = torch.Generator().manual_seed(self.seed * 7_919 + step)
        groups, ess = [], []
        for g, group in enumerate(candidates):
            chosen = []
            for draw in range(n):
                lo = g * len(group) + draw * self.candidates
                picked, size = resample_sequence_mixture(
                    torch.tensor(policy[lo:lo + self.candidates]), torch.tensor(reference[lo:lo + self.candidates]),
                    beta, 1, generator)
                chosen.append(group[draw * self.candidates + int(picked[0])])
                ess.append(size)
            groups.append(chosen)
        return groups, {"mixture/ess": float(np.mean(ess)), "mixture/candidates": self.candidates}

    def fused_policy_and_mixture(self) -> bool:
        """Whether the K policy samples and the mixture opponent come from one decoding loop of the torch engine
        (Nash-MD's token sampler): the policy's rows are drawn as the mixture's are, from the whole softmax at the
        temperature (so not with top-p), EOS and stop strings cut afterwards."""
        return self.needs.sample_from == "policy" and self.needs.opponent == "mixture" \
            and self.sampler == "token" and self.rollout.top_p == 1.0

    # -- the phase ----------------------------------------------------------------------------------

    def prompts(self, indices: list[int]) -> tuple[list[list[int]], list]:
        """(token ids, records) of the training prompts at ``indices``."""
        train = self.train
        return [train.token_ids[i] for i in indices], [train.records[i] for i in indices]

    @contextmanager
    def timed(self, metrics: dict, phase: str):
        """Adds the block's seconds to ``time/<phase>`` (``generate`` and ``score``: the parts of experience).
        In sync mode the phase is also the run's current one (heartbeat, step watchdog)."""
        if self.on_phase is not None:
            self.on_phase(phase)
        start = time.perf_counter()
        yield
        key = f"time/{phase}"
        metrics[key] = metrics.get(key, 0.0) + time.perf_counter() - start

    def collect(self, indices: list[int], step: int) -> tuple[list[PreferenceGroup], dict, Counter]:
        """(the usable groups, the batch's metrics, the batch's counts)."""
        counts: Counter = Counter()
        if self.needs.preferences == "dsat":
            return self.collect_dsat(indices, step, counts)
        k = self.needs.responses_per_prompt
        metrics: dict = {}
        times: dict = {}
        with self.timed(times, "generate"):  # with the mixture samplers' learner log-probs
            if self.fused_policy_and_mixture():  # K policy samples, then the opponent, in each group
                groups = self.fleet.generate(indices, *self.prompts(indices), self.spec(1, step + 500_000),
                                        mixture_beta=self.needs.mixture_beta, policy_n=k)
            else:
                if self.needs.sample_from == "mixture":
                    groups, metrics = self.from_mixture(indices, k, step)
                else:
                    groups = self.fleet.generate(indices, *self.prompts(indices), self.spec(k, step))
                if self.needs.opponent == "mixture":
                    opponents, metrics = self.from_mixture(indices, 1, step)
                    groups = [g + o for g, o in zip(groups, opponents)]
        metrics.update(self.response_metrics(groups, counts))
        judge_examples = None
        with self.timed(times, "score"):
            if self.needs.preferences == "self_judge":
                matrices, judge_metrics, judge_examples = self.self_judge(groups, step, counts)
                metrics.update(judge_metrics)
            else:
                matrices, stats = self.preference.matrices(groups)
                counts["preference_calls"] += stats.calls
                metrics.update(stats.metrics())
        return self.keep_valid(groups, matrices, metrics | times, counts, judge_examples)

    @staticmethod
    def response_metrics(groups: list[list[Completion]], counts: Counter) -> dict:
        """How long responses are and how many were cut at ``rollout.max_tokens``; adds them to ``counts``."""
        flat = [c for g in groups for c in g if c.policy_version >= 0]
        cut = sum(not c.finished for c in flat)
        tokens = sum(len(c.response_token_ids) for c in flat)
        counts["sampled_responses"] += len(flat)
        counts["truncated_responses"] += cut
        counts["sampled_tokens"] += tokens
        return {"rollout/truncated_share": cut / max(len(flat), 1), "rollout/response_tokens": tokens,
                "rollout/response_tokens_mean": float(np.mean([len(c.response_token_ids) for c in flat])) if flat
                else 0.0}

    @staticmethod
    def keep_valid(groups, matrices, metrics, counts: Counter, judge_examples=None
                   ) -> tuple[list[PreferenceGroup], dict, Counter]:
        judge_examples = judge_examples or [[] for _ in groups]
        kept = [PreferenceGroup(g, m, j) for g, m, j in zip(groups, matrices, judge_examples)
                if valid_matrix(np.asarray(m, dtype=float))]
        counts["scored_groups"] += len(groups)
        counts["rejected_groups"] += len(groups) - len(kept)
        metrics["preference/rejected_share"] = (len(groups) - len(kept)) / len(groups) if groups else 0.0
        return kept, metrics, counts

    # -- OSP: the policy judges its own responses ---------------------------------------------------

    def _verdict_token_ids(self) -> list[int]:
        o = self.options  # a self-judging algorithm's section: judge_template, verdict_a, verdict_b
        ids = []
        for key, word in (("verdict_a", o.verdict_a), ("verdict_b", o.verdict_b)):
            tokens = self.inputs.renderer.tokenizer(word, add_special_tokens=False).input_ids
            if len(tokens) != 1:
                raise ConfigError(f"algorithm.{self.section}.{key}='{word}' must be exactly one token of the policy's "
                                  f"tokenizer (it is {len(tokens)})")
            ids.append(tokens[0])
        return ids

    def self_judge(self, groups: list[list[Completion]], step: int, counts: Counter
                   ) -> tuple[list[np.ndarray], dict, list[list]]:
        """The policy's judgements of every pair, its agreement with the preference model, and during the
        judge warm-up the judged presentations labelled by the preference model, per group:
        [judge prompt ids, verdict_a id, verdict_b id, P(the first shown is better)]."""
        texts, where = judge_pairs(self.options.judge_template, groups)
        # Judge prompts are rendered like any prompt (as a user turn for chat models), and cut from the left
        # to what the engine accepts with the verdict token after them.
        renderer, room = self.inputs.renderer, self.inputs.max_model_len - 1
        ids = [fit_prompt(renderer.render(t), room, "truncate", renderer.tokenizer.bos_token_id) for t in texts]
        logprobs = self.fleet.next_token_logprobs(ids, self.verdict_ids)
        matrices = judge_matrix(groups, where, logprobs)
        # How often the self-judge agrees with the preference model (the tiny model starts as a poor judge).
        reference, stats = self.preference.matrices(groups)
        counts["preference_calls"] += stats.calls
        agree = [np.sign(m[i, j] - 0.5) == np.sign(r[i, j] - 0.5)
                 for m, r in zip(matrices, reference) for i in range(len(m)) for j in range(i + 1, len(m))
                 if r[i, j] != 0.5]
        examples: list[list] = [[] for _ in groups]
        if step <= self.options.judge_warmup_steps:
            a, b = self.verdict_ids
            for n, (g, i, j) in enumerate(where):
                examples[g].append([ids[2 * n], a, b, float(reference[g][i, j])])
                examples[g].append([ids[2 * n + 1], a, b, float(reference[g][j, i])])
        return matrices, {"osp/judge_agreement": float(np.mean(agree)) if agree else float("nan"),
                          "osp/judge_calls": len(texts), **stats.metrics()}, examples

    # -- DRIFT: improved answers to dissatisfying replies -------------------------------------------

    def collect_dsat(self, indices: list[int], step: int, counts: Counter
                     ) -> tuple[list[PreferenceGroup], dict, Counter]:
        dsat = self.inputs.dsat
        prompt_ids, records = self.prompts(indices)
        times: dict = {}
        with self.timed(times, "generate"):
            positives = self.fleet.generate(indices, [dsat.repair_ids[i] for i in indices], records, self.spec(1, step))
        metrics = self.response_metrics(positives, counts) | times
        groups = []
        for n, (group, i) in enumerate(zip(positives, indices)):
            # The positive keeps its repair prompt; the algorithm trains both replies on x, the rejected's prompt.
            rejected = Completion(prompt_index=i, prompt=records[n], prompt_token_ids=prompt_ids[n],
                                  response_token_ids=dsat.rejected_ids[i], response_text=dsat.rejected[i],
                                  policy_version=-1)
            groups.append([group[0], rejected])
        threshold = self.options.filter_threshold
        if threshold > 0:  # optional: keep a positive only if the preference model prefers it
            # Asked like every comparison: preference.truncated and identical-response ties apply.
            with self.timed(metrics, "score"):
                probabilities, stats = self.preference.compare([g[0] for g in groups], [g[1] for g in groups])
            counts["preference_calls"] += stats.calls
            keep = [p > threshold for p in probabilities]
            metrics["drift/kept_fraction"] = float(np.mean(keep))
            groups = [g for g, k in zip(groups, keep) if k]
            probabilities = [p for p, k in zip(probabilities, keep) if k]
        else:
            probabilities = [1.0] * len(groups)
        matrices = [np.array([[0.5, p], [1.0 - p, 0.5]]) for p in probabilities]
        return self.keep_valid(groups, matrices, metrics, counts)
