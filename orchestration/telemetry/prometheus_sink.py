"""The Prometheus sink: each step's row as ``selfplay_*`` metrics of ``ray.util.metrics``, which Ray's own metrics
agent serves on the node's metrics port (``ray.metrics_export_port``; on a cluster ``ray start
--metrics-export-port``) as ``ray_selfplay_*``, tagged ``run`` and ``role=controller``.
``dashboards/selfplay.json`` is a Grafana dashboard of them, ``dashboards/prometheus.yml`` a scrape config.

What each row key becomes: the run totals ``samples``, ``tokens`` and ``preference_calls`` counters;
``policy_lag``, each ``time/<phase>`` (one histogram, tag ``phase``), ``preference/seconds`` and ``push/seconds``
histograms; everything else (loss and the algorithm's terms, ``kl_to_ref``, ``win_rate_vs_initial``,
``exploitability``, ...) a gauge named after its key, ``/`` and ``.`` as ``_``."""

from __future__ import annotations

from selfplay.actors.ray_metrics import PREFIX, RayMetrics, metric_name

# Run totals that grow every step -> counters (the rarer ones, dropped_stale and rejected_*, stay gauges: a
# counter never increased would have no series at all).
TOTALS = ("samples", "tokens", "preference_calls")
SECONDS = [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000]
LAG = [0.5, 1.5, 2.5, 3.5, 5.5, 9.5]
# Per-batch values counted elsewhere (preference_calls is the run total, eval calls included).
SKIPPED = ("preference/calls",)
_keeping: RayMetrics | None = None  # the metrics whose gauges are re-reported every second (the latest run's)


class PrometheusSink:
    name = "prometheus"

    def __init__(self, run_name: str) -> None:
        global _keeping
        if _keeping is not None:  # one run's gauges kept alive per driver: an earlier run's thread stops here
            _keeping.stop()
        self._metrics = _keeping = RayMetrics({"run": run_name, "role": "controller"}, keep_gauges=True)
        self._endpoint = metrics_endpoint()

    def write(self, step: int, row: dict[str, float]) -> None:
        m = self._metrics
        m.gauge(PREFIX + "step", step, "learner steps taken")
        for key, value in row.items():
            if not isinstance(value, (int, float)) or key in SKIPPED:
                continue
            if key in TOTALS:
                m.total(metric_name(key), value, f"run total of {key}")
            elif key.startswith("time/"):
                m.observe(PREFIX + "phase_seconds", value, SECONDS, "seconds of one loop phase", phase=key[5:])
            elif key == "policy_lag":
                m.observe(metric_name(key), value, LAG, "policy versions between sampling and training")
            elif key in ("preference/seconds", "push/seconds"):
                m.observe(metric_name(key), value, SECONDS, key)
            else:
                m.gauge(metric_name(key), value, key)

    def write_samples(self, step: int, samples: list[dict]) -> None:
        pass

    def state(self) -> dict:
        return {}

    def where(self) -> str | None:
        return f"Prometheus: {self._endpoint} (Ray's metrics agent)" if self._endpoint else None

    def close(self, failed: bool = False) -> None:
        pass  # the gauges stay on Ray's endpoint while the driver is connected (RayMetrics keep_gauges)


def metrics_endpoint() -> str | None:
    """``http://host:port/metrics`` of the driver's node's metrics agent, if Ray reports one."""
    import ray

    try:
        node = next(n for n in ray.nodes() if n["alive"] and n["NodeID"] == ray.get_runtime_context().get_node_id())
        return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    except Exception:  # not connected, or an older node table: the port is in Ray's own logs
        return None
