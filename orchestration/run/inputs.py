"""Everything a run reads, checked and rendered before Ray starts: the policy's tokenizer, the prompts as token
ids within their length budget, DRIFT's conversations, the engines' context length, the preference model's
inputs (its function or class imports, its classifier directory has the right head).

A bad input stops here with one line naming the key or file, before any actor, engine or run directory exists.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

from selfplay.orchestration.config.schema import Config
from selfplay.errors import ConfigError, InputError
from selfplay.learner.algorithms.registry import entry_of, needs_of, options_of
from selfplay.orchestration.run.policy_model import embedded_model_spec, local_model_dir
from selfplay.rollout.chat_rendering import PromptRenderer, eos_token_ids, fit_prompt, prompt_text
from selfplay.tasks.dsat import load_wildfeedback_jsonl, synthetic_sorting_dsat
from selfplay.tasks.prompt_data import drop_trailing_answers
from selfplay.tasks.prompts import train_and_eval_prompts

# Extra room in an OSP judge prompt beyond the prompt, two responses and the template: re-tokenizing response
# text may merge or split a few tokens differently from the sampled ids.
_JUDGE_SLACK = 16


@dataclass
class PromptSet:
    """Prompt records as the data holds them and their token ids, rendered once; ``dropped`` and ``truncated``
    count the records over the length budget."""
    records: list
    token_ids: list[list[int]]
    dropped: int = 0
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def longest(self) -> int:
        return max(len(ids) for ids in self.token_ids)


@dataclass
class DSATSet:
    """DRIFT's conversations: what is trained (the conversation x), the repair prompt the positive is sampled
    from (x, the dissatisfying reply and the complaint), and the dissatisfying reply itself."""
    prompts: PromptSet
    repair_ids: list[list[int]]
    rejected: list[str]
    rejected_ids: list[list[int]]


@dataclass
class RunInputs:
    model_path: str | None          # None until the embedded model is built into the run directory
    renderer: PromptRenderer
    train: PromptSet
    eval: PromptSet
    dsat: DSATSet | None
    max_model_len: int
    prompt_budget: int
    preference_model_path: str | None = None  # reward_model, pairwise, judge: the model's local directory
    trailing_answers_dropped: int = 0  # chats whose final assistant turn(s) were removed (both splits)

    def summary(self) -> dict:
        return {"train_prompts": len(self.train), "eval_prompts": len(self.eval),
                "dropped_overlong": self.train.dropped + self.eval.dropped,
                "truncated_overlong": self.train.truncated + self.eval.truncated,
                "trailing_answers_dropped": self.trailing_answers_dropped,
                "prompt_budget_tokens": self.prompt_budget, "max_model_len": self.max_model_len}


def load_run_inputs(config: Config) -> RunInputs:
    """Read, check and render the run's inputs (the embedded model's tokenizer is built in memory)."""
    c = config
    train_records, eval_records = train_and_eval_prompts(c.task, c.run.seed, c.preference.strategies)
    answers = 0
    if c.task.trailing_assistant_turns == "drop":
        (train_records, in_train), (eval_records, in_eval) = map(drop_trailing_answers, (train_records, eval_records))
        answers = in_train + in_eval
    dsat_examples = None
    if needs_of(c).preferences == "dsat":  # DRIFT: conversations with a dissatisfying reply, not the task's prompts
        dsat_examples, eval_records = _drift_examples(c, train_records, eval_records)
    model_path = local_model_dir(c.policy.model_path) if c.policy.model_path else None
    preference_model_path = check_preference_inputs(c)
    tokenizer, context = policy_tokenizer(c, model_path)
    renderer = PromptRenderer(tokenizer, c.task.chat_template, c.task.system_prompt,
                              source=f"the tokenizer of {model_path or 'the embedded model'}",
                              system_in_user_turn=c.task.system_prompt_in_user_turn)
    budget = c.rollout.max_prompt_tokens
    if context is not None:
        if context - c.rollout.max_tokens < 1:
            raise ConfigError(f"config key 'rollout.max_tokens' ({c.rollout.max_tokens}) leaves no room for a prompt "
                              f"in the model's context of {context} tokens")
        budget = min(budget, context - c.rollout.max_tokens)
    # Errors name the key and file the prompts came from.
    drift_data = options_of(c).data_path if dsat_examples is not None else None
    train_key, train_source = (f"algorithm.{entry_of(c).section}.data_path", drift_data) if drift_data \
        else ("task.prompts_path", c.task.prompts_path)
    dsat = None
    if dsat_examples is not None:
        dsat = _render_dsat(c, renderer, dsat_examples, budget, f"{train_key} {train_source or '(built-in)'}",
                            model_path)
        train = dsat.prompts
    else:
        train = render_prompt_set(train_records, renderer, budget, c.task.overlong,
                                  f"{train_key} {train_source or '(built-in task)'}")
    eval_source = c.task.eval_prompts_path or train_source
    evaluation = render_prompt_set(eval_records, renderer, budget, c.task.overlong,
                                   f"{'task.eval_prompts_path' if c.task.eval_prompts_path else train_key} "
                                   f"{eval_source or '(built-in task)'} (evaluation prompts)")
    longest = max(train.longest, evaluation.longest, max(map(len, dsat.repair_ids)) if dsat else 0)
    max_model_len = engine_context(c, renderer, longest, context)
    return RunInputs(model_path, renderer, train, evaluation, dsat, max_model_len, budget, preference_model_path,
                     answers)


def policy_tokenizer(config: Config, model_path: str | None):
    """(tokenizer, context length or None) of the policy; the embedded model's tokenizer is built in memory."""
    if model_path is None:
        from selfplay.tasks.tiny_model import build_tokenizer
        spec = embedded_model_spec(config)
        return build_tokenizer(spec), spec.max_positions
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model_config = AutoConfig.from_pretrained(model_path)
    except Exception as exc:  # transformers raises many types for a broken model directory
        raise InputError(f"policy.model_path {model_path}: cannot load its tokenizer or config "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    text_config = getattr(model_config, "get_text_config", lambda: model_config)()
    context = next((getattr(text_config, k) for k in ("max_position_embeddings", "n_positions", "max_seq_len")
                    if isinstance(getattr(text_config, k, None), int)), None)
    return tokenizer, context


def render_prompt_set(records: list, renderer: PromptRenderer, budget: int, overlong: str, source: str) -> PromptSet:
    """Render every record once and fit it to ``budget`` tokens (drop or left-truncate); an error naming
    ``source`` when no prompt is usable."""
    from tqdm import tqdm

    bos = renderer.tokenizer.bos_token_id
    kept, ids, dropped, truncated, shortest = [], [], 0, 0, None
    for number, record in enumerate(tqdm(records, desc="rendering prompts", unit="prompt",
                                         disable=len(records) < 20_000, file=sys.stderr)):
        try:
            rendered = renderer.render(record)
        except Exception as exc:  # the chat template's own raise_exception (jinja TemplateError) and the like
            hint = "; set task.system_prompt_in_user_turn=true" if "system" in str(exc).lower() else ""
            raise InputError(f"{source}: prompt {number} cannot be rendered with the chat template of "
                             f"{renderer.source} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                             f"{hint}") from None
        shortest = len(rendered) if shortest is None else min(shortest, len(rendered))
        fitted = fit_prompt(rendered, budget, overlong, bos)
        if fitted is None:
            dropped += 1
            continue
        truncated += len(fitted) < len(rendered)
        kept.append(record)
        ids.append(fitted)
    if not kept:
        raise InputError(f"{source}: none of its {len(records)} prompts fits in {budget} tokens (the shortest "
                         f"renders to {shortest}); raise rollout.max_prompt_tokens or set task.overlong=truncate")
    return PromptSet(kept, ids, dropped, truncated)


def engine_context(config: Config, renderer: PromptRenderer, longest_prompt: int, context: int | None) -> int:
    """vLLM's ``max_model_len``: the configured one (checked), or the longest prompt plus the response budget,
    with room for OSP's judge prompts (a prompt and two responses in a template), within the model's context."""
    r = config.rollout
    need = longest_prompt + r.max_tokens
    if needs_of(config).preferences == "self_judge":  # OSP's judge prompts hold two responses
        template = options_of(config).judge_template.format(prompt="", a="", b="")
        need = max(need, longest_prompt + len(renderer.render(template)) + 2 * r.max_tokens + _JUDGE_SLACK)
    if context is not None:
        need = min(need, context)
    if r.vllm.max_model_len:
        if r.vllm.max_model_len < longest_prompt + r.max_tokens:
            raise ConfigError(f"config key 'rollout.vllm.max_model_len' ({r.vllm.max_model_len}) is shorter than the "
                              f"longest prompt ({longest_prompt} tokens) plus rollout.max_tokens ({r.max_tokens}); "
                              "raise it, lower rollout.max_prompt_tokens, or set it to 0 (auto)")
        return r.vllm.max_model_len
    return need


def check_preference_inputs(config: Config) -> str | None:
    """The preference model's inputs, checked before anything starts; returns the local directory of a
    reward_model or pairwise classifier or a judge (a hub id resolved to its snapshot), which the service loads."""
    kind = config.preference.kind
    if kind == "function":
        check_preference_function(config)
    elif kind == "python":
        check_preference_class(config)
    elif kind in ("reward_model", "pairwise"):
        return check_preference_classifier(config)
    elif kind == "judge":
        return check_preference_judge(config)
    elif kind == "remote":
        check_preference_service(config)
    return None


def check_preference_service(config: Config) -> dict:
    """``preference.url`` answers ``/health`` and accepts the token in ``$preference.token_env``: one attempt,
    so a wrong address fails now rather than after ``preference.retry_seconds``. Returns what it serves."""
    from selfplay.preference.remote_model import PreferenceServiceError, ServiceClient, Unanswered

    p = config.preference
    if not p.url:
        raise ConfigError("config key 'preference.url' is required with preference.kind=remote "
                          "(e.g. http://127.0.0.1:8000)")
    client = ServiceClient(p.url, p.token_env, p.timeout_s)
    try:
        return client.attempt("GET", "/health")
    except Unanswered as exc:
        raise InputError(f"the preference service at {client.url} is unreachable ({exc}): start it with "
                         "`selfplay serve-preference CONFIG` or fix preference.url") from None
    except PreferenceServiceError as exc:
        raise InputError(str(exc)) from None


def check_preference_classifier(config: Config) -> str:
    """``preference.model_path``: a local directory or hub id holding a sequence classifier with one label
    (reward_model: a Bradley-Terry score) or one or two (pairwise: P(a > b))."""
    from selfplay.preference.sequence_classifier import check_classifier_dir

    p = config.preference
    if not p.model_path:
        raise ConfigError(f"config key 'preference.model_path' is required with preference.kind={p.kind}")
    path = local_model_dir(p.model_path, key="preference.model_path")
    check_classifier_dir(path, "preference.model_path", (1,) if p.kind == "reward_model" else (1, 2))
    return path


def check_preference_judge(config: Config) -> str:
    """``preference.model_path`` holds a generative model whose tokenizer tells ``verdict_a`` from ``verdict_b``
    by their first tokens."""
    from transformers import AutoConfig, AutoTokenizer

    from selfplay.preference.llm_judge import verdict_token_ids

    p = config.preference
    path = local_model_dir(p.model_path, key="preference.model_path")
    try:
        architectures = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises many types for a broken model directory
        raise InputError(f"preference.model_path {path}: cannot load its config or tokenizer "
                         f"({type(exc).__name__})") from None
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        raise InputError(f"preference.model_path {path} is a sequence classifier; preference.kind=judge needs a "
                         "generative model (use kind=reward_model or pairwise for a classifier)")
    verdict_token_ids(tokenizer, p.verdict_a, p.verdict_b)
    return path


def check_preference_class(config: Config) -> None:
    """``preference.class_path`` must import here, from the working directory (it is constructed in the
    service, where a failure would only show once Ray is up)."""
    from selfplay.preference.function_model import import_callable, module_search_path

    try:
        import_callable(config.preference.class_path or "", module_search_path())
    except ValueError as exc:
        raise ConfigError(f"config key 'preference.class_path' {exc}") from None


def check_preference_function(config: Config) -> None:
    """``preference.function`` must import here, from the working directory, before anything starts."""
    from selfplay.preference.function_model import import_callable, module_search_path

    p = config.preference
    if not p.function:
        raise ConfigError("config key 'preference.function' is required with preference.kind=function "
                          "(e.g. my_rewards:score)")
    try:
        import_callable(p.function, module_search_path())
    except ValueError as exc:
        raise ConfigError(f"config key 'preference.function' {exc}") from None


def _drift_examples(config: Config, train_records: list, eval_records: list) -> tuple[list, list]:
    """DRIFT's training conversations and the evaluation prompts: a held-out slice of the WildFeedback file's
    own conversations (or task.eval_prompts_path), or synthetic ones for the built-in task."""
    d, key = options_of(config), f"algorithm.{entry_of(config).section}.data_path"
    if not d.data_path:
        if config.task.prompts_path:
            raise ConfigError(f"{key} is required when task.prompts_path is set "
                              "(synthetic DRIFT data exists only for the built-in task)")
        return synthetic_sorting_dsat(train_records, config.task.alphabet_size), eval_records
    examples = load_wildfeedback_jsonl(d.data_path)
    if config.task.eval_prompts_path:
        return examples, eval_records
    n_eval = config.task.num_eval_prompts
    if len(examples) <= n_eval:
        raise InputError(f"{key} {d.data_path} has {len(examples)} conversations; it needs more "
                         f"than task.num_eval_prompts={n_eval} to hold some out for evaluation")
    order = list(range(len(examples)))
    random.Random(config.run.seed).shuffle(order)
    held = set(order[:n_eval])
    return ([e for i, e in enumerate(examples) if i not in held],
            [examples[i].prompt for i in sorted(held)])


def _render_dsat(config: Config, renderer: PromptRenderer, examples: list, budget: int, source: str,
                 model_path: str | None) -> DSATSet:
    """Render each conversation and its repair prompt; an example is dropped when either is over budget.

    The logged rejected reply ends with the EOS id the engines end a finished reply with (unless
    ``rollout.ignore_eos``): the chosen reply is sampled and keeps its EOS, so without it the pair's margin
    could be won on the EOS token alone."""
    template, overlong = options_of(config).condition_template, config.task.overlong
    bos, tokenizer = renderer.tokenizer.bos_token_id, renderer.tokenizer
    prompts, repairs, kept, dropped, truncated = [], [], [], 0, 0
    for e in examples:
        rendered = [renderer.render(e.prompt), renderer.render(
            template.format(prompt=prompt_text(e.prompt), rejected=e.rejected, complaint=e.complaint))]
        fitted = [fit_prompt(ids, budget, overlong, bos) for ids in rendered]
        if fitted[0] is None or fitted[1] is None:
            dropped += 1
            continue
        truncated += any(len(f) < len(r) for f, r in zip(fitted, rendered))
        prompts.append(fitted[0])
        repairs.append(fitted[1])
        kept.append(e)
    if not kept:
        raise InputError(f"{source}: none of its {len(examples)} conversations and repair prompts fits in {budget} "
                         "tokens; raise rollout.max_prompt_tokens or set task.overlong=truncate")
    ending = [] if config.rollout.ignore_eos else eos_token_ids(tokenizer, model_path)[:1]
    return DSATSet(PromptSet([e.prompt for e in kept], prompts, dropped, truncated), repairs,
                   [e.rejected for e in kept],
                   [list(tokenizer(e.rejected, add_special_tokens=False).input_ids) + ending for e in kept])
