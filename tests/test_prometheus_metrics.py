"""Prometheus through Ray's metrics: the sink's naming (fast), and one real run whose selfplay_* series are scraped
from Ray's metrics agent while it runs and, through a real Prometheus server (Debian's ``prometheus``, installed
here for the test only), answer every PromQL expression of every panel of dashboards/selfplay.json."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

# Ray's processes export metrics every second (default 10 s); read when Ray first loads its config in this
# process, so it is set on import, before any test starts Ray.
os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")

from tests.conftest import REPO, run_in_process

DASHBOARD = REPO / "dashboards" / "selfplay.json"
# Series only some preference kinds make: the expression must still be valid PromQL.
KIND_SPECIFIC = {"preference_swap_inconsistency": "pairwise and judge kinds only",
                 "pipeline_queue_depth": "async mode only"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_metric_names_are_sanitized():
    from selfplay.actors.ray_metrics import metric_name

    assert metric_name("time/train") == "selfplay_time_train"
    assert metric_name("osp/judge.accuracy") == "selfplay_osp_judge_accuracy"


def test_dashboard_targets_use_ray_exported_names():
    dashboard = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "run"}
    for expr in _expressions():
        assert "ray_selfplay_" in expr and 'run=~"$run"' in expr, expr


@pytest.fixture(scope="session")
def prometheus_binary():
    """Debian's prometheus server, installed for the test (never part of the project's install)."""
    path = shutil.which("prometheus")
    if path is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run("apt-get update -qq && apt-get install -y -qq prometheus", shell=True, check=True, env=env,
                       stdout=subprocess.DEVNULL)
        path = shutil.which("prometheus")
    assert path, "prometheus not installed"
    return path


def _scrape(port: int) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, s.labels.get("run"), s.labels.get("role"), s.labels.get("engine")): s.value
            for family in text_string_to_metric_families(text) if family.name.startswith("ray_selfplay_")
            for s in family.samples}


def _query(prom_port: int, expr: str, start: float) -> dict:
    """``expr`` over the run's time, 1 s apart, as a Grafana panel asks for it (a range query: a gauge last set
    when the run ended is no longer in an instant query's window once its series has gone stale)."""
    url = f"http://127.0.0.1:{prom_port}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": f"{start:.3f}", "end": f"{time.time():.3f}", "step": "1"})
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


@pytest.mark.slow
def test_run_metrics_through_ray_agent_and_prometheus(tmp_path, ray_session_per_module, prometheus_binary):
    import ray

    if ray.is_initialized():  # the export interval and the port are set when Ray starts
        ray.shutdown()
    port, prom_port, name = _free_port(), _free_port(), "prom-run"
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ray\n"
                      f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    prometheus = subprocess.Popen([prometheus_binary, f"--config.file={config}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = run_in_process(
                tmp_path, name, "task.name=game", "preference.kind=game", "run.total_steps=40",
                "rollout.prompts_per_step=16", f"ray.metrics_export_port={port}")[1]
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    started = time.time()
    try:
        thread = threading.Thread(target=run)
        thread.start()
        totals = []  # (samples_total, vLLM generated tokens) seen in each scrape during the run
        while thread.is_alive():
            time.sleep(0.5)
            try:
                scraped = _scrape(port)
            except OSError:  # Ray not up yet
                continue
            samples = scraped.get(("ray_selfplay_samples_total", name, "controller", None))
            tokens = scraped.get(("ray_selfplay_vllm_generation_tokens_total", name, "rollout", "0"))
            if samples is not None:
                totals.append((samples, tokens))
        thread.join()
        if "error" in result:
            raise result["error"]
        assert result["summary"]["steps"] == 40
        # The counters grew between scrapes taken during the run, under the run's label.
        assert len({s for s, _ in totals}) >= 2 and totals == sorted(totals, key=lambda t: t[0]), totals
        assert totals[-1][1] is not None and totals[-1][1] > 0, "no vLLM engine statistics"
        # The final evaluation's row (the exploitability) is written moments before the run returns; Ray's agent
        # has it once the driver's next report is in (RAY_metrics_report_interval_ms, 1 s here).
        exploitability = ("ray_selfplay_exploitability", name, "controller", None)
        deadline = time.monotonic() + 15
        final = _scrape(port)
        while exploitability not in final and time.monotonic() < deadline:
            time.sleep(0.5)
            final = _scrape(port)
        assert final.get(("ray_selfplay_step", name, "controller", None)) == 40, sorted(final)
        assert exploitability in final, sorted(final)

        # Every panel's expression answers from Prometheus (kind-specific series: valid PromQL, may be empty).
        missing = {}
        deadline = time.monotonic() + 30
        for expr in _expressions():
            query = expr.replace("$run", name)
            while True:
                answer = _query(prom_port, query, started)
                assert answer["status"] == "success", (expr, answer)
                if answer["data"]["result"] or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            if not answer["data"]["result"] and not any(k in expr for k in KIND_SPECIFIC):
                missing[expr] = answer
        names = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{prom_port}/api/v1/label/__name__/values", timeout=5).read())["data"]
        targets = urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=5).read().decode()
        assert not missing, (sorted(missing), [n for n in names if "selfplay" in n], targets)
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
