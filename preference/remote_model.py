"""preference.kind=remote: a preference model served by ``selfplay serve-preference`` (any other kind, run by
actors/preference_server.py), reached over HTTP with msgpack bodies and ``Authorization: Bearer <token>``, the
token read from the environment variable named by ``preference.token_env``.

The client mirrors what the served model can do, as ``GET /health`` reports it: a score-based model (reward model,
score function, the sorting judge) exposes ``scores`` and ``sharpness``, so preference/matrix.py scores each of a
group's K responses once; an order-averaged one (pairwise classifier, LLM judge) exposes ``both_orders``, so each
pair is read in both orders and the swap inconsistency is still measured; every model answers ``probabilities``.

A request that times out (``preference.timeout_s``), is refused or gets a 5xx is retried with exponential backoff
for ``preference.retry_seconds``; then the run stops with one line naming the URL. A 401 (the token is refused) or
a model that raised on the server (422) stops it at once: retrying would not help. Standard library (urllib) and
msgpack only, so the client runs wherever a run does.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request

import msgpack
import numpy as np

from selfplay.errors import ConfigError, SelfplayError

# Backoff between attempts: 0.5 s, doubling, at most 30 s (a restarting server takes tens of seconds).
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 30.0


class PreferenceServiceError(SelfplayError):
    """The preference service refused the request, its model failed, or it stayed unreachable."""


class Unanswered(Exception):
    """One attempt got no usable answer (timeout, refused connection, 5xx): worth another try."""


def read_token(token_env: str) -> str:
    token = os.environ.get(token_env, "")
    if not token:
        raise ConfigError(f"environment variable {token_env} (preference.token_env) is not set: export the "
                          "preference service's bearer token in it")
    return token


class ServiceClient:
    """msgpack over HTTP to one preference service, with the bearer token and the retry policy."""

    def __init__(self, url: str, token_env: str, timeout_s: float = 60.0, retry_seconds: float = 300.0,
                 token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token_env = token_env  # named in errors; ``token``: its value where the environment lacks it
        self.token = token or read_token(token_env)
        self.timeout_s = timeout_s
        self.retry_seconds = retry_seconds

    def attempt(self, method: str, route: str, body: bytes | None = None) -> dict:
        """One request; raises ``Unanswered`` where a retry may help, ``PreferenceServiceError`` where not."""
        request = urllib.request.Request(
            self.url + route, data=body, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/msgpack"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return msgpack.unpackb(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise PreferenceServiceError(f"the preference service at {self.url} refused the token in "
                                             f"${self.token_env} (401)") from None
            if exc.code >= 500:
                raise Unanswered(f"HTTP {exc.code}") from None
            raise PreferenceServiceError(f"the preference service at {self.url} answered {method} {route} with "
                                         f"HTTP {exc.code}: {_server_error(exc)}") from None
        except TimeoutError:
            raise Unanswered(f"no answer within preference.timeout_s={self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise Unanswered(f"no answer within preference.timeout_s={self.timeout_s:g} s") from None
            raise Unanswered(f"{type(reason).__name__}: {reason}" if isinstance(reason, OSError)
                             else str(reason)) from None
        except OSError as exc:  # a connection reset or closed mid-answer
            raise Unanswered(f"{type(exc).__name__}: {exc}") from None

    def call(self, method: str, route: str, payload: dict | None = None) -> dict:
        """The answer, retried with exponential backoff for ``retry_seconds`` while the service does not answer."""
        body = None if payload is None else msgpack.packb(payload)
        started, delay, attempts = time.monotonic(), FIRST_DELAY_S, 0
        while True:
            attempts += 1
            try:
                return self.attempt(method, route, body)
            except Unanswered as exc:
                last = str(exc)
            elapsed = time.monotonic() - started
            if elapsed >= self.retry_seconds:
                raise PreferenceServiceError(
                    f"the preference service at {self.url} did not answer {method} {route}: {attempts} attempt(s) "
                    f"over {elapsed:.0f} s (preference.timeout_s={self.timeout_s:g}, preference.retry_seconds="
                    f"{self.retry_seconds:g}); last: {last}")
            if attempts == 1:
                print(f"selfplay: warning: the preference service at {self.url} did not answer {method} {route} "
                      f"({last}); retrying for up to {self.retry_seconds:g} s", file=sys.stderr, flush=True)
            time.sleep(min(delay, self.retry_seconds - elapsed))
            delay = min(2 * delay, MAX_DELAY_S)


def _server_error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(msgpack.unpackb(exc.read()).get("error", exc.reason))
    except Exception:  # not one of our msgpack answers (a proxy's HTML page, say)
        return str(exc.reason)


class RemotePreference:
    """Any served model: P(first > second) for each pair, each unordered pair asked once."""
    score_based = False
    order_averaged = False

    def __init__(self, client: ServiceClient, info: dict) -> None:
        self.client = client
        self.served_kind = info["kind"]

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        return self.client.call("POST", "/probabilities", {"prompts": list(prompts), "first": list(first),
                                                           "second": list(second)})["probabilities"]


class RemoteScoreModel(RemotePreference):
    """A served Bradley-Terry model: one score a response, P = sigmoid(sharpness (s_a - s_b))."""
    score_based = True

    def __init__(self, client: ServiceClient, info: dict) -> None:
        super().__init__(client, info)
        self.sharpness = float(info["sharpness"])

    def scores(self, prompts: list, responses: list[str]) -> list[float]:
        return self.client.call("POST", "/scores", {"prompts": list(prompts), "responses": list(responses)})["scores"]


class RemoteOrderAveragedModel(RemotePreference):
    """A served judge that reads pairs in an order, asked in both by the server."""
    order_averaged = True

    def both_orders(self, prompts: list, first: list[str], second: list[str]) -> tuple[np.ndarray, np.ndarray]:
        answer = self.client.call("POST", "/both_orders", {"prompts": list(prompts), "first": list(first),
                                                           "second": list(second)})
        return np.asarray(answer["probabilities"], dtype=float), np.asarray(answer["disagree"], dtype=bool)


def connect(url: str, token_env: str, timeout_s: float = 60.0, retry_seconds: float = 300.0,
            token: str | None = None) -> RemotePreference:
    """The served model behind ``url``, with the capabilities its ``/health`` reports; the token is
    ``$token_env``'s unless given (a Ray actor gets the driver's as an argument)."""
    client = ServiceClient(url, token_env, timeout_s, retry_seconds, token)
    info = client.call("GET", "/health")
    if info.get("score_based"):
        return RemoteScoreModel(client, info)
    if info.get("order_averaged"):
        return RemoteOrderAveragedModel(client, info)
    return RemotePreference(client, info)
