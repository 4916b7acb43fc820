"""Checkpoint weights at two model sizes, before and after this change, side by side in one run: seconds and peak
host memory of writing the policy's weights (as the learner's export and the reference are written), of taking
the manifest's digests, of verifying the checkpoint, and of resuming: loading the reference back into a model's
parameters (what each learner rank does).

before: every tensor gathered into one dict (the copy ZeRO-3 and GPU ranks make), one unsharded file, then the
        driver hashing every file with sha256 (twice with resume=auto: once to choose, once to resume), and each
        rank loading the whole reference as one dict on resume;
after:  tensors streamed into safetensors shards of at most --shard-mb, only the shard being filled in memory,
        the writer taking an xxh3-128 digest of each file it wrote, verification reading each file once, and
        the resume reading one tensor at a time from its shard (learner/sharded_safetensors.py ShardedTensors).

Each measurement runs in a fresh process and reports the most anonymous memory it held above what the model
itself holds (file pages a memory-mapped read leaves in RSS are the kernel's to reclaim, not counted).

    .venv/bin/python bench/checkpoint_scale.py [--sizes 50M,300M] [--shard-mb 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = {  # ~50M and ~300M float32 parameters (a 32k vocabulary, Llama-shaped layers)
    "50M": dict(hidden_size=512, intermediate_size=2048, num_layers=8, num_heads=8, head_dim=64),
    "300M": dict(hidden_size=1024, intermediate_size=4096, num_layers=16, num_heads=16, head_dim=64),
}


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class AnonymousPeak:
    """The most anonymous memory (RssAnon: what the process itself allocated, not the file pages a memory-mapped
    read leaves in RSS, which the kernel reclaims at will) seen while the block runs, sampled every 2 ms."""

    def __enter__(self) -> AnonymousPeak:
        import threading

        self.base = self.peak = _rss_mib("RssAnon")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, _rss_mib("RssAnon"))

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib("RssAnon"))

    @property
    def above_base_mib(self) -> float:
        return self.peak - self.base


def _model(size: str) -> dict:
    import torch

    torch.manual_seed(0)
    spec = SIZES[size]
    h, f, n = spec["hidden_size"], spec["intermediate_size"], spec["num_layers"]
    params = {"embed": torch.randn(32000, h)}
    for i in range(n):
        for name, shape in (("q", (h, h)), ("k", (h, h)), ("v", (h, h)), ("o", (h, h)), ("up", (f, h)),
                            ("gate", (f, h)), ("down", (h, f))):
            params[f"layers.{i}.{name}"] = torch.randn(*shape)
    return params


def measure_resume(size: str, method: str, out: Path) -> dict:
    """Load what ``measure`` wrote back into a model's parameters, in a fresh process (its own peak)."""
    import torch
    from safetensors.torch import load_file

    from selfplay.learner.sharded_safetensors import ShardedTensors

    params = {k: torch.zeros_like(v) for k, v in _model(size).items()}
    rss_base = _rss_mib()
    start = time.perf_counter()
    with torch.no_grad(), AnonymousPeak() as peak:
        if method == "before":
            state = load_file(str(out / "model.safetensors"))
            for name, value in state.items():
                params[name].copy_(value)
            del state
        else:
            tensors = ShardedTensors.in_directory(out)
            for name in tensors.keys():
                params[name].copy_(tensors[name])
    resume_s = time.perf_counter() - start
    assert float(params["embed"].abs().sum()) > 0
    return {"resume_s": resume_s, "resume_peak_mib": peak.above_base_mib,
            "resume_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_base}


def measure(size: str, method: str, out: Path, shard_mb: int) -> dict:
    """One phase set (save, verify) of one method, in this process."""
    import hashlib

    from safetensors.torch import save_file

    from selfplay.learner.checkpoint_files import file_digest
    from selfplay.learner.sharded_safetensors import write_sharded

    params = _model(size)
    gathered = lambda: ((k, v.clone()) for k, v in params.items())  # noqa: E731  (a gather's copy per tensor)
    start = time.perf_counter()
    with AnonymousPeak() as write_peak:
        if method == "before":
            save_file(dict(gathered()), str(out / "model.safetensors"))
            files = [out / "model.safetensors"]
        else:
            files = [out / name for name in write_sharded(gathered(), out, max_shard_bytes=shard_mb << 20)]
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    if method == "before":
        def sha(p):
            d = hashlib.sha256()
            with p.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    d.update(chunk)
            return d.hexdigest()
        digests = {p.name: sha(p) for p in files}
    else:
        digests = {p.name: file_digest(p) for p in files}
    digest_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(2 if method == "before" else 1):  # resume=auto verified twice before
        for p in files:
            assert (sha(p) if method == "before" else file_digest(p)) == digests[p.name]
    verify_s = time.perf_counter() - start
    return {"size": size, "method": method, "bytes": sum(p.stat().st_size for p in files),
            "files": len(files), "write_s": write_s, "digest_s": digest_s, "verify_s": verify_s,
            "write_peak_mib": write_peak.above_base_mib}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50M,300M")
    parser.add_argument("--shard-mb", type=int, default=128)
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "METHOD", "OUT"))
    parser.add_argument("--resume-child", nargs=3, metavar=("SIZE", "METHOD", "OUT"))
    args = parser.parse_args()
    if args.child:
        size, method, out = args.child
        print(json.dumps(measure(size, method, Path(out), args.shard_mb)))
        return
    if args.resume_child:
        size, method, out = args.resume_child
        print(json.dumps(measure_resume(size, method, Path(out))))
        return
    rows = []
    for size in args.sizes.split(","):
        for method in ("before", "after"):
            out = Path(tempfile.mkdtemp(prefix="ckpt-bench-"))
            try:
                done = subprocess.run([sys.executable, __file__, "--shard-mb", str(args.shard_mb), "--child", size,
                                       method, str(out)], capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                done = subprocess.run([sys.executable, __file__, "--resume-child", size, method, str(out)],
                                      capture_output=True, text=True, check=True)
                rows.append(row | json.loads(done.stdout.strip().splitlines()[-1]))
            finally:
                shutil.rmtree(out, ignore_errors=True)
    by = {(r["size"], r["method"]): r for r in rows}
    print(f"{'size':>5} {'GB':>5} | {'save+digest s':>17} | {'verify s':>13} | {'resume s':>15} | "
          f"{'save peak MiB above the model':>30} | resume MiB above the model: allocated, RSS with file pages")
    for size in args.sizes.split(","):
        b, a = by[(size, "before")], by[(size, "after")]
        save_b, save_a = b["write_s"] + b["digest_s"], a["write_s"] + a["digest_s"]
        print(f"{size:>5} {b['bytes'] / 1e9:5.2f} | {save_b:6.2f} -> {save_a:5.2f} {save_b / save_a:4.1f}x | "
              f"{b['verify_s']:5.2f} -> {a['verify_s']:4.2f} {b['verify_s'] / a['verify_s']:4.1f}x | "
              f"{b['resume_s']:4.2f} -> {a['resume_s']:4.2f} {b['resume_s'] / a['resume_s']:4.1f}x | "
              f"{b['write_peak_mib']:7.0f} -> {a['write_peak_mib']:6.0f} "
              f"({b['write_peak_mib'] / max(a['write_peak_mib'], 1):.1f}x less), {a['files']} shards | "
              f"{b['resume_peak_mib']:4.0f} -> {a['resume_peak_mib']:4.0f}, "
              f"{b['resume_rss_mib']:5.0f} -> {a['resume_rss_mib']:5.0f}")


if __name__ == "__main__":
    main()
