"""Time a full weight push of a ~100M-parameter Llama-style model with each transport, between two processes.

Two Ray actors on this machine: a sender holding the model (random weights from a config, no download) and a
receiver holding a replica it loads each push into (as an engine loads in place). Each push is timed from the
driver, end to end (send started -> receiver has copied the last tensor), and compared with a plain in-memory
copy of the same bytes in one process (``dst.copy_(src)`` per tensor): the issue's goal is <= 2x.

    python bench/weight_push.py                       # hidden 768, 12 layers, vocab 32000: ~110M parameters
    python bench/weight_push.py --pushes 1 --backends broadcast
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
import torch  # noqa: E402


def build_model(args) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64, tie_word_embeddings=args.tied,
                         torch_dtype="float32")
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _raw_broadcast(group, nbytes: int, bucket_bytes: int, repeats: int, fill: bool) -> float:
    sizes = [bucket_bytes] * (nbytes // bucket_bytes) + ([nbytes % bucket_bytes] if nbytes % bucket_bytes else [])
    buffers = [torch.ones(n, dtype=torch.uint8) if fill else torch.empty(n, dtype=torch.uint8) for n in sizes]
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for buffer in buffers:
            group.broadcast(buffer)
        best = min(best, time.perf_counter() - start)
    return best


@ray.remote(num_cpus=1)
class Sender:
    def __init__(self, args) -> None:
        self.model = build_model(args)
        self.bucket_bytes = args.bucket_mb * 2**20
        self.sender = None

    def info(self) -> tuple[int, int]:
        params = list(self.model.named_parameters())
        return sum(p.numel() for _, p in params), sum(p.numel() * p.element_size() for _, p in params)

    def open(self, kind: str) -> dict:
        from selfplay.rollout.transport import build_sender

        if self.sender is not None:
            self.sender.close()
        self.sender = build_sender(kind, bucket_bytes=self.bucket_bytes, timeout_s=600)
        return self.sender.open(1, host="127.0.0.1")

    def connect(self) -> None:
        self.sender.connect()

    def send(self, version: int):
        tensors = ((n, p.detach()) for n, p in self.model.named_parameters())
        return self.sender.send(version, tensors)

    def raw_broadcast(self, nbytes: int, repeats: int) -> float:
        """Seconds for the same bytes as bare gloo broadcasts of preallocated buckets, over the open group:
        the wire's floor, without packing, metadata or loading (best of ``repeats``)."""
        return _raw_broadcast(self.sender._group, nbytes, self.bucket_bytes, repeats, fill=True)

    def copy_baseline(self, repeats: int) -> float:
        """Seconds for one in-memory copy of every parameter into preallocated tensors (best of ``repeats``)."""
        params = [p.detach() for p in self.model.parameters()]
        dst = [torch.empty_like(p) for p in params]
        best = float("inf")
        for _ in range(repeats + 1):  # the first pass faults the destination pages in
            start = time.perf_counter()
            for d, s in zip(dst, params):
                d.copy_(s)
            best = min(best, time.perf_counter() - start)
        return best


@ray.remote(num_cpus=1)
class Receiver:
    def __init__(self) -> None:
        self.receiver = None
        self.replica: dict[str, torch.Tensor] = {}

    def connect(self, kind: str, endpoint: dict) -> None:
        from selfplay.rollout.transport import build_receiver

        if self.receiver is not None:
            self.receiver.close()
        self.receiver = build_receiver(kind)
        self.receiver.connect(endpoint, 1)

    def raw_broadcast(self, nbytes: int, bucket_bytes: int, repeats: int) -> float:
        return _raw_broadcast(self.receiver._group, nbytes, bucket_bytes, repeats, fill=False)

    def receive(self, version: int, source) -> float:
        start = time.perf_counter()
        for name, tensor in self.receiver.receive(version, self.receiver.fetch(source)):
            if name not in self.replica:
                self.replica[name] = torch.empty_like(tensor)
            self.replica[name].copy_(tensor)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--tied", action=argparse.BooleanOptionalAction, default=True,
                        help="tie the output embedding to the input one (default: tied)")
    parser.add_argument("--bucket-mb", type=int, default=64)
    parser.add_argument("--pushes", type=int, default=2, help="timed pushes per backend (after one warm-up)")
    parser.add_argument("--backends", nargs="+", default=["object_store", "broadcast", "shared_memory"])
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, object_store_memory=3 * 2**30, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": root, "RAY_USAGE_STATS_ENABLED": "0"}})
    sender, receiver = Sender.remote(args), Receiver.remote()
    count, nbytes = ray.get(sender.info.remote())
    print(f"model: {count / 1e6:.1f}M parameters, {nbytes / 2**20:.0f} MiB (float32), bucket {args.bucket_mb} MiB")
    copy = ray.get(sender.copy_baseline.remote(3))
    print(f"in-memory copy, one process:  {copy:7.3f} s  ({nbytes / copy / 2**30:.2f} GiB/s)")
    for kind in args.backends:
        endpoint = ray.get(sender.open.remote(kind))
        ray.get([sender.connect.remote(), receiver.connect.remote(kind, endpoint)])
        times, recv_times = [], []
        for version in range(1, args.pushes + 2):
            start = time.perf_counter()
            send = sender.send.remote(version)
            recv = receiver.receive.remote(version, [send])  # submitted before any ray.get: a collective
            stats, recv_seconds = ray.get(send), ray.get(recv)
            if version > 1:  # the first push is a warm-up (allocations, connections)
                times.append(time.perf_counter() - start)
                recv_times.append(recv_seconds)
        best = min(times)
        if kind == "broadcast":
            floor = max(ray.get([sender.raw_broadcast.remote(nbytes, 2),
                                 receiver.raw_broadcast.remote(nbytes, args.bucket_mb * 2**20, 2)]))
            print(f"bare gloo broadcast of the same bytes, preallocated: {floor:7.3f} s "
                  f"({nbytes / floor / 2**30:.2f} GiB/s) = {floor / copy:5.1f}x the in-memory copy")
        print(f"{kind:13s} push, 2 procs: {best:7.3f} s best of {len(times)} (mean {sum(times) / len(times):.3f}; "
              f"sender {stats.seconds:.3f} s, receiver {min(recv_times):.3f} s; {stats.buckets} buckets, "
              f"{stats.bytes / 2**20:.0f} MiB)  = {best / copy:5.1f}x the in-memory copy")
    ray.shutdown()


if __name__ == "__main__":
    main()
