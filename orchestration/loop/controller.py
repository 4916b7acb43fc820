"""The controller: owns the schedule and the run state, and drives the actors.

The loop (``mode=sync``): sample K responses per prompt -> K x K preferences -> training targets -> one learner
step -> weight push every ``sync.every_steps`` -> metrics, evaluation -> checkpoint every
``checkpoint.every_steps``. Each phase is one call into the module that owns it, and is timed. SIGTERM or
SIGINT finishes the current step, writes a checkpoint and returns (pre-emption looks like that).
With ``mode=async`` a producer thread (orchestration/loop/pipeline.py) samples and scores ahead while
the learner trains, holding back when a new batch would be more than ``pipeline.max_policy_lag`` versions old
by its turn; a batch that still arrives too old is dropped and counted.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray

from selfplay.actors.colocated_fleet import ColocatedFleet
from selfplay.actors.learner_group import LearnerGroup
from selfplay.actors.preference_replicas import PreferenceReplicas
from selfplay.actors.preference_service import PreferenceService
from selfplay.actors.rollout_worker import RolloutWorker
from selfplay.actors.rollout_fleet import RolloutFleet, TransportSpec
from selfplay.learner.algorithms.registry import build_algorithm, entry_of, options_of
from selfplay.orchestration.config.schema import Config
from selfplay.orchestration.config.loading import to_dict
from selfplay.errors import ConfigError, InputError
from selfplay.orchestration.run.inputs import RunInputs
from selfplay.orchestration.config.preference_options import preference_options
from selfplay.preference.remote_model import PreferenceServiceError
from selfplay.orchestration.health.faults import fault_point, hang, hang_requested
from selfplay.orchestration.health.watchdog import StepWatchdog, collective_timeout_s
from selfplay.orchestration.health.heartbeat import Heartbeat
from selfplay.orchestration.telemetry.metrics import MetricsLog, push_row
from selfplay.orchestration.loop.learner_spec import learner_spec
from selfplay.orchestration.telemetry.plots import redraw_plots
from selfplay.orchestration.cluster.placement import ClusterPlan, plan_cluster, reserve
from selfplay.orchestration.cluster.shared_storage import check_shared_storage
from selfplay.orchestration.telemetry.progress import Progress
from selfplay.orchestration.loop.prompt_stream import PromptStream
from selfplay.orchestration.loop.run_checkpoint import save_checkpoint
from selfplay.orchestration.run.directory import write_json_atomic
from selfplay.orchestration.health.stop_signals import StopSignals
from selfplay.orchestration.loop.win_rate import eval_samples, mean, win_rate_pairs
from selfplay.orchestration.loop.experience import Experience
from selfplay.orchestration.loop.pipeline import ExperienceItem, ExperiencePipeline
from selfplay.rollout.records import Completion, SamplingSpec
from selfplay.rollout.transport.base import choose_transport


@dataclass
class RunState:
    """Everything the controller owns; a checkpoint of the controller is this plus the prompt stream."""
    step: int = 0
    samples: int = 0
    policy_version: int = 0
    preference_calls: int = 0
    last_push: dict | None = None
    win_rates: list[list] = field(default_factory=list)
    wall_seconds: float = 0.0
    checkpoint_step: int = -1
    initial_eval: list[list[Completion]] = field(default_factory=list)
    initial_eval_score: float | None = None
    initial_exploitability: float | None = None  # a game preference: the initial policy's
    score_spread: float | None = None  # preference.normalize_scores: the initial evaluation scores' std
    rejected_groups: int = 0
    rejected_batches: int = 0  # batches without a usable group, in all
    bad_batches_in_a_row: int = 0  # batches in a row whose rejected share passed preference.max_rejected_share
    dropped_stale: int = 0
    next_tag: int = 1
    verified_pushes: int = 0  # pushes whose every engine loaded exactly the digest the learner sent
    sampled_responses: int = 0
    truncated_responses: int = 0  # cut at rollout.max_tokens (finish reason "length")
    sampled_tokens: int = 0  # response tokens generated for training, in all


def score_spread(std: float | None) -> float | None:
    """The scale preference.normalize_scores divides score differences by: the initial evaluation scores'
    standard deviation; None where it is undefined (a model that is not score-based, or scores all equal)."""
    return float(std) if std is not None and np.isfinite(std) and std > 1e-8 else None


COUNTS = ("preference_calls", "rejected_groups", "sampled_responses", "truncated_responses", "sampled_tokens")


def count_batch(state: RunState, kept: int, scored: int, max_rejected_share: float, max_bad_batches: int,
                report=lambda: ("", [])) -> None:
    """Count a batch without a usable group (``rejected_batches``, in all), and stop the run once the share of
    rejected groups (NaN or out-of-range preferences) has been above ``max_rejected_share`` for
    ``max_bad_batches`` batches in a row: the preference code fails too often for training to mean anything,
    while a bad answer now and then only drops its group. ``report()``: (the preference code's name, the first
    reasons for its rejections), for the error."""
    state.rejected_batches += int(kept == 0)
    share = (scored - kept) / scored if scored else 1.0
    if share <= max_rejected_share:
        state.bad_batches_in_a_row = 0
        return
    state.bad_batches_in_a_row += 1
    if state.bad_batches_in_a_row >= max_bad_batches:
        source, reasons = report()
        raise InputError(f"preference {source or 'model'}: more than {max_rejected_share:g} of the groups were "
                         f"rejected (NaN or out-of-range preferences) in each of {max_bad_batches} batches in a row "
                         f"(last: {share:.0%}); first reasons: {'; '.join(reasons[:3]) or 'not recorded'} - fix the "
                         "preference code, or raise preference.max_rejected_share / preference.max_bad_batches")


class Timer:
    def __init__(self, on_phase=lambda name: None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_phase = on_phase  # told the name of each phase entered (the heartbeat)

    @contextmanager
    def phase(self, name: str):
        self.on_phase(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start


class Controller:
    def __init__(self, config: Config, run_dir: Path, inputs: RunInputs, plan: ClusterPlan | None = None,
                 metrics_from_step: int = 0, sink_states: dict | None = None) -> None:
        self.config = config
        self.plan = plan or plan_cluster(config)  # where each role runs and with what, resolved once
        self.run_dir = run_dir
        self.inputs = inputs
        self.model_path = inputs.model_path
        self.algorithm = build_algorithm(config)
        # DRIFT draws from its dissatisfied conversations, the others from the task's prompts.
        self.train = inputs.dsat.prompts if inputs.dsat else inputs.train
        self.eval_set = inputs.eval
        self.state = RunState()
        self.nodes: dict[str, list[str]] = {}  # the Ray node id of each actor, by role (in summary.json)
        self.auto_resumes = 0
        self._watched_restarts = 0
        self.heartbeat = Heartbeat(run_dir, config.run.total_steps, lambda: self.state.step).start()
        self.metrics = MetricsLog(run_dir, resume_after_step=metrics_from_step, sink_states=sink_states,
                                  config=config.metrics, run_config=to_dict(config), run_name=config.run.name)
        # Start-up is watched like a step (run.step_timeout_s): each of its phases gets the whole timeout.
        self.watchdog = StepWatchdog(config.run.step_timeout_s, run_dir, self.actor_processes, self.kill_actors)
        self.watchdog.start()
        try:
            self._launch_actors()
            self.watchdog.refresh()
        except BaseException as exc:
            self.shutdown(failed=True)  # nothing half-started outlives a failed start (the driver may go on)
            self.watchdog.check(exc)  # a wait ended by the watchdog is reported as the hang it was
            raise
        self.stream = PromptStream(len(self.train), config.run.seed)
        self.experience = Experience(
            config.rollout, config.run.seed, options_of(config), entry_of(config).section, self.algorithm.needs,
            inputs, self.train, self.fleet, self.learner, self.preference,
            on_phase=None if config.mode == "async" else self.phase)
        self.pipeline: ExperiencePipeline | None = None
        self.restored_queue: list[ExperienceItem] = []
        self.unlogged: Counter = Counter()  # counts folded since the last metrics row (its counted/* keys)

    # -- actors -------------------------------------------------------------------------------------

    def _launch_actors(self) -> None:
        c = self.config
        if c.rollout.engine == "vllm" and c.rollout.vllm.tensor_parallel_size > 1 and \
                not self.plan.roles["rollout"].resources.num_gpus:
            raise ConfigError("config key 'rollout.vllm.tensor_parallel_size' > 1 needs GPUs (vLLM's CPU build "
                              "runs one engine per process here)")
        # Every role's resources are reserved before any model loads: a run that cannot be placed stops here.
        self.phase("start-up: placement")
        self.placement = reserve(self.plan, name=f"selfplay-{c.run.name}")
        self._check_nodes()
        vllm_options = {**to_dict(c)["rollout"]["vllm"], "max_model_len": self.inputs.max_model_len}
        # Exact token-level mixture sampling runs in the torch engine next to the fixed reference mu.
        needs = self.algorithm.needs
        mixing = needs.sample_from == "mixture" or needs.opponent == "mixture"
        reference = self.model_path if mixing and c.rollout.engine == "torch" else None
        self.phase("start-up: actors")
        self.rollouts = [] if c.rollout.colocate else [
            RolloutWorker.options(**self.placement.options("rollout", i), max_restarts=c.rollout.max_restarts)
            .remote(c.rollout.engine, self.model_path, c.policy.dtype, c.run.seed + i, vllm_options, reference,
                    {"run": c.run.name, "engine": str(i)} if c.metrics.prometheus else None)
            for i in range(c.rollout.num_workers)]
        p = c.preference
        options = preference_options(c, self.inputs.preference_model_path)
        self.preference = PreferenceReplicas([
            PreferenceService.options(**self.placement.options("preference", i), max_restarts=p.max_restarts)
            .remote(p.kind, options, p.truncated)
            for i in range(p.num_replicas)], max_restarts=p.max_restarts)
        self.learner = LearnerGroup(
            learner_spec(c), self.model_path,
            self.algorithm.sequences_per_step(c.rollout.prompts_per_step // c.learner.num_ranks),
            [self.placement.options("learner", r) for r in range(c.learner.num_ranks)])
        # Surface start-up errors (bad model, engine refusal) before the loop starts.
        self.phase("start-up: models")
        ray.get([w.weights_state.remote() for w in self.rollouts] + self.learner.submit("weights_digest"))
        if c.rollout.colocate:
            self.fleet = ColocatedFleet(self.learner, verify=c.sync.verify_digest)
            self.fleet.attach(c.rollout.engine, c.run.seed, mixing, vllm_options)
            return
        self.fleet = RolloutFleet(self.rollouts, self.learner, TransportSpec(
            self.transport, c.sync.bucket_mb * 2**20, timeout_s=collective_timeout_s(c.run.step_timeout_s),
            workers_per_engine=c.rollout.vllm.tensor_parallel_size if c.rollout.engine == "vllm" else 1,
            verify=c.sync.verify_digest, engines_local=self.engines_local), max_restarts=c.rollout.max_restarts)
        self.phase("start-up: weight transport")
        self.fleet.open_transport()

    def _check_nodes(self) -> None:
        """Where the placement groups landed: every node must see the run directory and the model, and the
        shared-memory transport needs every engine on learner rank 0's node (the broadcast crosses nodes)."""
        c = self.config
        nodes = self.nodes = {role: self.placement.nodes(role) for role in ("learner", "rollout", "preference")}
        where: dict[str, str] = {}
        for role, label in (("preference", "preference replica"), ("rollout", "rollout engine"),
                            ("learner", "learner rank")):
            for i, node in enumerate(nodes[role]):
                where[node] = f"{label} {i}"
        check_shared_storage(set(where), self.run_dir, self.model_path, where)
        away = [i for i, node in enumerate(nodes["rollout"]) if node != nodes["learner"][0]]
        self.engines_local = [node == nodes["learner"][0] for node in nodes["rollout"]]
        if c.rollout.colocate:
            self.transport = "in_process"  # the engines are the learner ranks'
            return
        self.transport = choose_transport(c.sync.transport, self.engines_local,
                                          bool(self.plan.roles["rollout"].resources.num_gpus))
        if c.sync.transport == "shared_memory" and away:
            raise ConfigError(f"sync.transport=shared_memory needs every rollout engine on learner rank 0's node, "
                              f"but Ray placed engine(s) {away} on other nodes: use sync.transport=broadcast "
                              "(it crosses nodes), or place the engines with rollout.resources")

    # -- phases -------------------------------------------------------------------------------------

    def rollout(self, indices: list[int], token_ids: list[list[int]], prompts: list, spec: SamplingSpec,
                mixture_beta: float | None = None, policy_n: int = 0) -> list[list[Completion]]:
        return self.fleet.generate(indices, token_ids, prompts, spec, mixture_beta, policy_n)

    def push_weights(self) -> dict:
        """Send the learner's weights to every rollout worker as version ``policy_version + 1`` (verified, see
        ``RolloutFleet.push``)."""
        version = self.state.policy_version + 1
        push = self.fleet.push(version)
        self.state.policy_version = version
        self.state.verified_pushes += int(self.config.sync.verify_digest)
        self.state.last_push = {**push, "step": self.state.step}
        return self.state.last_push

    def push_current_weights(self) -> None:
        """After a resume: load the learner's weights into every engine under the restored version,
        before any sampling."""
        self.state.policy_version -= 1
        self.push_weights()

    def sample_eval(self) -> list[list[Completion]]:
        self.phase("eval")
        e = self.config.eval
        r = self.config.rollout
        spec = SamplingSpec(n=e.samples_per_prompt, temperature=e.temperature, top_p=1.0, max_tokens=r.max_tokens,
                            ignore_eos=r.ignore_eos, seed=self.config.run.seed + 7, stop=list(r.stop))
        return self.rollout(list(range(len(self.eval_set))), self.eval_set.token_ids, self.eval_set.records, spec)

    def evaluate(self, initial: list[list[Completion]]) -> dict[str, float]:
        """Win-rate of fresh samples against the initial policy's, and the task score where there is one; a
        sample of the compared responses goes to the metrics log."""
        current = self.sample_eval()
        first, second = win_rate_pairs(current, initial)
        probabilities, stats = self.preference.compare(first, second)
        self.fold({"preference_calls": stats.calls})
        self.metrics.write_samples(self.state.step, eval_samples(current, initial, probabilities,
                                                                 self.config.metrics.samples))
        result = {"win_rate_vs_initial": mean(probabilities)}
        result.update(self.eval_measures(current))
        return result

    def eval_measures(self, groups: list[list[Completion]]) -> dict[str, float]:
        """The task score (score-based preferences) and the exploitability (a game) of the policy's samples."""
        flat = [c for g in groups for c in g]
        responses = [c.response_text for c in flat]
        scores = self.preference.scores([c.prompt for c in flat], responses)
        exploitability = self.preference.exploitability(responses)
        return {**({} if scores is None else {"eval_score": mean(scores), "eval_score_std": float(np.std(scores))}),
                **({} if exploitability is None else {"exploitability": exploitability})}

    # -- the loop -----------------------------------------------------------------------------------

    def run(self, auto_resumes: int = 0) -> dict:
        """The run from where its state stands (a fresh start, or a restored checkpoint); ``auto_resumes``: how
        many times ``run.auto_resume`` restarted it before this attempt (in summary.json)."""
        self.auto_resumes = auto_resumes
        c, s = self.config, self.state
        started = time.perf_counter() - s.wall_seconds
        self.phase("eval")
        progress = Progress(c.run.total_steps, c.run.log_every, first_step=s.step, run_dir=self.run_dir,
                            metrics_at=self.metrics.where())
        if not s.initial_eval:  # a fresh run; a resumed one restored the initial policy's samples
            s.initial_eval = self.sample_eval()
            initial = self.eval_measures(s.initial_eval)
            s.initial_eval_score, s.initial_exploitability = initial.get("eval_score"), initial.get("exploitability")
            if c.preference.normalize_scores:
                s.score_spread = score_spread(initial.get("eval_score_std"))
                if s.score_spread is None:
                    print("selfplay: warning: preference.normalize_scores: the initial evaluation scores have no "
                          "spread (or the model gives no scores); score differences stay unscaled", file=sys.stderr)
        if s.score_spread:  # fresh or resumed: the same scale for the whole run
            self.preference.scale_scores(s.score_spread)
        if c.mode == "async":
            self.pipeline = ExperiencePipeline(self.produce, c.pipeline.queue_size, s.next_tag,
                                               self.within_lag if c.pipeline.hold_back else None)
            self.pipeline.start(self.restored_queue)
        try:
            return self._loop(progress, started)
        except BaseException as exc:
            self.watchdog.check(exc)  # a wait ended by the watchdog is reported as the hang it was
            raise
        finally:
            self.watchdog.stop()
            if self.pipeline:
                self.pipeline.stop()

    def actor_processes(self) -> dict[str, int]:
        """Every actor's process id, by what it is (the stacks of a hung step name them)."""
        ranks = ray.get([r.pid.remote() for r in self.learner.ranks])
        pids = {f"learner rank {i}": pid for i, pid in enumerate(ranks)}
        pids |= {f"rollout worker {i}": pid for i, pid in enumerate(self.fleet.pids())}
        pids |= {f"preference replica {i}": pid for i, pid in enumerate(self.preference.pids())}
        return pids

    def kill_actors(self) -> None:
        """Every actor, so that the driver's wait on any of them fails at once (the step watchdog)."""
        learner = getattr(self, "learner", None)
        preference = getattr(self, "preference", None)
        for actor in [*(learner.ranks if learner else []), *getattr(self, "rollouts", []),
                      *(preference.replicas if preference else [])]:
            ray.kill(actor, no_restart=True)
        if learner is None and getattr(self, "placement", None) is not None:
            self.placement.remove()  # the learner ranks are still starting (no handles yet): Ray kills them too

    def produce(self, tag: int) -> ExperienceItem:
        """One scored batch; ``tag`` seeds its sampling (the step in sync mode, a counter in async mode). It
        touches no run state: its counts travel in the item (``fold``)."""
        indices = self.stream.take(self.config.rollout.prompts_per_step)
        groups, metrics, counts = self.experience.collect(indices, tag)
        return ExperienceItem(tag, indices, groups, metrics, dict(counts))

    def fold(self, counts: dict[str, int]) -> None:
        """A batch's (or an evaluation's) counts into the run's totals and the next metrics row; only the
        controller's thread does this."""
        for key in COUNTS:
            value = int(counts.get(key, 0))
            setattr(self.state, key, getattr(self.state, key) + value)
            self.unlogged[key] += value

    def counted_row(self) -> dict[str, int]:
        """``counted/<count>``: what was folded since the previous row (so the rows add up to the totals)."""
        row = {f"counted/{k}": self.unlogged[k] for k in COUNTS}
        self.unlogged.clear()
        return row

    def within_lag(self, ahead: int) -> bool:
        """Would a batch sampled now be within ``max_policy_lag`` when trained? It is trained after the ``ahead``
        batches before it, and the policy version grows by the pushes of those steps."""
        c, s = self.config, self.state
        pushes = sum(1 for j in range(s.step + 1, s.step + ahead + 1)
                     if j % c.sync.every_steps == 0 or j == c.run.total_steps)
        return pushes <= c.pipeline.max_policy_lag

    @staticmethod
    def _hang_if_requested(step: int, *phases) -> None:
        """Fault injection (``SELFPLAY_FAULT=hang@<phase>:<step>``): the actor serving the phase blocks forever."""
        for phase, actor in phases:
            if hang_requested(phase, step):
                hang(actor)

    def _finished(self) -> None:
        if self.pipeline:
            self.pipeline.task_done()

    def _loop(self, progress: Progress, started: float) -> dict:
        """The run, one screen: steps until the last or a stop signal, each step's row logged and checkpointed
        on schedule; then the end of the run."""
        c, s = self.config, self.state
        self._watched_restarts = self.fleet.restarts + self.preference.restarts
        with StopSignals() as stop:
            while s.step < c.run.total_steps and not stop.requested:
                row = self._step(s.step + 1, started)
                if row is None:  # the batch was rejected, or too stale to train on: no step taken
                    continue
                self.metrics.write(s.step, row)
                progress.update(s.step, row)
                s.wall_seconds = time.perf_counter() - started
                if c.checkpoint.every_steps and s.step % c.checkpoint.every_steps == 0:
                    self.checkpoint()
            s.wall_seconds = time.perf_counter() - started
            if stop.requested:
                return self._stopped(stop.requested, progress)
        return self._finish(progress, started)

    def _step(self, step: int, started: float) -> dict | None:
        """Experience -> training targets -> one learner step -> (reference reset) -> (weight push) ->
        (evaluation); the step's metrics row, or None when its batch was not trained on."""
        c, s = self.config, self.state
        timer = Timer(self.phase)
        self._watch(step)
        self._hang_if_requested(step, ("generate", self.fleet.workers[0]), ("score", self.preference.replicas[0]))
        with timer.phase("experience"), self.checkpointed_on(PreferenceServiceError):
            item = self.pipeline.get() if self.pipeline else self.produce(step)  # async: the wait only
        lag = self._usable_lag(item)
        if lag is None:
            self._finished()
            return None
        batch, batch_metrics = self.algorithm.build_batch(item.groups, np.random.default_rng([c.run.seed, step]))
        self._hang_if_requested(step, ("train", self.learner.ranks[0]))
        with timer.phase("train"):
            train_metrics = self.learner.train_step(batch)
        fault_point("after_train_step", step)
        s.step, s.samples = step, s.samples + batch.num_samples
        if self.algorithm.reference_resets_after(step):
            self.learner.call("reset_reference")
        if step % c.sync.every_steps == 0 or step == c.run.total_steps:
            self._hang_if_requested(step, ("push", self.fleet.workers[0]))
            with timer.phase("push"):
                self.push_weights()
            fault_point("after_push", step)
        self._finished()
        row = self._row(step, timer, {**train_metrics, **batch_metrics, **item.metrics}, batch, lag, started)
        if c.eval.every_steps and step % c.eval.every_steps == 0 and step < c.run.total_steps:
            row.update(self.evaluate(s.initial_eval))
            s.win_rates.append([step, row["win_rate_vs_initial"]])
        return row

    def _watch(self, step: int) -> None:
        """The step watchdog starts on ``step``, watching the processes of any actor restarted since."""
        self.watchdog.step(step)
        restarts = self.fleet.restarts + self.preference.restarts
        if restarts != self._watched_restarts:  # new processes to watch
            self._watched_restarts = restarts
            self.watchdog.refresh()

    def _usable_lag(self, item: ExperienceItem) -> int | None:
        """The batch's counts folded in; its policy lag, or None when it is not trained on: no usable group
        (its preferences were all invalid: rejected, the run goes on), or older than pipeline.max_policy_lag
        (async: dropped, counted)."""
        c, s = self.config, self.state
        self.fold(item.counts)
        count_batch(s, len(item.groups), item.counts.get("scored_groups", len(item.groups)),
                    c.preference.max_rejected_share, c.preference.max_bad_batches, self.preference.rejection_report)
        if not item.groups:
            return None
        lag = s.policy_version - min(x.policy_version for g in item.groups for x in g.completions
                                     if x.policy_version >= 0)
        if c.mode == "async" and lag > c.pipeline.max_policy_lag:
            s.dropped_stale += 1
            return None
        return lag

    def _row(self, step: int, timer: Timer, learned: dict, batch, lag: int, started: float) -> dict:
        """The step's metrics row: what the learner and the experience phase report, the phases' seconds, the
        run's totals and what was counted since the previous row, the push, the fleet's restarts."""
        s = self.state
        busy = max(sum(timer.seconds.values()), 1e-9)
        row = {**learned, **{f"time/{k}": v for k, v in timer.seconds.items()},
               "samples": s.samples, "policy_version": s.policy_version, **self.counted_row(),
               "preference_calls": s.preference_calls, "rejected_batches": s.rejected_batches,
               "rejected_groups": s.rejected_groups,
               "policy_lag": lag, "dropped_stale": s.dropped_stale, **push_row(s.last_push, step),
               "wall_seconds": time.perf_counter() - started, "tokens": s.sampled_tokens,
               "samples_per_second": batch.num_samples / busy,
               "restarts/rollout": self.fleet.restarts, "retries/rollout": self.fleet.retries,
               "restarts/preference": self.preference.restarts,
               "tokens_per_second": learned.get("rollout/response_tokens", 0) / busy}
        if self.pipeline:
            row["pipeline/queue_depth"] = self.pipeline.depth()
        return row

    def _stopped(self, signal_name: str, progress: Progress) -> dict:
        """A stop signal: the last step is checkpointed, and the way to continue printed."""
        s = self.state
        if s.checkpoint_step != s.step:
            self.checkpoint()
        progress.note(f"stopped by {signal_name} after step {s.step}; checkpoint step-{s.step} written; "
                      f"continue with: selfplay resume {self.run_dir}")
        self.metrics.close()
        self.heartbeat.phase("stopped")
        return {"stopped": signal_name, "steps": s.step}

    def _finish(self, progress: Progress, started: float) -> dict:
        """The end of the run: the final evaluation, the last checkpoint, ``summary.json`` and the plots."""
        c, s = self.config, self.state
        final_eval = self.evaluate(s.initial_eval)
        final = final_eval["win_rate_vs_initial"]
        if not s.win_rates or s.win_rates[-1][0] != s.step:
            s.win_rates.append([s.step, final])
        self.metrics.write(s.step, {**final_eval, **self.counted_row()})
        s.wall_seconds = time.perf_counter() - started
        if c.checkpoint.at_end and s.checkpoint_step != s.step:
            self.checkpoint()
        summary = self._summary(final_eval)
        write_json_atomic(self.run_dir / "summary.json", summary)
        redraw_plots(self.run_dir)  # with the final evaluation
        progress.close(summary)
        self.metrics.close()
        self.heartbeat.phase("finished")
        return summary

    def _summary(self, final_eval: dict) -> dict:
        c, s = self.config, self.state
        return {"algorithm": c.algorithm.name, "steps": s.step, "samples": s.samples,
                "score_spread": s.score_spread, "nodes": self.nodes,
                "policy_version": s.policy_version, "win_rate_vs_initial": final_eval["win_rate_vs_initial"],
                "wall_seconds": s.wall_seconds, "preference_calls": s.preference_calls,
                "rollout_engine": c.rollout.engine, "win_rate_curve": s.win_rates, "mode": c.mode,
                "placement": "colocated" if c.rollout.colocate else "separate", "weight_transport": self.transport,
                "dropped_stale": s.dropped_stale, "rejected_batches": s.rejected_batches,
                "initial_eval_score": s.initial_eval_score, "final_eval_score": final_eval.get("eval_score"),
                "initial_exploitability": s.initial_exploitability,
                "final_exploitability": final_eval.get("exploitability"),
                "last_push": s.last_push, "verified_pushes": s.verified_pushes,
                "last_checkpoint_step": s.checkpoint_step, "rejected_groups": s.rejected_groups,
                "truncated_responses": s.truncated_responses, "sampled_responses": s.sampled_responses,
                "sampled_tokens": s.sampled_tokens,
                "preference_rejected_values": self.preference.rejected_values(),
                "preference_calls_per_replica": self.preference.calls_per_replica(),
                "auto_resumes": self.auto_resumes, "metrics_sink_errors": dict(self.metrics.errors),
                "restarts": {"rollout": self.fleet.restarts, "rollout_retries": self.fleet.retries,
                             "preference": self.preference.restarts},
                "prompts": self.inputs.summary()}

    @contextmanager
    def checkpointed_on(self, *errors):
        """An error of ``errors`` (the remote preference service gone past preference.retry_seconds) stops the
        run after a checkpoint of its last complete step, so that `selfplay resume` continues once it is back."""
        try:
            yield
        except errors:
            if self.state.step and self.state.checkpoint_step != self.state.step:
                self.checkpoint()
                print(f"selfplay: checkpoint step-{self.state.step} written; continue with: selfplay resume "
                      f"{self.run_dir}", file=sys.stderr, flush=True)
            raise

    def phase(self, name: str) -> None:
        """The phase entered: on the heartbeat and for the step watchdog."""
        self.heartbeat.phase(name)
        if name in ("eval", "checkpoint") or name.startswith("start-up"):  # long phases of their own: each
            self.watchdog.step(self.state.step)                            # gets the whole timeout
        self.watchdog.phase(name)

    def checkpoint(self) -> None:
        """A checkpoint, then the plots redrawn beside it (a plot that fails is a warning, never a stop)."""
        self.phase("checkpoint")
        save_checkpoint(self)
        redraw_plots(self.run_dir)

    def shutdown(self, failed: bool = False) -> None:
        """Stop every actor, release the placement groups and close the metrics sinks (``failed``: with the
        failed status where a tracker has one); safe after a start that failed half-way, and twice."""
        if getattr(self, "watchdog", None) is not None:
            self.watchdog.stop()
        if getattr(self, "metrics", None) is not None:
            self.metrics.close(failed=failed)
        if getattr(self, "heartbeat", None) is not None:
            self.heartbeat.stop()
        if getattr(self, "fleet", None) is not None:
            self.fleet.shutdown()
        else:
            for actor in getattr(self, "rollouts", []):
                ray.kill(actor, no_restart=True)
        if getattr(self, "learner", None) is not None:
            self.learner.shutdown()
        if getattr(self, "preference", None) is not None:
            self.preference.kill()
        if getattr(self, "placement", None) is not None:
            self.placement.remove()

