"""A real two-node Ray cluster on this machine: a head and a second node started with ``ray start`` (separate temp
dirs and ports; a custom resource on each), a short run submitted with ``ray job submit``, its rollout engine
placed on the second node and its learner on the head, every push verified across the nodes. Then joining by
``RAY_ADDRESS`` alone, and placement failures that name the role and the missing resource."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Ports of their own for a node's raylet and agents: two nodes on one machine must not share Ray's defaults."""
    return [f"--{name}={_free_port()}" for name in (
        "node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "runtime-env-agent-port", "metrics-export-port")]


def _ray(*args, env=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _started_by(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            # A zombie has exited already (only its parent has not reaped it yet): not a process left running.
            if proc.status() != psutil.STATUS_ZOMBIE and any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    # Short paths: Ray's unix sockets live under the temp dir and their paths are limited to 107 characters.
    head_dir, node_dir = Path(f"/tmp/sp-head-{os.getpid()}"), Path(f"/tmp/sp-node-{os.getpid()}")
    gcs, dashboard = _free_port(), _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    try:
        head = _ray("start", "--head", f"--port={gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=3",
                    "--resources={\"learner_node\": 1, \"engine_slot\": 1}", f"--temp-dir={head_dir}",
                    "--include-dashboard=true",
                    f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--disable-usage-stats",
                    f"--ray-client-server-port={_free_port()}", *_node_ports(), env=env)
        assert head.returncode == 0, head.stderr[-2000:]
        node = _ray("start", f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    "--resources={\"rollout_node\": 1, \"engine_slot\": 1}", f"--temp-dir={node_dir}",
                    "--disable-usage-stats",
                    *_node_ports(), env=env)
        assert node.returncode == 0, node.stderr[-2000:]
        yield {"root": root, "gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}", "env": env}
    finally:
        # Only what this test started: every process whose command line names one of its temp dirs.
        procs = _started_by(str(head_dir)) + _started_by(str(node_dir))
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=20)
        for proc in alive:
            proc.kill()
        assert not _started_by(str(head_dir)) + _started_by(str(node_dir))


def _nodes(cluster) -> dict[str, str]:
    """node id -> its custom resource (learner_node / rollout_node)."""
    out = _ray("list", "nodes", "--format=json", f"--address={cluster['dashboard']}", env=cluster["env"])
    assert out.returncode == 0, out.stderr[-2000:]
    nodes = {}
    for n in json.loads(out.stdout):
        resources = n.get("resources_total") or {}
        nodes[n["node_id"]] = next((k for k in ("learner_node", "rollout_node") if k in resources), "?")
    return nodes


def test_a_job_runs_across_two_nodes(cluster):
    """One engine on the learner's node, one on the other (``engine_slot``: one per node): the default transport
    is chosen per engine, shared memory to the first and the broadcast to the second, and every push verifies."""
    out_dir = cluster["root"] / "runs"
    entry = [sys.executable, "-m", "selfplay.orchestration.commands.cli", "train", "run.total_steps=3", "eval.every_steps=0",
             "checkpoint.every_steps=0", "rollout.prompts_per_step=8", f"run.output_dir={out_dir}",
             "run.name=two-nodes", "learner.resources={learner_node: 1}", "rollout.num_workers=2",
             "rollout.resources={engine_slot: 1}", "preference.num_cpus=0.25"]
    started = time.monotonic()
    while True:  # the head's dashboard agent takes a while after `ray start` to accept jobs
        job = _ray("job", "submit", f"--address={cluster['dashboard']}", f"--working-dir={REPO}", "--", *entry,
                   env=cluster["env"], timeout=600)
        if "No available agent" not in job.stderr or time.monotonic() - started > 120:
            break
        time.sleep(3)
    assert job.returncode == 0, (job.stdout[-3000:], job.stderr[-3000:])
    job_id = re.search(r"Job '(raysubmit_\w+)' succeeded", job.stdout)
    assert job_id, job.stdout[-3000:]
    from ray.job_submission import JobStatus, JobSubmissionClient
    assert JobSubmissionClient(cluster["dashboard"]).get_job_status(job_id.group(1)) == JobStatus.SUCCEEDED
    summary = json.loads((out_dir / "two-nodes" / "summary.json").read_text())
    kinds = _nodes(cluster)
    assert [kinds[n] for n in summary["nodes"]["learner"]] == ["learner_node"]
    local = [kinds[n] == "learner_node" for n in summary["nodes"]["rollout"]]
    assert sorted(local) == [False, True], summary["nodes"]
    assert summary["last_push"]["backend"] == "mixed(shared_memory, broadcast/gloo)", summary["last_push"]
    assert summary["steps"] == 3 and summary["verified_pushes"] == summary["policy_version"] == 3
    print(f"\ntwo-node job: {time.monotonic() - started:.0f} s from submit to SUCCEEDED")


def test_ray_address_alone_joins_and_placement_failures_name_the_role(cluster):
    env = {**cluster["env"], "RAY_ADDRESS": cluster["gcs"]}
    base = [sys.executable, "-m", "selfplay.orchestration.commands.cli", "train", "run.total_steps=1", "eval.every_steps=0",
            "checkpoint.every_steps=0", f"run.output_dir={cluster['root'] / 'runs'}", "run.overwrite=true"]
    # Joined with RAY_ADDRESS only (no num_cpus refusal); more GPUs than any node has: infeasible, named.
    started = time.monotonic()
    run = subprocess.run([*base, "run.name=gpus", "learner.num_gpus=4", "ray.placement_timeout_s=5"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    error = run.stderr.strip().splitlines()[-1]
    assert "learner rank(s) of CPU 1, GPU 4 each: infeasible, no node has GPU 4" in error, error
    assert time.monotonic() - started < 60
    # Feasible, but held by another job now: pending, said so after a short timeout.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import ray, time; from ray.util import placement_group; ray.init(); "
        "g = placement_group([{'CPU': 0.1, 'rollout_node': 1}]); ray.get(g.ready()); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = subprocess.run([*base, "run.name=pending", "rollout.resources={rollout_node: 1}",
                              "ray.placement_timeout_s=3"], capture_output=True, text=True, cwd=REPO, env=env,
                             timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 2, run.stderr[-3000:]
    error = run.stderr.strip().splitlines()[-1]
    assert "1 rollout engine(s) of CPU 1, rollout_node 1 each: still pending after 3 s" in error, error
    # Nothing reserved is left behind: the next run gets the whole cluster.
    out = _ray("list", "placement-groups", "--format=json", f"--address={cluster['dashboard']}", env=cluster["env"])
    assert all(g["state"] == "REMOVED" for g in json.loads(out.stdout)), out.stdout
