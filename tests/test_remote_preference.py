"""preference.kind=remote against a real ``selfplay serve-preference`` process (Ray Serve, msgpack, bearer token)
on loopback: the same numbers as the model in-process, batching of concurrent requests, 401s, a server that
stops answering, and a training run through it."""

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import psutil  # deepspeed's dependency
import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.run.inputs import check_preference_inputs
from selfplay.preference.matrix import preference_matrices
from selfplay.preference.model import build_preference_model
from selfplay.preference.remote_model import (PreferenceServiceError, RemoteOrderAveragedModel, RemoteScoreModel,
                                     ServiceClient, connect)
from selfplay.rollout.records import Completion
from selfplay.errors import ConfigError, InputError
from tests.conftest import REPO, run_in_process
from tests.test_fault_tolerance import last_step
from tests.preference_models import build_pairwise_classifier_dir, build_reward_model_dir

TOKEN_ENV, TOKEN = "SELFPLAY_TEST_PREFERENCE_TOKEN", "test-token-7f3a9c"
TEMPLATE = "{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}\n\nIs Response A better than Response B?"
CHAT = [{"role": "user", "content": "Sort: d a c b"}]
RESPONSES = ["a b c d", "d c b a", "a b d c", "abcd 🙂", "b a"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``selfplay serve-preference`` in its own process (its own Ray), with its log."""
    started: list["Server"] = []

    def __init__(self, log: Path, *overrides: str) -> None:
        for other in Server.started:  # one server at a time on 2 cores
            other.stop()
        Server.started.append(self)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # never this process's Ray
        env.update({TOKEN_ENV: TOKEN, "PYTHONPATH": str(REPO)})
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "selfplay.orchestration.commands.cli", "serve-preference", *overrides,
                 f"preference.token_env={TOKEN_ENV}", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        deadline = time.monotonic() + 180
        while "selfplay: serving" not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"serve-preference did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

    def tree(self) -> list[psutil.Process]:
        """The server and every process it started (Ray's daemons, the Serve proxy and replicas)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def health(self) -> dict:
        return ServiceClient(self.url, TOKEN_ENV, token=TOKEN).call("GET", "/health")

    def stop(self) -> None:
        if self.process.poll() is None:
            for p in self.tree():  # a stopped (SIGSTOP) server must run again to shut down
                p.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group this test started
                self.process.wait()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("served_models")
    return {"reward": str(build_reward_model_dir(root / "reward")),
            "pairwise": str(build_pairwise_classifier_dir(root / "pairwise", num_labels=2, seed=3))}


@pytest.fixture(scope="module")
def reward_server(models, tmp_path_factory):
    # A batch wait long enough that concurrent requests on 2 busy cores land in one batch.
    server = Server(tmp_path_factory.mktemp("reward_server") / "server.log", "preference.kind=reward_model",
                    f"preference.model_path={models['reward']}", "preference.temperature=0.5",
                    "preference.batch_size=4", "preference.serve.batch_wait_s=0.2")
    yield server
    server.stop()


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def _remote_config(url, *extra):
    return load_config(None, ["preference.kind=remote", f"preference.url={url}", f"preference.token_env={TOKEN_ENV}",
                              *extra])


def _groups(*texts_per_group):
    return [[Completion(g, CHAT, [1], [2], t, 0) for t in texts] for g, texts in enumerate(texts_per_group)]


def test_served_reward_model_answers_as_in_process(reward_server, models, token):
    local = build_preference_model("reward_model", model_path=models["reward"], temperature=0.5, batch_size=4)
    remote = connect(reward_server.url, TOKEN_ENV)
    assert isinstance(remote, RemoteScoreModel) and remote.score_based and not remote.order_averaged
    assert remote.sharpness == local.sharpness == 2.0
    prompts = [CHAT, "Sort: b a", CHAT, "x", CHAT]
    np.testing.assert_allclose(remote.scores(prompts, RESPONSES), local.scores(prompts, RESPONSES), atol=1e-6)
    got = remote.probabilities(prompts[:4], RESPONSES[:4], RESPONSES[1:])
    np.testing.assert_allclose(got, local.probabilities(prompts[:4], RESPONSES[:4], RESPONSES[1:]), atol=1e-6)
    assert max(abs(p - 0.5) for p in got) > 0.01  # the random head does tell responses apart
    groups = _groups(RESPONSES[:3], RESPONSES, ["same", "same"])
    (remote_m, remote_stats), (local_m, local_stats) = (preference_matrices(m, groups) for m in (remote, local))
    for a, b in zip(remote_m, local_m):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert remote_stats.calls == local_stats.calls == 3 + 5  # K scorings a group, the tie asked nothing


def test_listens_on_loopback_unless_told(reward_server):
    listening = {c.laddr.ip for p in reward_server.tree() for c in p.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == reward_server.port}
    assert listening == {"127.0.0.1"}


def test_concurrent_requests_are_batched(reward_server, models, token):
    local = build_preference_model("reward_model", model_path=models["reward"], temperature=0.5, batch_size=4)
    remote = connect(reward_server.url, TOKEN_ENV)
    before = reward_server.health()
    asks = [([CHAT] * 2, [RESPONSES[i % 5], RESPONSES[(i + 1) % 5] + str(i)]) for i in range(12)]
    answers = [None] * len(asks)

    def ask(i):
        answers[i] = remote.scores(*asks[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = reward_server.health()
    assert after["requests"] - before["requests"] == 12
    assert after["batches"] - before["batches"] < 12  # joined into fewer model calls
    for (prompts, texts), got in zip(asks, answers):  # each request got its own answers back, in order
        np.testing.assert_allclose(got, local.scores(prompts, texts), atol=1e-5)  # other padding in a batch


def test_wrong_or_missing_token_is_refused_in_one_line(reward_server, monkeypatch, tmp_path, selfplay_cli):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(urllib.request.Request(reward_server.url + "/health", headers=headers), timeout=10)
        assert raised.value.code == 401
    monkeypatch.setenv(TOKEN_ENV, "nope")
    message = f"the preference service at {reward_server.url} refused the token in ${TOKEN_ENV} (401)"
    with pytest.raises(InputError) as raised:
        check_preference_inputs(_remote_config(reward_server.url))
    assert str(raised.value) == message
    started = time.monotonic()
    with pytest.raises(PreferenceServiceError) as raised:  # as in the middle of a run: at once, not retried
        connect(reward_server.url, TOKEN_ENV, retry_seconds=60)
    assert str(raised.value) == message and time.monotonic() - started < 5
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConfigError, match=f"^environment variable {TOKEN_ENV} \\(preference.token_env\\) is not set"):
        check_preference_inputs(_remote_config(reward_server.url))
    env = {**os.environ, TOKEN_ENV: "nope"}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([selfplay_cli, "train", "preference.kind=remote", f"preference.url={reward_server.url}",
                             f"preference.token_env={TOKEN_ENV}", f"run.output_dir={tmp_path}"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2 and result.stderr == f"selfplay: error: {message}\n"
    assert not (tmp_path / "tiny-sppo").exists()  # refused before anything started


def test_bad_requests_are_named(reward_server):
    def post(route, body):
        request = urllib.request.Request(reward_server.url + route, data=body, method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        return raised.value.code, msgpack.unpackb(raised.value.read())["error"]

    assert post("/scores", b"not msgpack") == (400, "the body must be a msgpack map of lists prompts, responses")
    assert post("/scores", msgpack.packb({"prompts": ["x"], "responses": []}))[1] == \
        "prompts, responses must have the same length"
    assert post("/both_orders", msgpack.packb({}))[1] == "the served preference.kind=reward_model has no /both_orders"
    assert post("/nope", b"")[0] == 404


def test_config_names_what_is_missing(token):
    with pytest.raises(ConfigError, match="'preference.url' is required with preference.kind=remote"):
        load_config(None, ["preference.kind=remote"])
    with pytest.raises(ConfigError, match="'preference.url' must look like http://HOST:PORT"):
        load_config(None, ["preference.kind=remote", "preference.url=localhost:8000"])
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InputError, match=f"^the preference service at {url} is unreachable \\(ConnectionRefused"):
        check_preference_inputs(_remote_config(url))


# Outages on the module's reward server, through `selfplay train` subprocesses (their own Ray). Once here, a
# `selfplay train` subprocess started while this module's in-process Ray was up cut the in-process driver off its
# GCS and ended pytest, so these tests shut that Ray down first.


def _train_through(server, tmp_path, name: str, *overrides: str) -> subprocess.Popen:
    import ray

    if ray.is_initialized():  # an earlier module's in-process Ray (see the note above)
        ray.shutdown()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({TOKEN_ENV: TOKEN, "PYTHONPATH": str(REPO)})
    return subprocess.Popen(
        [sys.executable, "-m", "selfplay.orchestration.commands.cli", "train", f"run.output_dir={tmp_path}", f"run.name={name}",
         "preference.kind=remote", f"preference.url={server.url}", f"preference.token_env={TOKEN_ENV}",
         "rollout.engine=torch", "eval.every_steps=0", "checkpoint.every_steps=0", *overrides],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _stopped(processes: list, process: subprocess.Popen, seconds: float | None) -> tuple[str, str]:
    """SIGSTOP ``processes`` (for ``seconds``, or until the run ends), then SIGCONT; the run's (stdout, stderr)."""
    try:
        for p in processes:
            p.send_signal(signal.SIGSTOP)
        if seconds is not None:
            time.sleep(seconds)
            for p in processes:
                p.send_signal(signal.SIGCONT)
        return process.communicate(timeout=300)
    finally:
        for p in processes:
            p.send_signal(signal.SIGCONT)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_short_outage_is_waited_out_and_the_run_goes_on(reward_server, tmp_path):
    """The Serve proxy and replicas stopped for 4 s (a server that stops answering, as a long GC pause or a network
    blip does; Ray's own daemons keep running) within preference.retry_seconds: the step waits, then the run
    finishes every step."""
    process = _train_through(reward_server, tmp_path, "short", "run.total_steps=12", "preference.timeout_s=2",
                             "preference.retry_seconds=120")
    while process.poll() is None and last_step(tmp_path / "short") < 4:
        time.sleep(0.05)
    serving = [p for p in reward_server.tree() if p.cmdline() and p.cmdline()[0].startswith(
        ("ray::ServeReplica", "ray::ProxyActor"))]
    assert len(serving) >= 2, [p.cmdline()[:1] for p in reward_server.tree()]
    out, err = _stopped(serving, process, seconds=4)
    assert process.returncode == 0, err[-3000:]
    assert f"the preference service at {reward_server.url} did not answer" in err, err[-3000:]
    assert last_step(tmp_path / "short") == 12


@pytest.mark.slow
def test_a_longer_outage_checkpoints_and_stops_in_one_line(reward_server, tmp_path):
    """The whole server stopped for longer than preference.retry_seconds."""
    server = reward_server
    process = _train_through(server, tmp_path, "long", "run.total_steps=200", "preference.timeout_s=1",
                             "preference.retry_seconds=3")
    while process.poll() is None and last_step(tmp_path / "long") < 5:
        time.sleep(0.05)
    out, err = _stopped(server.tree(), process, seconds=None)
    assert process.returncode != 0, out[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"selfplay: error: the preference service at {server.url} did not answer"), err[-3000:]
    assert "preference.retry_seconds=3" in last
    assert f"checkpoint step-" in err and "continue with: selfplay resume" in err, err[-3000:]
    checkpoints = [p.name for p in (tmp_path / "long" / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert checkpoints and max(int(c.split("-")[1]) for c in checkpoints) >= 5, checkpoints


@pytest.mark.slow
def test_training_run_through_the_service(reward_server, token, tmp_path, ray_session_per_module):
    import ray

    from selfplay.orchestration.commands.cli import user_error

    before = reward_server.health()
    run_dir, summary = run_in_process(tmp_path, "remote", "preference.kind=remote", f"preference.url={reward_server.url}",
                                      f"preference.token_env={TOKEN_ENV}", "run.total_steps=4", "rollout.engine=torch")
    assert summary["steps"] == summary["policy_version"] == 4
    assert math.isfinite(summary["win_rate_vs_initial"])
    after = reward_server.health()
    # Each step's matrices, the initial and final evaluation scores, the final win-rate: all through the service.
    assert after["requests"] - before["requests"] >= 4 + 3
    # The token is in no file of the run nor of its Ray session (logs, runtime environments).
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    for root in (run_dir, session):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert TOKEN.encode() not in path.read_bytes(), path

    # A refusal raised in an actor mid-run reaches the command line as its own one line.
    message = f"the preference service at {reward_server.url} refused the token in ${TOKEN_ENV} (401)"

    @ray.remote
    def refused(text):
        raise PreferenceServiceError(text)

    with pytest.raises(PreferenceServiceError) as raised:
        ray.get(refused.remote(message))
    assert "\n" in str(raised.value) and str(user_error(raised.value)) == message



@pytest.fixture(scope="module")
def pairwise_server(models, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("pairwise_server") / "server.log", "preference.kind=pairwise",
                    f"preference.model_path={models['pairwise']}", f"preference.pairwise_template={TEMPLATE}")
    yield server
    server.stop()


def test_served_pairwise_classifier_is_asked_both_orders(pairwise_server, models, token):
    local = build_preference_model("pairwise", model_path=models["pairwise"], pairwise_template=TEMPLATE)
    remote = connect(pairwise_server.url, TOKEN_ENV)
    assert isinstance(remote, RemoteOrderAveragedModel) and remote.order_averaged and not remote.score_based
    assert not hasattr(remote, "scores")
    first, second = RESPONSES[:4], RESPONSES[1:]
    got, disagree = remote.both_orders([CHAT] * 4, first, second)
    want, want_disagree = local.both_orders([CHAT] * 4, first, second)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert disagree.tolist() == want_disagree.tolist()
    groups = _groups(RESPONSES, RESPONSES[:3])
    (remote_m, remote_stats), (local_m, local_stats) = (preference_matrices(m, groups) for m in (remote, local))
    for a, b in zip(remote_m, local_m):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert remote_stats.calls == local_stats.calls == 2 * (10 + 3)
    assert remote_stats.swap_disagreements == local_stats.swap_disagreements
    assert remote_stats.metrics()["preference/swap_inconsistency"] == \
        local_stats.metrics()["preference/swap_inconsistency"]


def test_a_server_that_stops_answering_stops_the_client_after_retry_seconds(pairwise_server, token):
    remote = connect(pairwise_server.url, TOKEN_ENV, timeout_s=1.0, retry_seconds=3.0)
    processes = pairwise_server.tree()
    for p in processes:
        p.send_signal(signal.SIGSTOP)  # the port still accepts connections; nothing answers
    try:
        started = time.monotonic()
        with pytest.raises(PreferenceServiceError) as raised:
            remote.probabilities(["x"], ["a"], ["b"])
        elapsed = time.monotonic() - started
    finally:
        for p in processes:
            p.send_signal(signal.SIGCONT)
    message = str(raised.value)
    assert message.startswith(f"the preference service at {pairwise_server.url} did not answer POST /probabilities: ")
    assert "preference.timeout_s=1, preference.retry_seconds=3); last: no answer within preference.timeout_s=1 s" \
        in message and "\n" not in message
    attempts = int(message.split(": ")[1].split(" attempt")[0])
    assert 2 <= attempts <= 4  # backoff 0.5 s, 1 s, ... between 1 s timeouts
    assert 3.0 <= elapsed <= 3.0 + 1.0 + 2.0  # retry_seconds, then at most one more timeout

    pairwise_server.stop()  # a server that is gone: refused connections, retried the same way
    started = time.monotonic()
    with pytest.raises(PreferenceServiceError, match="last: ConnectionRefusedError"):
        remote.probabilities(["x"], ["a"], ["b"])
    assert 3.0 <= time.monotonic() - started <= 5.0
    with pytest.raises(InputError, match=f"the preference service at {pairwise_server.url} is unreachable"):
        check_preference_inputs(_remote_config(pairwise_server.url))
