"""The run's configuration: one pydantic model per section, each key with its type, default, bounds and one-line
help (``selfplay config`` prints them), each rule that ties keys together a validator of the section that holds
them (across sections: ``Config``'s). Loaded from YAML and ``key=value`` overrides by loading.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, create_model, model_validator

from selfplay.config_fields import Auto, KeyProblem, Section, Words, _f
from selfplay.learner.algorithms import registry
from selfplay.learner.algorithms.base import missing_fields
from selfplay.orchestration.config.metrics import MetricsConfig


class RunConfig(Section):
    name: str = _f("tiny-sppo", "run name; the run directory is <output_dir>/<name>")
    output_dir: str = _f("runs", "parent folder of run directories")
    total_steps: int = _f(120, "learner optimisation steps to take", ge=1)
    seed: int = _f(0, "seed for prompts order, sampling and model init")
    log_every: int = _f(5, "steps between console progress lines", ge=1)
    overwrite: bool = _f(False, "replace an existing run directory of the same name")
    auto_resume: int = _f(0, "after a learner failure or a hung step, restart the whole run (new actors) from its "
                             "last complete checkpoint, up to this many times within one `selfplay train`", ge=0)
    step_timeout_s: float = _f(1800.0, "a step (or start-up phase) longer than this is a hang: every actor's stacks "
                                       "go to <run_dir>/stacks/, the run stops naming the phase (then auto_resume); "
                                       "also the weight-broadcast collective's timeout. 0: no limit", ge=0)

    @model_validator(mode="after")
    def _name(self) -> RunConfig:
        if not self.name or "/" in self.name:
            raise KeyProblem("name", "must be a non-empty name without '/'")
        return self


class PolicyConfig(Section):
    model_path: str | None = _f(
        None, "HF model directory or hub id; empty builds the embedded tiny model offline")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "weights dtype; auto: bfloat16 on GPUs that support it, float32 on CPUs")


class TaskConfig(Section):
    name: Literal["sorting", "game"] = _f(
        "sorting", "built-in task that makes prompts when no file is given: sorting (sort the letters), or game "
                   "(play one of preference.strategies, judged by preference.kind=game)")
    prompts_path: str | None = _f(
        None, "prompt data: a .jsonl or .parquet file, a directory written by datasets' save_to_disk, or a hub "
              "dataset name (online machines); empty: the built-in task")
    prompt_key: str = _f("prompt", "the record field holding the prompt: a string, or a chat "
                                   "[{role, content}, ...] such as a 'messages' column")
    split: str = _f("train", "the split to read from a dataset dictionary or hub dataset")
    eval_prompts_path: str | None = _f(
        None, "held-out evaluation prompts in any format prompts_path takes; empty: a deterministic slice of "
              "num_eval_prompts held out of the prompt data")
    eval_split: str = _f("", "the split to read from eval_prompts_path (empty: task.split)")
    chat_template: Literal["auto", "always", "never"] = _f(
        "auto", "render prompts with the policy tokenizer's chat template: auto when it has one, always (an "
                "error if it has none), never (the prompt text as is)")
    system_prompt: str | None = _f(None, "a system message put before every prompt that has none")
    system_prompt_in_user_turn: bool = _f(
        False, "put task.system_prompt (and a chat's own system message) at the start of the first user turn, "
               "for chat templates without a system role (Gemma's)")
    trailing_assistant_turns: Literal["drop", "keep"] = _f(
        "drop", "a chat prompt that ends with assistant turns (SFT data's reference answer): drop them, so the "
                "policy answers the last user turn, or keep them (the policy then continues the conversation)")
    overlong: Literal["drop", "truncate"] = _f(
        "drop", "prompts longer than rollout.max_prompt_tokens: drop them, or keep their last tokens")
    num_train_prompts: int = _f(4096, "built-in task: training prompts drawn from the seed")
    num_eval_prompts: int = _f(32, "held-out prompts for the win-rate evaluation", ge=1)
    prompt_letters: int = _f(6, "sorting task: letters per prompt", ge=1)
    alphabet_size: int = _f(16, "sorting task: letters a.. in the alphabet (<= 26)", ge=2, le=26)


class VLLMConfig(Section):
    kv_cache_gib: int = _f(1, "CPU KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)")
    gpu_memory_utilization: float = _f(0.5, "fraction of GPU memory vLLM may take (GPU only)", gt=0, le=1)
    enforce_eager: bool = _f(True, "disable CUDA graphs / torch.compile (required on CPU)")
    max_model_len: int = _f(0, "longest prompt + response the engine accepts; 0: the longest rendered prompt "
                               "(at most rollout.max_prompt_tokens) plus rollout.max_tokens, more where the "
                               "algorithm feeds longer sequences (OSP's judge prompts)", ge=0)
    tensor_parallel_size: int = _f(1, "GPUs per vLLM engine (tensor parallel); 1 on CPUs", ge=1)
    enable_prefix_caching: bool = _f(True, "reuse the KV cache of shared prompt prefixes (the K samples of a "
                                           "prompt share it)")


class RolloutConfig(Section):
    engine: Literal["vllm", "torch"] = _f(
        "vllm", "generation engine; nash_md and ipo_md default to torch, which draws their token-level mixture "
                "in one pass (vLLM holds only the policy: the sequence sampler, 8 policy samples per response)")
    num_workers: int = _f(1, "rollout worker actors (engines); with colocate: learner.num_ranks, one per rank", ge=1)
    colocate: bool = _f(
        False, "each learner rank hosts its own engine in its process and on its device, and samples its share of "
               "the step's prompts with the policy it trains; the push is a load inside the process. vllm: its own "
               "copy of the weights, loaded through reload_weights, asleep while the rank trains (GPUs); torch under "
               "ZeRO 0-2: the rank's own module, no copy. One GPU runs the whole loop; sync mode only")
    max_restarts: int = _f(3, "times Ray restarts a rollout worker that died; its batch is retried and it gets the "
                              "current weights (verified) before sampling again", ge=0)
    num_cpus: float = _f(1.0, "CPUs per rollout engine", ge=0)
    num_threads: Annotated[int, Field(ge=1)] | Auto = _f(
        "auto", "threads each engine computes with; auto: on the in-process cluster, every core while the "
                "engines generate in sync mode, the producer's share of the cores in async mode "
                "(orchestration/cluster/thread_budget.py); on a joined cluster Ray's default, one per CPU held")
    num_gpus: Annotated[float, Field(ge=0)] | Auto = _f(
        "auto", "GPUs per rollout engine; auto: vllm.tensor_parallel_size (torch engine: 1) with the CUDA build of "
                "torch, else 0")
    resources: dict[str, Annotated[float, Field(ge=0)]] = _f({}, "custom Ray resources per rollout engine, e.g. {rollout_node: 1} to place "
                                         "engines on the nodes started with that resource")
    cpu_threads_bind: str = _f(
        "auto", "CPU only: the cores each rollout worker runs on, one entry per worker separated by ';' (e.g. '1' "
                "or '2-3;4-5'), so that engines and the learner do not share cores in async mode; a worker then "
                "computes with one thread per core listed; auto: no binding. Ignored on GPUs")
    prompts_per_step: int = _f(16, "prompts sampled per learner step", ge=1)
    k: int = _f(4, "responses sampled per prompt (SPPO needs >= 2)", ge=2)
    temperature: float = _f(1.0, "sampling temperature", gt=0)
    top_p: float = _f(1.0, "nucleus sampling mass", gt=0, le=1)
    max_tokens: int = _f(256, "longest response in tokens; a longer one is cut (finish reason 'length')", ge=1)
    max_prompt_tokens: int = _f(1024, "longest rendered prompt in tokens; longer ones follow task.overlong", ge=1)
    stop: Words = _f([], "strings that end a response (besides every EOS id of the tokenizer and "
                        "generation_config)")
    ignore_eos: bool = _f(False, "keep sampling past EOS (the embedded tiny model never learnt EOS)")
    vllm: VLLMConfig = _f(VLLMConfig, "vLLM engine options", )

    @model_validator(mode="after")
    def _core_lists(self) -> RolloutConfig:
        binds = self.cpu_threads_bind
        if binds != "auto" and len(binds.split(";")) != self.num_workers:
            raise KeyProblem("cpu_threads_bind", f"needs one core list per rollout worker ({self.num_workers}), "
                                                 "separated by ';', or auto")
        if binds != "auto" and not all(re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", b) for b in binds.split(";")):
            raise KeyProblem("cpu_threads_bind", "core lists look like 1 or 0-3 or 0,2,4-5")
        return self


class PreferenceServeConfig(Section):
    replicas: int = _f(1, "selfplay serve-preference: Ray Serve replicas of the model, each with its own copy", ge=1)
    max_batch_size: int = _f(32, "selfplay serve-preference: concurrent requests to one route joined into one "
                                 "model call", ge=1)
    batch_wait_s: float = _f(0.01, "selfplay serve-preference: how long a request waits for others to join its "
                                   "batch", ge=0)


class PreferenceConfig(Section):
    kind: Literal["sorting", "function", "reward_model", "pairwise", "judge", "python", "game", "remote"] = _f(
        "sorting", "preference model: sorting, the built-in task's judge; function, a Python callable of yours; "
                   "reward_model, a Bradley-Terry sequence classifier; pairwise, a classifier of (prompt, a, b); "
                   "judge, a generative LLM asked which response is better; python, a class of yours with "
                   "probabilities(...); game, an intransitive game over the response's first word; remote, a model "
                   "served by `selfplay serve-preference` at preference.url")
    sharpness: float = _f(20.0, "sorting and function kinds: P(a > b) = sigmoid(sharpness * (score_a - score_b))", gt=0)
    model_path: str | None = _f(None, "reward_model, pairwise: a Hugging Face sequence-classification directory or "
                                      "hub id; judge: a causal (chat) LM directory or hub id, the judge model")
    temperature: float = _f(1.0, "reward_model: P(a > b) = sigmoid((r_a - r_b) / temperature)", gt=0)
    batch_size: int = _f(16, "reward_model, pairwise: sequences per forward pass of the preference model", ge=1)
    pairwise_template: str = _f(
        "{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}\n\nIs Response A better than Response B?",
        "pairwise: the text the classifier reads, with {prompt}, {a} and {b}")
    judge_template: str = _f(
        "Which response answers the prompt better?\n\nPrompt:\n{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}"
        "\n\nAnswer with one letter, A or B.",
        "judge: the user turn the judge reads, with {prompt}, {a} and {b}; its chat template adds the generation "
        "prompt")
    verdict_a: str = _f("A", "judge: the answer meaning 'the first response is better' (its first token is read)")
    verdict_b: str = _f("B", "judge: the answer meaning 'the second response is better'")
    judge_max_model_len: int = _f(0, "judge: the longest judge prompt + 1 its vLLM engine takes; 0: the judge "
                                     "model's context. A longer judge prompt drops its group, counted", ge=0)
    class_path: str | None = _f(None, "python: 'module:Class', constructed with no arguments, with "
                                      "probabilities(prompts, first, second) -> list of P(first > second)")
    function: str | None = _f(
        None, "kind=function: 'module:callable', importable from the working directory or an installed package")
    function_kind: Literal["score", "pairwise"] = _f(
        "score", "kind=function: score(prompt, response) -> float, or pairwise(prompt, a, b) -> P(a > b)")
    strategies: Words = _f(["rock", "paper", "scissors"], "game: the strategies, one word each; a response plays "
                                                         "the one its first word names (any other loses)")
    payoff: list[list[float]] = _f([[0.5, 0.1, 0.6], [0.9, 0.5, 0.3], [0.4, 0.7, 0.5]],
                      "game: payoff[i][j] = P(strategy i > strategy j), with payoff[i][j] + payoff[j][i] = 1; the "
                      "default is weighted rock-paper-scissors, Nash equilibrium (2/7, 1/7, 4/7)")
    truncated: Literal["keep", "lose"] = _f(
        "keep", "responses cut at rollout.max_tokens: keep (the model compares them like any other), or lose (a "
                "cut response loses to a finished one with P = 0, without asking the model)")
    normalize_scores: bool = _f(
        False, "score-based kinds (reward_model, function scores, a served score model): divide score differences "
               "by the spread (standard deviation) of the initial policy's evaluation scores, so temperature and "
               "sharpness are in units of that spread, whatever the reward model's scale")
    max_bad_batches: int = _f(100, "stop the run after this many batches in a row whose share of rejected groups "
                                   "(NaN or out-of-range preferences) is above max_rejected_share", ge=1)
    max_rejected_share: float = _f(0.5, "the share of a batch's groups the preference code may fail on (an "
                                        "exception, NaN, out of range: the group is dropped) before the batch "
                                        "counts towards max_bad_batches", ge=0, lt=1)
    max_restarts: int = _f(3, "times Ray restarts a preference replica that died; its share of a batch is "
                              "asked again", ge=0)
    num_replicas: int = _f(1, "preference service replicas, each with its own copy of the model; a batch's groups "
                              "are spread over them", ge=1)
    num_cpus: Annotated[float, Field(ge=0)] | Auto = _f(
        "auto", "CPUs per replica; auto: 1 for a model on its own engine or device (reward_model, pairwise, judge), "
                "0.5 for the others")
    num_gpus: Annotated[float, Field(ge=0)] | Auto = _f(
        "auto", "GPUs per replica; auto: 1 for reward_model, pairwise and judge with the CUDA build of torch "
                "(where the driver runs), else 0")
    num_threads: Annotated[int, Field(ge=1)] | Auto = _f(
        "auto", "threads each replica computes with; auto: as rollout.num_threads, for the scoring phase")
    url: str | None = _f(None, "remote: the preference service's address, e.g. http://127.0.0.1:8000")
    token_env: str = _f("SELFPLAY_PREFERENCE_TOKEN",
                        "remote and selfplay serve-preference: the environment variable holding the service's "
                        "bearer token (the token itself never goes in a config file)")
    timeout_s: float = _f(60.0, "remote: seconds one request may take before it counts as failed", gt=0)
    retry_seconds: float = _f(300.0, "remote: how long to keep retrying a request that timed out, was refused or "
                                     "got a 5xx, with exponential backoff, before the run stops", ge=0)
    serve: PreferenceServeConfig = _f(PreferenceServeConfig, "selfplay serve-preference: replicas and request batching")

    @model_validator(mode="after")
    def _what_each_kind_needs(self) -> PreferenceConfig:
        needs = {"function": ("function", "(e.g. my_rewards:score)"),
                 "python": ("class_path", "(e.g. my_judge:Judge)"),
                 "remote": ("url", "(e.g. http://127.0.0.1:8000)"),
                 **{kind: ("model_path", f"(a {'causal LM' if kind == 'judge' else 'sequence-classifier'} "
                                         "directory or hub id)") for kind in ("reward_model", "pairwise", "judge")}}
        if self.kind in needs and not getattr(self, needs[self.kind][0]):
            key, example = needs[self.kind]
            raise KeyProblem(key, f"is required with preference.kind={self.kind} {example}")
        if self.kind == "game":
            from selfplay.preference.games import game_from_payoff
            try:
                game_from_payoff(self.strategies, self.payoff)
            except ValueError as exc:
                raise KeyProblem("payoff", f"(or preference.strategies): {exc}") from None
        for key in ("verdict_a", "verdict_b"):
            if not getattr(self, key).strip():
                raise KeyProblem(key, "must be a non-empty answer such as A")
        if self.verdict_a == self.verdict_b:
            raise KeyProblem("verdict_b", "must differ from preference.verdict_a")
        if self.url and re.match(r"https?://[^/\s]+", self.url) is None:
            raise KeyProblem("url", f"must look like http://HOST:PORT, got {self.url!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.token_env):
            raise KeyProblem("token_env", "must be an environment variable name such as SELFPLAY_PREFERENCE_TOKEN, "
                                          f"got {self.token_env!r}")
        for key in ("pairwise_template", "judge_template"):
            template = getattr(self, key)
            if problem := missing_fields(template, ("prompt", "a", "b")):
                raise KeyProblem(key, problem)
            try:  # other braces would break str.format in the middle of a run
                template.format(prompt="", a="", b="")
            except (KeyError, IndexError, ValueError) as exc:
                raise KeyProblem(key, f"cannot be filled in ({type(exc).__name__}: {exc}); write a literal brace "
                                      "as {{ or }}") from None
        return self


def _algorithm_config() -> type:
    """The ``algorithm`` section from the registry: the name's choices and one subsection per algorithm's options
    (learner/algorithms/registry.py), so that an algorithm is added in its own module alone."""
    entries = registry.entries()
    names = tuple(entries)
    fields = {"name": (Literal[names], _f("sppo", "self-play algorithm: " + "; ".join(
                  f"{name}: {entry.summary}" for name, entry in entries.items()))),
              "logprob_reduction": (Literal["sum", "mean"], _f(
                  "sum", "how response log-probs are reduced over tokens (sum for SPPO, Nash-MD, online IPO)"))}
    for section, options in registry.sections().items():
        users = ", ".join(name for name, entry in entries.items() if entry.section == section)
        fields[section] = (options, _f(options, f"{users} options"))
    # pickled by reference (Ray ships configs to the actors), as the other sections
    return create_model("AlgorithmConfig", __base__=Section, __module__=__name__, **fields)


AlgorithmConfig = _algorithm_config()


class LearnerConfig(Section):
    lr: float = _f(5e-7, "AdamW learning rate (SPPO's and TRL's online DPO / Nash-MD default for a pretrained "
                         "chat model; the embedded tiny model: 1e-3)", gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = _f(
        "constant", "learning rate after the warm-up: constant, or a linear or cosine decay to 0 at run.total_steps")
    warmup_steps: int = _f(0, "steps of linear learning-rate warm-up")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    grad_clip: float = _f(1.0, "gradient norm clip (0 disables)")
    micro_batch_size: int = _f(8, "sequences per forward/backward; gradients accumulate to the step (TRL's and "
                                  "OpenRLHF's 8; the embedded tiny model: 64)", ge=1)
    zero_stage: int = _f(0, "DeepSpeed ZeRO stage 0-3", ge=0, le=3)
    num_ranks: int = _f(1, "data-parallel DeepSpeed ranks, one Ray actor (and one GPU, if any) each", ge=1)
    num_cpus: float = _f(1.0, "CPUs per learner rank", ge=0)
    num_threads: Annotated[int, Field(ge=1)] | Auto = _f(
        "auto", "threads each rank computes with; auto: as rollout.num_threads, for the training phase")
    num_gpus: Annotated[float, Field(ge=0)] | Auto = _f("auto", "GPUs per learner rank; auto: 1 with the CUDA build of torch, else 0")
    resources: dict[str, Annotated[float, Field(ge=0)]] = _f({}, "custom Ray resources per learner rank")
    backend: Literal["auto", "gloo", "nccl"] = _f("auto", "torch.distributed backend; auto: nccl on GPU, gloo on CPU")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass (less memory, ~30% "
                                             "more compute)")
    logprob_chunk_tokens: int = _f(1024, "response tokens whose vocabulary log-softmax is computed at once "
                                         "(bounds the [tokens, vocab] float32 tensor)", ge=1)


class SyncConfig(Section):
    every_steps: int = _f(1, "push learner weights to the rollout workers every N steps", ge=1)
    bucket_mb: int = _f(64, "weight push bucket size in MiB", ge=1)
    verify_digest: bool = _f(True, "each engine hashes the tensors it loads (as they stream) and every push "
                                   "checks that all engines hold the same; costs a device-to-host copy of the "
                                   "model per push on GPUs, so large runs may turn it off")
    transport: Literal["auto", "broadcast", "object_store", "shared_memory", "mixed"] = _f(
        "auto", "broadcast: a torch.distributed group of the learner and the engines (gloo on CPU, NCCL on GPU); "
                "object_store: the same buckets through Ray's object store; shared_memory: engines on the "
                "learner's node read the buckets from /dev/shm (CPU); mixed: shared_memory to the engines on "
                "learner rank 0's node, broadcast to the others; auto: chosen per engine (shared memory for a CPU "
                "engine on learner rank 0's node, else the broadcast)")


class EvalConfig(Section):
    every_steps: int = _f(30, "steps between win-rate evaluations (0: only at the end)", ge=0)
    samples_per_prompt: int = _f(4, "responses per held-out prompt from each policy", ge=1)
    temperature: float = _f(1.0, "sampling temperature of the evaluation")


class CheckpointConfig(Section):
    every_steps: int = _f(50, "steps between checkpoints (0: only on SIGTERM/SIGINT and at the end)", ge=0)
    keep_last: int = _f(3, "complete checkpoints to keep", ge=1)
    keep_every: int = _f(0, "also keep every checkpoint whose step is a multiple of this (0: none)", ge=0)
    at_end: bool = _f(True, "write a checkpoint when the run finishes")


class PipelineConfig(Section):
    max_policy_lag: int = _f(1, "async: drop a batch sampled more than this many policy versions ago", ge=0)
    queue_size: int = _f(1, "async: scored batches the producer may hold ready ahead of the learner", ge=1)
    hold_back: bool = _f(True, "async: the producer waits rather than sample a batch that would be more than "
                               "max_policy_lag versions old when trained (false: sample ahead, drop stale ones)")


class RayConfig(Section):
    address: str | None = _f(None, "cluster to join (auto: this machine's; or host:port, ray://host:10001); empty: "
                                   "RAY_ADDRESS if set (a Ray job's driver has it), else an in-process cluster")
    placement_timeout_s: float = _f(60.0, "every role's placement group must be ready within this many seconds, "
                                          "else the run stops naming the role and the missing resource", gt=0)
    num_cpus: Annotated[int, Field(ge=1)] | Auto = _f(
        "auto", "logical CPUs of the in-process cluster, a scheduling count (threads come from each role's "
                "num_threads); auto: the machine's cores, or the CPUs the roles hold if that is more")
    object_store_gib: float = _f(1.0, "object store size of the in-process cluster", gt=0)
    host_allocator: str = _f(
        "auto", "malloc preloaded into the actors without GPUs: auto = tcmalloc where installed (Debian package "
                "libtcmalloc-minimal4; it keeps freed memory for reuse, a ~66M learner step 20% faster on 2 cores), "
                "else the system's; system: the system's; or a library path")
    metrics_export_port: int = _f(0, "port of the in-process cluster's Prometheus endpoint (Ray's metrics agent, "
                                     "/metrics); 0: Ray picks one, printed at start. A joined cluster's comes "
                                     "from ray start --metrics-export-port", ge=0, le=65535)

    @model_validator(mode="after")
    def _allocator(self) -> RayConfig:
        allocator = self.host_allocator
        if not (allocator in ("auto", "system")
                or (bool(allocator) and ("/" not in allocator or Path(allocator).is_file()))):
            raise KeyProblem("host_allocator", "must be auto, system, a library soname or an existing library "
                                               f"file, got {allocator!r}")
        return self


class Config(Section):
    run: RunConfig = _f(RunConfig, "run identity and length")
    policy: PolicyConfig = _f(PolicyConfig, "the policy model")
    task: TaskConfig = _f(TaskConfig, "where prompts come from")
    rollout: RolloutConfig = _f(RolloutConfig, "sampling")
    preference: PreferenceConfig = _f(PreferenceConfig, "the preference model")
    algorithm: AlgorithmConfig = _f(AlgorithmConfig, "the self-play algorithm")
    learner: LearnerConfig = _f(LearnerConfig, "the DeepSpeed learner")
    sync: SyncConfig = _f(SyncConfig, "weight push to the rollout workers")
    eval: EvalConfig = _f(EvalConfig, "win-rate evaluation")
    checkpoint: CheckpointConfig = _f(CheckpointConfig, "checkpoints and retention")
    mode: Literal["sync", "async"] = _f(
        "sync", "sync: sample, then train, deterministic; async: sampling and scoring overlap training")
    pipeline: PipelineConfig = _f(PipelineConfig, "the async experience pipeline")
    ray: RayConfig = _f(RayConfig, "Ray cluster")
    metrics: MetricsConfig = _f(MetricsConfig, "where the run's metrics go besides metrics.jsonl and TensorBoard: "
                                      "Prometheus, W&B, MLflow; evaluation samples")
    resume: Literal["never", "auto"] = _f(
        "never", "auto: continue from the run directory's latest complete checkpoint if there is one")

    _preset_keys: list[str] = PrivateAttr(default_factory=list)

    @property
    def preset_keys(self) -> list[str]:
        """The ``key=value`` each preset filled in (``selfplay train --dry-run`` lists them); not a key: the saved
        config holds the values."""
        return self._preset_keys

    def _colocate(self) -> None:
        r, ranks = self.rollout, self.learner.num_ranks
        if self.mode == "async":
            raise KeyProblem("mode", "async overlaps generation with training, which rollout.colocate=true runs on "
                                     "the same devices in turn: use mode=sync")
        if r.engine == "vllm" and r.vllm.tensor_parallel_size > 1:
            raise KeyProblem("rollout.vllm.tensor_parallel_size", "must be 1 with rollout.colocate=true: each "
                                                                  "learner rank hosts one engine on its own device")
        if "num_workers" in r.model_fields_set and r.num_workers != ranks:
            raise KeyProblem("rollout.num_workers", f"is learner.num_ranks ({ranks}) with rollout.colocate=true "
                                                    "(one engine per rank): leave it unset")
        if r.cpu_threads_bind != "auto":
            raise KeyProblem("rollout.cpu_threads_bind", "binds rollout workers of their own; colocated engines "
                                                         "compute on their learner rank's threads: leave it auto")
        r.num_workers = ranks

    def __eq__(self, other: object) -> bool:  # equal keys, whichever presets filled them in
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    @model_validator(mode="after")
    def _rules_across_sections(self) -> Config:
        p = self.preference
        if p.kind == "sorting" and (self.task.prompts_path or self.algorithm.drift.data_path):
            raise KeyProblem("preference.kind", "sorting judges only the built-in sorting task's prompts; with your "
                             "own prompts use preference.kind=function (preference.function=module:callable), "
                             "reward_model, pairwise or judge (preference.model_path), or python "
                             "(preference.class_path)")
        if self.task.name == "game" and p.kind != "game":
            raise KeyProblem("task.name", f"game needs preference.kind=game (got preference.kind={p.kind})")
        if not (self.learner.warmup_steps == 0 or 0 <= self.learner.warmup_steps < self.run.total_steps):
            raise KeyProblem("learner.warmup_steps", f"must be >= 0 and below run.total_steps "
                                                     f"({self.run.total_steps})")
        if self.rollout.colocate:
            self._colocate()
        if self.rollout.prompts_per_step % self.learner.num_ranks:
            raise KeyProblem("learner.num_ranks", f"must divide rollout.prompts_per_step "
                             f"({self.rollout.prompts_per_step}): each rank trains on an equal share of the step's "
                             "prompts")
        return self
