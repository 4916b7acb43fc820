"""On a cluster the run directory (``run.output_dir``) and the policy's model directory must be storage that every
node and the driver see: the learner ranks write their checkpoint shards into the run directory and every actor
loads the model from its path. Checked once the placement groups are ready, before any model loads, so a node
that cannot see them is an error at start, not at the first checkpoint."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import ray

from selfplay.errors import InputError

MARKER = ".selfplay-storage-check"


@ray.remote(num_cpus=0)
def _what_node_sees(paths: list[str], marker: str, token: str) -> list[str]:
    """The paths this node cannot see, and the marker when it reads a different file (another disk at the same
    path)."""
    missing = [p for p in paths if not os.path.exists(p)]
    try:
        same = Path(marker).read_text() == token
    except OSError:
        same = False
    return missing + ([] if same or marker in missing else [marker])


def check_shared_storage(node_ids: set[str], run_dir: Path, model_path: str, where: dict[str, str]) -> None:
    """Ask one task on each node in ``node_ids`` whether it sees ``run_dir`` (the same directory: a marker the
    driver writes) and ``model_path``; ``where`` names what runs on each node, for the message."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # The driver's own node sees what the driver wrote and resolved: only the other nodes are asked (a one-node
    # run starts no task, so no worker process, for this check).
    nodes = sorted(node_ids - {ray.get_runtime_context().get_node_id()})
    if not nodes:
        return
    marker = run_dir / MARKER
    token = secrets.token_hex(8)
    marker.write_text(token)
    try:
        answers = ray.get([_what_node_sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote([str(run_dir), model_path], str(marker), token) for node in nodes])
    finally:
        marker.unlink(missing_ok=True)
    addresses = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
    for node, problems in zip(nodes, answers):
        if not problems:
            continue
        what = (f"the policy's model directory {model_path}" if problems == [model_path]
                else f"the run directory {run_dir} (run.output_dir)")
        raise InputError(
            f"{what} is not visible, or not the same storage, on node {addresses.get(node, node[:12])}, where "
            f"{where.get(node, 'an actor')} runs: on a cluster, run.output_dir and the model must be on storage "
            "every node and the driver see (NFS, EFS, a mounted bucket; a hub model in a shared HF_HOME)")
