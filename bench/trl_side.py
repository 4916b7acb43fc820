"""The TRL half of the selfplay-vs-TRL benchmark: a few steps of TRL's OnlineDPO or Nash-MD trainer on the
sorting task, timed. Run it with a TRL venv's python (``bench/trl_envs.py``), not the selfplay venv::

    PY=$(.venv/bin/python -c "from bench.trl_envs import trl_python, ONLINE_DPO_VERSION as V; print(trl_python(V))")
    $PY bench/trl_side.py --trainer online_dpo --model /tmp/vt-tiny --steps 6 --warmup 2 \
        --prompts-per-step 16 --completions 2 --max-new-tokens 6 --seed 0 --spawned-at $(date +%s.%N) --json out.json

(``--trainer nash_md`` needs ``NASH_MD_VERSION``'s venv: trl 1.14 dropped Nash-MD.)

Both trainers draw 2 completions per prompt (OnlineDPO: two policy samples; Nash-MD: one policy sample and one
from the policy/reference geometric mixture). The judge prefers a over b with probability
sigmoid(20 (score(x, a) - score(x, b))). TRL >= 1.1 has no judges, so it is plugged in the way each trainer takes
a preference signal: OnlineDPO (reward functions, chosen = the higher reward) gets reward 1 for the sampled
winner and 0 for the loser; Nash-MD (one reward model, P(a beats b) = sigmoid(r_a - r_b)) gets r = 20 score,
which gives exactly the judge's probability.

completions/s = (steps - warmup) * prompts_per_step * completions / (seconds from the end of step ``warmup`` to
the end of the last step); start-up = first step's begin - ``--spawned-at``; busy share over the same window.
"""

from __future__ import annotations

import time

_LOADED_AT = time.time()  # stands in for --spawned-at when the parent does not give it

import argparse
import json
import math
import os
import random
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
import trl
from datasets import Dataset
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from bench.machine_busy import MachineBusy


def _sorting_task():
    """selfplay's sorting task, read from its file: this runs in TRL's own venv, where selfplay is not installed
    (tasks/sorting.py imports nothing of selfplay's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sorting_task", Path(__file__).resolve().parents[1] / "tasks"
                                                  / "sorting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SORTING = _sorting_task()
make_prompts, score = _SORTING.make_prompts, _SORTING.score

try:  # BasePairwiseJudge exists up to trl 1.0
    from trl.experimental.judges import BasePairwiseJudge
except ImportError:
    BasePairwiseJudge = object

JUDGE_SHARPNESS = 20.0


class SortingJudge(BasePairwiseJudge):
    """BasePairwiseJudge's interface: P(a beats b) = sigmoid(20 (score(x, a) - score(x, b)))."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def judge(self, prompts, completions, shuffle_order=True, return_scores=False):
        probs = [1.0 / (1.0 + math.exp(-JUDGE_SHARPNESS * (score(x, a) - score(x, b))))
                 for x, (a, b) in zip(prompts, completions, strict=True)]
        if return_scores:
            return probs
        return [0 if self.rng.random() < p else 1 for p in probs]  # index of the sampled winner


def online_dpo_reward(judge: SortingJudge, strip):
    """OnlineDPO's reward function: it gets 2B completions, pair i being (i, i + B); 1 to the winner, 0 to the loser."""
    def sorting_judge(prompts, completions, **_):
        half = len(prompts) // 2
        winners = judge.judge([strip(p) for p in prompts[:half]], list(zip(completions[:half], completions[half:])))
        return [float(w == 0) for w in winners] + [float(w == 1) for w in winners]
    return sorting_judge


class JudgeRewardModel(nn.Module):
    """The "reward model" trl 1.13's Nash-MD calls (experimental.utils.get_reward: backbone, then ``score`` at the
    last token): every position holds 20 * score of the decoded sequence, so sigmoid(r_model - r_mixture) is the
    judge's P(model beats mixture)."""

    base_model_prefix = "backbone"

    def __init__(self, tokenizer, prompt_words: int):
        super().__init__()
        self.config = SimpleNamespace(_name_or_path="sorting-judge")
        self.tokenizer, self.prompt_words = tokenizer, prompt_words
        self.score = nn.Identity()

    def backbone(self, input_ids, **_):
        rewards = []
        for text in self.tokenizer.batch_decode(input_ids, skip_special_tokens=True):
            words = text.split()
            prompt, response = " ".join(words[:self.prompt_words]), " ".join(words[self.prompt_words:])
            rewards.append(JUDGE_SHARPNESS * score(prompt, response))
        hidden = torch.tensor(rewards).view(-1, 1, 1).expand(-1, input_ids.shape[1], 1)
        return SimpleNamespace(last_hidden_state=hidden)


class StepTimer(TrainerCallback):
    """Wall time of the first step's begin and of every step's end; machine busy share after warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.first_begin, self.ends = warmup, None, []
        self.busy, self.busy_share = MachineBusy(), None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_begin is None:
            self.first_begin = time.time()
            if self.warmup == 0:
                self.busy.start()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.time())
        if len(self.ends) == self.warmup:
            self.busy.start()
        if state.global_step >= state.max_steps:
            self.busy_share = self.busy.stop()


def build_trainer(args, tokenizer, callbacks, output_dir):
    bos = tokenizer.bos_token
    strip = lambda p: p[len(bos):].lstrip() if p.startswith(bos) else p  # noqa: E731
    # trl 1.16's OnlineDPO tokenizes prompts with add_special_tokens=False; the model expects <bos> first.
    prompts = [f"{bos} {p}" for p in make_prompts(args.steps * args.prompts_per_step + args.prompts_per_step,
                                                  args.seed)]
    dataset = Dataset.from_dict({"prompt": prompts})
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    common = dict(
        output_dir=output_dir, max_steps=args.steps, per_device_train_batch_size=args.prompts_per_step,
        gradient_accumulation_steps=1, learning_rate=1e-4, lr_scheduler_type="constant",
        bf16=False, fp16=False, gradient_checkpointing=False,  # TRL's defaults: bf16 on, checkpointing on
        temperature=1.0, max_new_tokens=args.max_new_tokens,
        generation_kwargs={"min_new_tokens": args.max_new_tokens},  # EOS masked: exactly T tokens each
        use_vllm=False, report_to="none", save_strategy="no", eval_strategy="no", logging_steps=args.steps,
        dataloader_num_workers=0, use_cpu=True, seed=args.seed, disable_tqdm=True)
    judge = SortingJudge(args.seed)
    if args.trainer == "online_dpo":
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer
        return OnlineDPOTrainer(model=model, reward_funcs=online_dpo_reward(judge, strip),
                                args=OnlineDPOConfig(**common), train_dataset=dataset, processing_class=tokenizer,
                                callbacks=callbacks)
    from trl.experimental.nash_md import NashMDConfig, NashMDTrainer
    reward_model = JudgeRewardModel(tokenizer, prompt_words=len(strip(prompts[0]).split()))
    return NashMDTrainer(model=model, reward_funcs=reward_model, args=NashMDConfig(**common),
                         train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", choices=["online_dpo", "nash_md"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompts-per-step", type=int, default=16)
    parser.add_argument("--completions", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spawned-at", type=float, default=_LOADED_AT)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.completions != 2:
        parser.error("TRL's OnlineDPO and Nash-MD draw exactly 2 completions per prompt")
    if not 0 <= args.warmup < args.steps:
        parser.error("need 0 <= warmup < steps")

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory(prefix="trl-side-") as output_dir:
        build_trainer(args, tokenizer, [timer], output_dir).train()

    window_start = timer.ends[args.warmup - 1] if args.warmup else timer.first_begin
    seconds = timer.ends[-1] - window_start
    begins = [timer.first_begin, *timer.ends[:-1]]
    result = {
        "trainer": args.trainer, "trl_version": trl.__version__,
        "completions_per_s": (args.steps - args.warmup) * args.prompts_per_step * args.completions / seconds,
        "startup_s": timer.first_begin - args.spawned_at, "busy_share": timer.busy_share, "seconds": seconds,
        "steps": args.steps, "step_seconds": [end - begin for begin, end in zip(begins, timer.ends)],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"[trl_side] {args.trainer} trl {trl.__version__}: {result['completions_per_s']:.1f} completions/s, "
          f"start-up {result['startup_s']:.1f} s, busy {result['busy_share']:.2f}, "
          f"{args.steps - args.warmup} timed steps in {seconds:.2f} s", flush=True)


if __name__ == "__main__":
    main()
