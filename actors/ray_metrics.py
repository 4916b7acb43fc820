"""Prometheus metrics through Ray: ``ray.util.metrics`` objects, which Ray's own metrics agent serves on each
node's metrics port (``ray.metrics_export_port``, or ``ray start --metrics-export-port``) with a ``ray_`` prefix:
``selfplay_step`` is scraped as ``ray_selfplay_step``, a counter ``selfplay_samples`` as
``ray_selfplay_samples_total``. Every series carries ``run`` (the run name) and ``role`` tags.

Here: the metric naming shared by the controller's sink (orchestration/telemetry/prometheus_sink.py), and the exporter a
rollout worker runs to forward its vLLM engine's own statistics (``LLM.get_metrics()``)."""

from __future__ import annotations

import atexit
import re
import threading

PREFIX = "selfplay_"
TAG_KEYS = ("run", "role")


def metric_name(key: str) -> str:
    """``selfplay_`` + a row key with every character Prometheus does not allow (``/``, ``.``, ...) as ``_``."""
    return PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", key)


class RayMetrics:
    """Gauges, counters and histograms made on first use, by name; counters are fed cumulative totals and
    increase by the difference (a total that goes down, as after a restart, starts the count afresh).

    Ray's agent drops a gauge value not reported again within two export intervals, so with ``keep_gauges`` a
    thread sets every gauge's last value again each ``interval_s`` while Ray is up: a value written once (the
    final win-rate) stays on the endpoint until the driver disconnects."""

    def __init__(self, tags: dict[str, str], keep_gauges: bool = False, interval_s: float = 1.0) -> None:
        self.tags = dict(tags)
        self._metrics: dict[str, object] = {}
        self._totals: dict[tuple, float] = {}
        self._gauges: dict[tuple, float] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._keeper: threading.Thread | None = None
        if keep_gauges:
            self._keeper = threading.Thread(target=self._keep, args=(interval_s,), name="gauges", daemon=True)
            self._keeper.start()
            # Before Ray's own exit hook (registered when ray was imported, so it runs after this one): a metric
            # recorded while the core worker is torn down crashes the interpreter.
            atexit.register(self.stop)

    def stop(self) -> None:
        """No more re-reporting of the gauges (they leave Ray's endpoint two export intervals later); returns once
        the thread doing it has ended."""
        self._stopped.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=10)
        atexit.unregister(self.stop)

    def _keep(self, interval_s: float) -> None:
        import ray
        from ray._private.worker import _connect_or_shutdown_lock  # what ray.shutdown holds while it disconnects

        while not self._stopped.wait(interval_s):
            with self._lock:
                gauges = list(self._gauges.items())
            # Under Ray's connect/shutdown lock, so that a ray.shutdown() from another thread never runs between
            # the check and a record.
            with _connect_or_shutdown_lock:
                if not ray.is_initialized() or self._stopped.is_set():
                    return
                for (name, tags), value in gauges:
                    try:
                        self._metrics[name].set(value, tags=dict(tags))
                    except Exception:  # a metric Ray no longer serves
                        return

    def _get(self, kind: str, name: str, description: str, extra_tags: tuple = (), **kw):
        metric = self._metrics.get(name)
        if metric is None:
            from ray.util import metrics

            cls = {"gauge": metrics.Gauge, "counter": metrics.Counter, "histogram": metrics.Histogram}[kind]
            metric = cls(name, description=description, tag_keys=tuple(self.tags) + extra_tags, **kw)
            self._metrics[name] = metric
        return metric

    def gauge(self, name: str, value: float, description: str = "", **tags: str) -> None:
        all_tags = {**self.tags, **tags}
        self._get("gauge", name, description, tuple(tags)).set(float(value), tags=all_tags)
        with self._lock:
            self._gauges[(name, tuple(sorted(all_tags.items())))] = float(value)

    def total(self, name: str, total: float, description: str = "", **tags: str) -> None:
        """Counter ``name`` set to a cumulative ``total``."""
        key = (name, tuple(sorted(tags.items())))
        previous = self._totals.get(key, 0.0)
        delta = total - previous if total >= previous else total
        self._totals[key] = float(total)
        if delta > 0:
            self._get("counter", name, description, tuple(tags)).inc(float(delta), tags={**self.tags, **tags})

    def observe(self, name: str, value: float, boundaries: list[float], description: str = "", **tags: str) -> None:
        self._get("histogram", name, description, tuple(tags), boundaries=boundaries).observe(
            float(value), tags={**self.tags, **tags})


# vLLM's own metric (LLM.get_metrics(), summed over its label sets) -> (selfplay name, kind).
VLLM_STATS = {
    "vllm:num_requests_running": ("vllm_requests_running", "gauge"),
    "vllm:num_requests_waiting": ("vllm_requests_waiting", "gauge"),
    "vllm:kv_cache_usage_perc": ("vllm_kv_cache_usage", "gauge"),
    "vllm:prompt_tokens": ("vllm_prompt_tokens", "counter"),
    "vllm:generation_tokens": ("vllm_generation_tokens", "counter"),
    "vllm:prefix_cache_queries": ("vllm_prefix_cache_queries", "counter"),
    "vllm:prefix_cache_hits": ("vllm_prefix_cache_hits", "counter"),
}


class EngineStatsExporter:
    """A thread in a rollout worker: every ``interval_s`` reads the engine's statistics (``stats()``: vLLM name ->
    value) and sets them as ``selfplay_vllm_*`` metrics tagged ``role=rollout`` and ``engine``. It polls while the
    engine generates, so running and waiting requests and the KV-cache use are seen mid-batch."""

    def __init__(self, stats, tags: dict[str, str], interval_s: float = 1.0) -> None:
        self._stats = stats
        self._metrics = RayMetrics({**tags, "role": "rollout"})
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-stats", daemon=True)
        self._thread.start()

    def export(self) -> None:
        for vllm_name, value in self._stats().items():
            if vllm_name not in VLLM_STATS:
                continue
            key, kind = VLLM_STATS[vllm_name]
            if kind == "gauge":
                self._metrics.gauge(PREFIX + key, value, f"vLLM {vllm_name}")
            else:
                self._metrics.total(PREFIX + key, value, f"vLLM {vllm_name}")

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.export()
            except Exception:  # statistics are best effort: never disturb generation
                pass

    def stop(self) -> None:
        self._stop.set()
