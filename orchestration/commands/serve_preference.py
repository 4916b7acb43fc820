"""``selfplay serve-preference CONFIG [key=value ...] [--host H] [--port P]``: one preference model of any kind
behind HTTP (Ray Serve, msgpack bodies, a bearer token: actors/preference_server.py), for runs to share through
``preference.kind=remote``.

It reads the config format of ``selfplay train``: the ``preference`` section (the kind, its model, ``token_env``
and ``serve``: replicas and batching), ``task.alphabet_size`` for the sorting judge, ``rollout.vllm`` for a
judge's engine and ``ray`` for the cluster. The token and the model's inputs are checked before Ray starts; it
listens on 127.0.0.1 unless ``--host`` says otherwise (the token is sent in clear text: plain HTTP), prints one
line with its URL once it answers, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import time

from selfplay.orchestration.config.schema import Config
from selfplay.orchestration.cluster.placement import ClusterPlan, actor_options, plan_cluster, start_ray
from selfplay.orchestration.config.preference_options import preference_options
from selfplay.orchestration.run.inputs import check_preference_inputs
from selfplay.preference.remote_model import ServiceClient, Unanswered, read_token
from selfplay.errors import ConfigError, SelfplayError

_READY_TIMEOUT_S = 120.0


def serve_preference(config: Config, host: str = "127.0.0.1", port: int = 8000) -> None:
    p = config.preference
    if p.kind == "remote":
        raise ConfigError("config key 'preference.kind' is remote, a client: serve a model kind (sorting, function, "
                          "reward_model, pairwise, judge or python)")
    token = read_token(p.token_env)
    model_path = check_preference_inputs(config)
    check_port_free(host, port)
    import ray
    from ray import serve

    plan = plan_cluster(config)
    start_ray(config.ray, plan)
    try:
        url = start_service(config, plan, model_path, token, host, port)
        print(f"selfplay: serving preference.kind={p.kind} at {url} (bearer token from ${p.token_env}); "
              "SIGINT or SIGTERM stops it", flush=True)
        wait_for_stop_signal()
    finally:
        if config.ray.address:  # a shared cluster keeps running: take the application and its proxies off it
            serve.shutdown()
        ray.shutdown()  # the in-process cluster goes with everything on it (serve.shutdown would hang on a raylet
        # that a terminal's Ctrl-C, sent to the whole process group, has already stopped)


def start_service(config: Config, plan: ClusterPlan, model_path: str | None, token: str, host: str, port: int) -> str:
    """Deploy the model behind ``host:port`` and wait until it answers ``/health``; returns its URL."""
    from ray import serve

    from selfplay.actors.preference_server import PreferenceServer, token_digest

    p = config.preference
    quiet = {"log_level": "WARNING"}  # Serve logs every request at INFO
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
    deployment = PreferenceServer.options(
        num_replicas=p.serve.replicas, ray_actor_options=actor_options(plan.roles["preference"].resources,
                                                                       host_allocator=plan.host_allocator))
    serve.run(deployment.bind(p.kind, preference_options(config, model_path), token_digest(token),
                              p.serve.max_batch_size, p.serve.batch_wait_s),
              name="preference", route_prefix="/", logging_config=quiet)
    # A server listening on every interface is asked on loopback.
    wait_until_answering(http_url({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port), token)
    return http_url(host, port)


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def wait_until_answering(url: str, token: str) -> None:
    """Serve's proxy may take a moment after the deployment is up: the ready line means a request was answered."""
    client = ServiceClient(url, "", timeout_s=10.0, token=token)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        try:
            client.attempt("GET", "/health")
            return
        except Unanswered as exc:
            if time.monotonic() > deadline:
                raise SelfplayError(f"the preference service did not answer at {url} within "
                                    f"{_READY_TIMEOUT_S:g} s ({exc})") from None
            time.sleep(0.5)


def check_port_free(host: str, port: int) -> None:
    """One line now rather than a proxy that fails to bind once Ray is up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SelfplayError(f"port {port} on {host} is in use: pass --port with a free one") from None
            raise SelfplayError(f"cannot listen on {host}:{port} ({exc.strerror}): check --host") from None


def wait_for_stop_signal() -> str:
    """Block until SIGINT or SIGTERM; returns the signal's name."""
    received: list[str] = []
    stop = threading.Event()

    def handle(signum, frame) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
    while not stop.wait(1.0):  # a timed wait: the handler runs between waits
        pass
    return received[0]
