"""``selfplay status RUN_DIR``: where a run stands, read from its directory alone (no Ray): alive or not, finished,
stopped or died (with the last error), step and ETA, the latest metrics, the win-rate curve, the checkpoints.

Alive means a heartbeat younger than ``stale_after`` seconds, not marked ended, whose pid still exists when it
was written on this host. A run is ``finished`` once its summary is written, ``stopped`` after a signal and its
checkpoint, ``died`` with an error (``error.json``) or without a trace (killed: the heartbeat just stops),
``interrupted`` when it shut down mid-run with no error recorded (a second Ctrl-C)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from selfplay.orchestration.run import checkpoints as ckpt
from selfplay.orchestration.health.heartbeat import ERROR_FILE, HEARTBEAT_FILE
from selfplay.orchestration.telemetry.metrics import read_metrics
from selfplay.errors import InputError

STALE_AFTER_SECONDS = 30.0
# The latest value of each, when the run logs it; (key, label, format).
LATEST = [("win_rate_vs_initial", "win-rate vs initial", ".3f"), ("loss", "loss", ".4f"),
          ("samples_per_second", "samples/s", ".1f"), ("policy_version", "policy version", "d"),
          ("exploitability", "exploitability", ".3f"), ("eval_score", "task score", ".3f"),
          ("kl_to_ref", "KL to ref", ".4f"), ("policy_lag", "policy lag", "d")]


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _total_steps(run_dir: Path) -> int | None:
    from selfplay.orchestration.config.loading import read_yaml
    try:
        return int(read_yaml(run_dir / "config.yaml")["run"]["total_steps"])
    except Exception:
        return None


def _steps_per_second(rows: list[dict], window: int = 20) -> float | None:
    """From the wall clock of the last ``window`` steps (``wall_seconds``), else from their phase times."""
    timed = {r["step"]: r["wall_seconds"] for r in rows if isinstance(r.get("wall_seconds"), (int, float))}
    steps = sorted(timed)[-window:]
    if len(steps) >= 2 and timed[steps[-1]] > timed[steps[0]]:
        return (steps[-1] - steps[0]) / (timed[steps[-1]] - timed[steps[0]])
    phases = [sum(r.get(f"time/{phase}", 0.0) for phase in ("experience", "train", "push"))
              for r in rows[-window:] if "time/train" in r]
    return len(phases) / sum(phases) if phases and sum(phases) > 0 else None


def read_status(run_dir: str | Path, now: float | None = None, stale_after: float = STALE_AFTER_SECONDS) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} does not exist (or is not a directory)")
    if not (run_dir / "config.yaml").is_file():
        raise InputError(f"{run_dir} is not a selfplay run directory (no config.yaml)")
    now = time.time() if now is None else now
    beat = _read_json(run_dir / HEARTBEAT_FILE)
    error = _read_json(run_dir / ERROR_FILE)
    summary = _read_json(run_dir / "summary.json")
    rows = read_metrics(run_dir)
    if beat and error and error.get("time", 0) < beat.get("started", 0) - 1:
        error = None  # an earlier attempt's, before this run was resumed

    same_host = bool(beat) and beat.get("host") == socket.gethostname()
    process = pid_alive(int(beat["pid"])) if same_host and beat.get("pid") else None
    age = now - beat["time"] if beat and isinstance(beat.get("time"), (int, float)) else None
    alive = bool(beat) and age is not None and age < stale_after and "ended" not in beat and process is not False
    if alive:
        state = "running"
    elif beat is None:  # a run from before heartbeats, or one that never started its controller
        state = "finished" if summary else "died" if error else "unknown"
    elif beat.get("phase") == "finished":
        state = "finished"
    elif error:
        state = "died"
    elif beat.get("phase") == "stopped":
        state = "stopped"
    elif "ended" in beat:
        state = "interrupted"  # shut down mid-run with no error recorded: a second Ctrl-C
    else:
        state = "died"  # killed without a trace (SIGKILL, out of memory, a lost machine)

    step = beat.get("step") if beat else None
    if step is None:
        step = max((r["step"] for r in rows), default=(summary or {}).get("steps", 0))
    total = (beat or {}).get("total_steps") or _total_steps(run_dir)
    rate = _steps_per_second(rows)
    latest: dict[str, float] = {}
    for row in rows:
        latest.update({k: row[k] for k, _, _ in LATEST if k in row})
    pointer = ckpt.latest_pointer(run_dir)
    checkpoints, incomplete = [], []
    for ref in ckpt.list_checkpoints(run_dir):
        try:
            meta = ckpt.read_manifest(ref.path).get("meta", {})
        except ckpt.CheckpointError:
            incomplete.append(ref.step)
            continue
        checkpoints.append({"step": ref.step, "path": str(ref.path), "latest": ref.step == pointer,
                            "policy_version": meta.get("policy_version")})
    return {
        "run_dir": str(run_dir), "state": state, "alive": alive, "phase": (beat or {}).get("phase"),
        "phase_seconds": now - beat["phase_since"] if alive and beat.get("phase_since") else None,
        "last_seen": beat.get("time") if beat else None, "heartbeat_age_seconds": age,
        "pid": (beat or {}).get("pid"), "host": (beat or {}).get("host"), "pid_alive": process,
        "started": (beat or {}).get("started"), "ended": (beat or {}).get("ended"),
        "step": step, "total_steps": total, "steps_per_second": rate,
        "eta_seconds": (total - step) / rate if alive and rate and total else None,
        "latest": latest, "win_rate_curve": [[r["step"], r["win_rate_vs_initial"]] for r in rows
                                             if "win_rate_vs_initial" in r],
        "checkpoints": checkpoints, "incomplete_checkpoints": incomplete, "error": error,
        "summary": None if summary is None else {k: summary.get(k) for k in (
            "steps", "samples", "win_rate_vs_initial", "wall_seconds", "final_exploitability")},
    }


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


def format_status(s: dict) -> str:
    """The status as a few lines of text."""
    where = f"pid {s['pid']} on {s['host']}" if s["pid"] else "no heartbeat"
    if s["alive"]:
        head = (f"running, alive ({where}; heartbeat {_duration(s['heartbeat_age_seconds'])} ago; "
                f"phase {s['phase']} for {_duration(s['phase_seconds'])})")
    elif s["state"] == "unknown":
        head = "not started, or from before heartbeats (no heartbeat.json, no summary.json)"
    else:
        gone = f", ended {_when(s['ended'])}" if s["ended"] else "" if s["pid_alive"] is None else \
            ", its process is gone" if not s["pid_alive"] else ", its process still exists: hung?"
        head = f"finished at {_when(s['ended'])} ({where})" if s["state"] == "finished" and s["ended"] else \
            f"{s['state']}, not alive since {_when(s['last_seen'])} ({where}{gone})" if s["last_seen"] else \
            f"{s['state']} (no heartbeat)"
    lines = [f"{s['run_dir']}: {head}"]
    total = s["total_steps"]
    progress = f"step {s['step']}/{total if total is not None else '?'}"
    if total:
        progress += f" ({100 * s['step'] / total:.0f}%)"
    if s["steps_per_second"]:
        progress += f", {s['steps_per_second']:.3g} steps/s"
    if s["eta_seconds"] is not None:
        progress += f", ETA {_duration(s['eta_seconds'])}"
    lines.append(progress)
    latest = [f"{label} {s['latest'][k]:{fmt}}" if fmt != "d" else f"{label} {int(s['latest'][k])}"
              for k, label, fmt in LATEST if k in s["latest"]]
    if latest:
        lines.append("latest: " + " | ".join(latest))
    if s["win_rate_curve"]:
        lines.append("win-rate vs initial: " + ", ".join(f"{step}: {w:.3f}" for step, w in s["win_rate_curve"]))
    if s["checkpoints"]:
        lines.append("checkpoints: " + ", ".join(f"step-{c['step']}" + (" (latest)" if c["latest"] else "")
                                                 for c in s["checkpoints"]))
    else:
        lines.append("checkpoints: none complete")
    if s["incomplete_checkpoints"]:
        lines.append("incomplete checkpoints (never loaded): " +
                     ", ".join(f"step-{n}" for n in s["incomplete_checkpoints"]))
    if s["summary"] and s["state"] == "finished":
        lines.append(f"finished in {_duration(s['summary'].get('wall_seconds'))}: see summary.json")
    error = s["error"]
    if error:
        lines.append(f"last error ({_when(error.get('time'))}): {error.get('type')}: {error.get('message')}")
        lines += ["  " + line for line in (error.get("traceback_tail") or [])[-6:]]
    return "\n".join(lines)


def show_status(run_dir: str | Path, as_json: bool = False, watch: float | None = None,
                stale_after: float = STALE_AFTER_SECONDS) -> None:
    """Print the status once (``--json``: one JSON object), or every ``watch`` seconds until Ctrl-C."""
    try:
        while True:
            status = read_status(run_dir, stale_after=stale_after)
            text = json.dumps(status) if as_json else format_status(status)
            if watch and not as_json and sys.stdout.isatty():
                text = "\033[H\033[2J" + text + f"\n\n(every {watch:g}s; Ctrl-C to quit)"
            print(text, flush=True)
            if not watch:
                return
            time.sleep(watch)
    except KeyboardInterrupt:
        if not watch:
            raise
