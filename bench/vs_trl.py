"""selfplay against TRL at matched settings, side by side in one run.

    .venv/bin/python bench/vs_trl.py [--sizes tiny,mid] [--repeats 2] [--algorithms dpo,nash_md]
                                     [--placements separate,colocated] [key=value ...]

Pairs: selfplay DPO against TRL's OnlineDPO (current TRL, ``trl_envs.ONLINE_DPO_VERSION``), selfplay Nash-MD against
TRL's NashMD (the last TRL release that has it, ``trl_envs.NASH_MD_VERSION``). Each TRL version gets a venv of its
own under ``bench/.envs`` (built on first use, a minute or two each). Sizes:

- ``tiny``: the embedded default model (Llama-style, hidden 64, 2 layers), 6-token responses;
- ``mid``: a ~66M Llama-style model (hidden 512, 8 layers, 32k vocabulary), 32-token responses.

Both systems get the same model directory, the same sorting prompts, the same judge (P(a > b) = sigmoid(20 (score_a -
score_b))), 16 prompts x 2 completions per step, temperature 1, fp32, EOS ignored (every response is max tokens long)
and learning rate 1e-4. Every run is a fresh process (``bench/selfplay_side.py``, ``bench/trl_side.py``); the two
systems alternate which goes first from one repeat to the next. Printed per pair: completions/s of both (median
over repeats), the ratio, the share of the machine's CPU time each kept busy, the start-up time (process start to
the first step) and, for selfplay, the mean seconds per step of each phase. selfplay runs once per placement:
``separate`` (rollout workers of their own, the default) and ``colocated`` (``rollout.colocate=true``: each learner
rank hosts its engine, the weights never leave the process), against the same TRL runs. ``key=value`` arguments go to
selfplay's config (e.g. ``rollout.engine=torch``). The TRL process runs with the malloc that selfplay preloads into
its CPU actors (``ray.host_allocator``: tcmalloc where installed), so that neither side wins by its allocator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trl_envs import NASH_MD_VERSION, ONLINE_DPO_VERSION, trl_python
from selfplay.orchestration.cluster.host_allocator import host_allocator_env, resolve_host_allocator

BENCH = Path(__file__).resolve().parent
TRL_TRAINER = {"dpo": ("online_dpo", ONLINE_DPO_VERSION), "nash_md": ("nash_md", NASH_MD_VERSION)}
# steps, warm-up steps, response tokens: enough timed steps for a stable rate at each size
SIZES = {"tiny": (60, 10, 6), "mid": (8, 2, 32)}


def build_model(size: str, root: Path) -> Path:
    from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

    if size == "tiny":
        return build_tiny_model_dir(root / "tiny")
    return build_tiny_model_dir(root / "mid", TinyModelSpec(
        hidden_size=512, intermediate_size=2048, num_layers=8, num_heads=8, head_dim=64, max_positions=128),
        vocab_size=32000)


def spawn(command: list[str], out: Path, env: dict[str, str]) -> dict:
    """Run one side in a fresh process with ``env`` added to this one's; its JSON result."""
    done = subprocess.run([*command, "--spawned-at", repr(time.time()), "--json", str(out)], cwd=BENCH.parent,
                          capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    print("   ", done.stdout.strip().splitlines()[-1], flush=True)
    return json.loads(out.read_text())


PLACEMENTS = {"separate": [], "colocated": ["rollout.colocate=true"]}


def side_commands(algorithm: str, model: Path, size: str, overrides: list[str], placements: list[str]
                  ) -> dict[str, list[str]]:
    """The command of each side: ``trl``, and selfplay in each of ``placements`` (``selfplay/<placement>``)."""
    steps, warmup, tokens = SIZES[size]
    common = ["--model", str(model), "--steps", str(steps), "--warmup", str(warmup), "--prompts-per-step", "16",
              "--max-new-tokens", str(tokens)]
    trainer, version = TRL_TRAINER[algorithm]
    return {**{f"selfplay/{placement}": [sys.executable, str(BENCH / "selfplay_side.py"), "--algorithm", algorithm,
                                         *common, *PLACEMENTS[placement], *overrides] for placement in placements},
            "trl": [str(trl_python(version)), str(BENCH / "trl_side.py"), "--trainer", trainer,
                    "--completions", "2", *common]}


def host_allocator(overrides: list[str]) -> str | None:
    """The library selfplay's CPU actors preload with these overrides (None: the system's malloc)."""
    setting = next((o.split("=", 1)[1] for o in overrides if o.startswith("ray.host_allocator=")), "auto")
    return resolve_host_allocator(setting)


def report(size: str, algorithm: str, runs: dict[str, list[dict]]) -> None:
    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    trl = median("trl", "completions_per_s")
    trainer, version = TRL_TRAINER[algorithm]
    trl_step = statistics.median(statistics.mean(r["step_seconds"][-3:]) for r in runs["trl"])
    for side in (s for s in runs if s != "trl"):
        sp, placement, engine = median(side, "completions_per_s"), side.split("/")[1], runs[side][0]["engine"]
        print(f"{size:5s} {algorithm:8s} selfplay {placement:9s} ({engine} engine) {sp:8.2f} completions/s | TRL "
              f"{trainer} {version} {trl:8.2f} | ratio {sp / trl:.2f} | busy {median(side, 'busy_share'):.2f} vs "
              f"{median('trl', 'busy_share'):.2f} | start-up {median(side, 'startup_s'):.1f} s vs "
              f"{median('trl', 'startup_s'):.1f} s", flush=True)
        phases = {k: statistics.median(r["phases"][k] for r in runs[side]) for k in runs[side][0]["phases"]}
        print(f"      per step: " + ", ".join(f"{k.split('/')[1]} {v:.3f} s" for k, v in phases.items())
              + f"; TRL step {trl_step:.3f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="tiny,mid")
    parser.add_argument("--algorithms", default="dpo,nash_md")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--placements", default="separate,colocated", help="selfplay's: separate, colocated")
    parser.add_argument("overrides", nargs="*", help="key=value for selfplay's config")
    args = parser.parse_args()
    sizes, algorithms, placements = args.sizes.split(","), args.algorithms.split(","), args.placements.split(",")
    for name in sizes + algorithms + placements:
        if name not in SIZES and name not in TRL_TRAINER and name not in PLACEMENTS:
            parser.error(f"unknown size, algorithm or placement {name!r} (sizes: {', '.join(SIZES)}; algorithms: "
                         f"{', '.join(TRL_TRAINER)}; placements: {', '.join(PLACEMENTS)})")
    for algorithm in algorithms:
        trl_python(TRL_TRAINER[algorithm][1])  # build the venvs before anything is timed
    allocator = host_allocator(args.overrides)
    print(f"malloc of selfplay's CPU actors and of TRL's process: {allocator or 'the system default'}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="vs-trl-") as tmp:
        root = Path(tmp)
        for size in sizes:
            model = build_model(size, root)
            for algorithm in algorithms:
                commands = side_commands(algorithm, model, size, args.overrides, placements)
                runs: dict[str, list[dict]] = {side: [] for side in commands}
                for repeat in range(args.repeats):
                    order = list(commands) if repeat % 2 == 0 else list(reversed(commands))
                    for side in order:
                        print(f"{size} {algorithm} repeat {repeat + 1}/{args.repeats}: {side}", flush=True)
                        env = host_allocator_env(allocator) if side == "trl" else {}
                        out = root / f"{size}-{algorithm}-{side.replace('/', '-')}-{repeat}.json"
                        runs[side].append(spawn(commands[side], out, env))
                results.append((size, algorithm, runs))
    print(f"\nselfplay vs TRL (2 completions per prompt, 16 prompts per step, sync mode, medians; malloc "
          f"{allocator or 'system'}):")
    for size, algorithm, runs in results:
        report(size, algorithm, runs)


if __name__ == "__main__":
    main()
