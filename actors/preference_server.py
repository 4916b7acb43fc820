"""Ray Serve deployment around one preference model: the HTTP face of ``selfplay serve-preference``.

Routes, msgpack bodies, each behind ``Authorization: Bearer <token>`` (401 without it):

    GET  /health          -> {kind, score_based, order_averaged, sharpness, requests, batches}
    POST /probabilities   {prompts, first, second} -> {probabilities}
    POST /scores          {prompts, responses}     -> {scores}                  score-based models
    POST /both_orders     {prompts, first, second} -> {probabilities, disagree} order-averaged models

Concurrent requests to one route are joined by ``@serve.batch``: their lists concatenated, one model call, the
answers split back in order. ``requests`` and ``batches`` count this replica's model requests and model calls.
A model that raises answers 422 with the reason; a malformed body 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor

import msgpack
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

# Each route's fields, all lists of the same length.
ROUTES = {"/probabilities": ("prompts", "first", "second"), "/scores": ("prompts", "responses"),
          "/both_orders": ("prompts", "first", "second")}


def token_digest(token: str) -> str:
    """What the replicas hold instead of the token, so it never leaves the process that read it."""
    return hashlib.sha256(token.encode()).hexdigest()


def _answer(status: int, body: dict) -> Response:
    return Response(msgpack.packb(body), status_code=status, media_type="application/msgpack")


def _empty(route: str) -> dict:
    return {"/scores": {"scores": []}, "/both_orders": {"probabilities": [], "disagree": []}}.get(
        route, {"probabilities": []})


def _split(values: list, sizes: list[int]) -> list[list]:
    out, start = [], 0
    for n in sizes:
        out.append(values[start:start + n])
        start += n
    return out


@serve.deployment(max_ongoing_requests=256)
class PreferenceServer:
    def __init__(self, kind: str, options: dict, digest: str, max_batch_size: int = 32,
                 batch_wait_s: float = 0.01) -> None:
        from selfplay.preference.model import build_preference_model

        self._kind = kind
        self._model = build_preference_model(kind, **options)
        self._digest = digest
        # One thread owns the model (engines are not thread-safe) and keeps the event loop free for /health and 401s.
        self._executor = ThreadPoolExecutor(max_workers=1)
        self.requests = self.batches = 0
        for handler in (self._probabilities, self._scores, self._both_orders):
            handler.set_max_batch_size(max_batch_size)
            handler.set_batch_wait_timeout_s(batch_wait_s)

    def info(self) -> dict:
        score_based = bool(getattr(self._model, "score_based", False))
        return {"kind": self._kind, "score_based": score_based,
                "order_averaged": bool(getattr(self._model, "order_averaged", False)),
                "sharpness": float(self._model.sharpness) if score_based else None,
                "requests": self.requests, "batches": self.batches}

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token_digest(token.strip()), self._digest)

    async def __call__(self, request: Request) -> Response:
        if not self._authorised(request.headers.get("authorization", "")):
            return _answer(401, {"error": "missing or wrong bearer token"})
        route = request.url.path
        if route == "/health" and request.method == "GET":
            return _answer(200, self.info())
        if route not in ROUTES or request.method != "POST":
            return _answer(404, {"error": f"no route {request.method} {route} (GET /health, POST "
                                          f"{', '.join(ROUTES)})"})
        info = self.info()
        if (route == "/scores" and not info["score_based"]) or (route == "/both_orders" and
                                                                not info["order_averaged"]):
            return _answer(400, {"error": f"the served preference.kind={self._kind} has no {route}"})
        try:
            lists = self._parse(await request.body(), ROUTES[route])
        except ValueError as exc:
            return _answer(400, {"error": str(exc)})
        if not lists[0]:
            return _answer(200, _empty(route))
        self.requests += 1
        handler = {"/probabilities": self._probabilities, "/scores": self._scores,
                   "/both_orders": self._both_orders}[route]
        try:
            return _answer(200, await handler(lists))
        except Exception as exc:  # the model's failure is the caller's to report, not a reason to retry
            return _answer(422, {"error": f"the preference model raised {type(exc).__name__}: {exc}"})

    @staticmethod
    def _parse(body: bytes, fields: tuple[str, ...]) -> list[list]:
        try:
            data = msgpack.unpackb(body)
            lists = [list(data[f]) for f in fields]
        except Exception:
            raise ValueError(f"the body must be a msgpack map of lists {', '.join(fields)}") from None
        if len({len(v) for v in lists}) > 1:
            raise ValueError(f"{', '.join(fields)} must have the same length")
        return lists

    async def _run(self, method, *lists):
        self.batches += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, method, *lists)

    @staticmethod
    def _concat(requests: list[list[list]]) -> list[list]:
        return [[x for r in requests for x in r[i]] for i in range(len(requests[0]))]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _probabilities(self, requests: list[list[list]]) -> list[dict]:
        values = await self._run(self._model.probabilities, *self._concat(requests))
        parts = _split([float(v) for v in values], [len(r[0]) for r in requests])
        return [{"probabilities": p} for p in parts]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _scores(self, requests: list[list[list]]) -> list[dict]:
        values = await self._run(self._model.scores, *self._concat(requests))
        return [{"scores": p} for p in _split([float(v) for v in values], [len(r[0]) for r in requests])]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _both_orders(self, requests: list[list[list]]) -> list[dict]:
        probabilities, disagree = await self._run(self._model.both_orders, *self._concat(requests))
        sizes = [len(r[0]) for r in requests]
        return [{"probabilities": p, "disagree": d} for p, d in zip(
            _split([float(v) for v in probabilities], sizes), _split([bool(v) for v in disagree], sizes))]
