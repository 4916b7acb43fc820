"""The broadcast, shared-memory and mixed transports between plain processes: this process sends, two spawned ones
receive (gloo carries the broadcast's data and the shared-memory backend's control messages; the mixed transport
routes receiver 1 through shared memory and receiver 2 through the broadcast, as for one engine on the learner's
node and one elsewhere).

Pushes in one group, in order: a normal push; one the receivers expect under another version (refused after
draining); one whose consumer stops after the first tensor (drained); one the sender fails half-way (aborted);
and a last normal push, which arrives bit-identical: the group is still in step after all of that.
"""

import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from selfplay.rollout.transport import build_receiver, build_sender
from selfplay.rollout.weights_digest import weights_digest

BUCKET_BYTES = 4096  # small, so a push is many buckets


def _model(seed):
    g = torch.Generator().manual_seed(seed)
    return [("model.embed_tokens.weight", torch.randn(40, 16, generator=g)),
            ("model.layers.0.self_attn.q_proj.weight", torch.randn(16, 16, generator=g).to(torch.bfloat16)),
            ("model.layers.0.mlp.up_proj.weight", torch.randn(64, 16, generator=g)),  # 4 KiB: a bucket alone
            ("model.layers.0.input_layernorm.weight", torch.randn(16, generator=g)),
            ("model.norm.weight", torch.randn(16, generator=g).to(torch.float16)),
            ("lm_head.weight", torch.randn(40, 16, generator=g))]


def _receive(kind, endpoint, rank, out_dir):
    receiver = build_receiver(kind)
    receiver.connect(endpoint, rank)
    results = {}
    got = dict(receiver.receive(1))
    results["first"] = weights_digest(got.items())
    save_file({k: v.contiguous() for k, v in got.items()}, f"{out_dir}/rank{rank}_first.safetensors")
    try:
        list(receiver.receive(3))  # the learner sends version 2
    except ValueError as exc:
        results["wrong_version"] = str(exc)
    for _ in receiver.receive(3):
        break  # stop after one tensor: the rest is drained
    try:
        list(receiver.receive(4))
    except RuntimeError as exc:
        results["aborted"] = str(exc)
    got = dict(receiver.receive(5))
    results["last"] = weights_digest(got.items())
    save_file({k: v.contiguous() for k, v in got.items()}, f"{out_dir}/rank{rank}_last.safetensors")
    receiver.close()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(results, f)


def _failing(tensors):
    yield from tensors[:3]  # the first bucket has gone out when the gather fails
    raise RuntimeError("gather failed")


@pytest.mark.parametrize("kind", ["broadcast", "shared_memory", "mixed"])
def test_push_between_processes_is_bit_identical(tmp_path, kind):
    sender = build_sender(kind, bucket_bytes=BUCKET_BYTES, timeout_s=120, backend="gloo", local=[True, False])
    endpoint = sender.open(2, host="127.0.0.1")
    assert endpoint["world_size"] == 3 and endpoint["kind"] == kind
    shm = {"shared_memory": endpoint, "mixed": endpoint.get("parts", {}).get("shared_memory")}.get(kind)
    if kind == "mixed":
        assert endpoint["routes"] == [["shared_memory", 1], ["broadcast", 1]]
        assert {k: e["world_size"] for k, e in endpoint["parts"].items()} == {"shared_memory": 2, "broadcast": 2}
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_receive, args=(kind, endpoint, rank, str(tmp_path))) for rank in (1, 2)]
    for p in procs:
        p.start()
    try:
        sender.connect()
        first, last = _model(0), _model(1)
        stats = sender.send(1, iter(first))
        if shm:  # every receiver has mapped the push's files, so they are unlinked already
            assert not list(Path("/dev/shm").glob(f"selfplay-weights-*-{shm['group']}-*"))
        assert stats.version == 1 and stats.tensors == len(first) and stats.buckets >= 3
        assert stats.bytes >= sum(t.numel() * t.element_size() for _, t in first) and stats.seconds > 0
        sender.send(2, iter(first))
        sender.send(3, iter(first))
        with pytest.raises(RuntimeError, match="gather failed"):
            sender.send(4, _failing(first))
        sender.send(5, iter(last))
        if shm:  # new files of the last push (larger buckets) are gone too
            assert not list(Path("/dev/shm").glob(f"selfplay-weights-*-{shm['group']}-*"))
    finally:
        for p in procs:
            p.join(timeout=120)
        sender.close()
    assert [p.exitcode for p in procs] == [0, 0]
    for rank in (1, 2):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert results["first"] == weights_digest(first)
        assert results["last"] == weights_digest(last)
        assert "expected weight push version 3" in results["wrong_version"]
        assert "aborted weight push 4" in results["aborted"]
        for tag, expected in (("first", first), ("last", last)):
            got = load_file(str(tmp_path / f"rank{rank}_{tag}.safetensors"))
            for name, t in expected:
                assert got[name].dtype == t.dtype and torch.equal(got[name].view(torch.uint8),
                                                                  t.view(torch.uint8)), (rank, tag, name)


def test_the_group_is_not_the_default_process_group():
    import torch.distributed as dist

    sender = build_sender("broadcast", bucket_bytes=BUCKET_BYTES, timeout_s=30, backend="gloo")
    sender.open(1)
    assert not dist.is_initialized()
    sender.close()


def test_only_files_of_processes_that_are_gone_are_orphans(tmp_path):
    import subprocess
    import sys

    from selfplay.rollout.transport.shm_files import orphans, remove_orphans, shm_file

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    mine = shm_file("g", 0, tmp_path)
    theirs = tmp_path / f"selfplay-weights-{int(dead.stdout)}-g-0"
    other = tmp_path / "not-ours-1-g-0"
    for path in (mine, theirs, other):
        path.write_bytes(b"x")
    assert orphans(tmp_path) == [theirs]
    assert remove_orphans(tmp_path) == [theirs]
    assert mine.exists() and other.exists() and not theirs.exists()


def test_auto_transport_is_chosen_per_engine_by_where_it_runs(tmp_path):
    from selfplay.rollout.transport.base import choose_transport
    from selfplay.rollout.transport.mixed import routes

    assert choose_transport("auto", [True, True], False) == "shared_memory"
    assert choose_transport("auto", [False, False], False) == "broadcast"   # every engine on another node
    assert choose_transport("auto", [True, False], False) == "mixed"        # one here, one elsewhere
    assert choose_transport("auto", [True, False], True) == "broadcast"     # GPU engines: NCCL
    assert choose_transport("auto", [True], False, shm_dir=str(tmp_path / "none")) == "broadcast"
    assert choose_transport("object_store", [True], False) == "object_store"
    assert routes([False, True, True, False]) == [("broadcast", 1), ("shared_memory", 1), ("shared_memory", 2),
                                                  ("broadcast", 2)]


class _WorkDoneJustAfterThePoll:
    """A gloo work whose poll times out and which completes, successfully, right after (a loaded machine)."""

    def __init__(self, error=None):
        self.completed, self.error = False, error

    def wait(self, timeout=None):
        if timeout is not None and not self.completed:
            self.completed = True  # it finished while the timeout was being raised
            raise RuntimeError("Operation timed out!")
        if self.error:
            raise self.error

    def is_completed(self):
        return self.completed


def test_a_poll_timeout_racing_the_collectives_completion_is_not_a_failure():
    """The abort-watching wait polls with a timeout; a collective that completes just after one used to have
    that poll's "Operation timed out!" re-raised as its error, failing a good push (seen under load)."""
    from selfplay.rollout.transport.broadcast import BroadcastGroup

    group = object.__new__(BroadcastGroup)
    group.backend = "gloo"
    group._await(_WorkDoneJustAfterThePoll())  # returns: the collective succeeded
    with pytest.raises(RuntimeError, match="peer is gone"):  # the collective's own error still surfaces
        group._await(_WorkDoneJustAfterThePoll(RuntimeError("peer is gone")))
