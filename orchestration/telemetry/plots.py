"""``selfplay plot RUN_DIR``: the run's curves from ``metrics.jsonl`` as PNGs under ``RUN_DIR/plots/``, one per
panel (win-rate vs the initial policy, loss terms, KL to the reference, throughput, policy lag, exploitability);
a panel without data is not drawn. Training redraws them at each checkpoint. Matplotlib's object API with the Agg
canvas: no pyplot, no global backend, safe beside the controller's threads."""

from __future__ import annotations

import sys
from pathlib import Path

from selfplay.orchestration.telemetry.metrics import read_metrics

PLOTS_DIR = "plots"


def _loss_keys(rows: list[dict]) -> list[str]:
    keys = {k for row in rows for k in row if not k.startswith("time/") and ("loss" in k or k.endswith("nll"))}
    return sorted(keys, key=lambda k: (k != "loss", k))  # the total first, then its terms


# (file stem, title, y label, the metrics keys drawn, a reference line)
PANELS = [
    ("win_rate", "Win-rate vs the initial policy", "P(current beats initial)", lambda rows: ["win_rate_vs_initial"],
     0.5),
    ("loss", "Loss terms", "loss", _loss_keys, None),
    ("kl", "KL to the reference", "kl_to_ref", lambda rows: ["kl_to_ref"], None),
    ("throughput", "Throughput", "samples / s", lambda rows: ["samples_per_second"], None),
    ("policy_lag", "Policy lag", "versions behind", lambda rows: ["policy_lag"], None),
    ("exploitability", "Exploitability", "exploitability", lambda rows: ["exploitability"], 0.0),
]


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key``; a step logged twice keeps its last value."""
    points: dict[int, float] = {}
    for row in rows:
        if isinstance(row.get(key), (int, float)):
            points[row["step"]] = float(row[key])
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def draw_plots(run_dir: str | Path) -> list[Path]:
    """Write one PNG per panel with data into ``RUN_DIR/plots/``; returns their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    out = run_dir / PLOTS_DIR
    written = []
    for stem, title, ylabel, keys_of, reference in PANELS:
        curves = [(key, *series(rows, key)) for key in keys_of(rows)]
        curves = [c for c in curves if c[1]]
        if not curves:
            continue
        figure = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for key, steps, values in curves:
            axes.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
        if reference is not None:
            axes.axhline(reference, color="grey", linestyle=":", linewidth=1)
        axes.set(title=f"{title} ({run_dir.name})", xlabel="step", ylabel=ylabel)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if len(curves) > 1:
            axes.legend(fontsize="small")
        figure.tight_layout()
        out.mkdir(exist_ok=True)
        path = out / f"{stem}.png"
        tmp = path.with_name(f".{stem}.tmp.png")
        figure.savefig(tmp)  # then renamed: a viewer never opens half a PNG
        tmp.replace(path)
        written.append(path)
    return written


def redraw_plots(run_dir: Path) -> None:
    """``draw_plots`` for a training run: a plot that fails is a warning, never a stop."""
    try:
        draw_plots(run_dir)
    except Exception as exc:
        print(f"selfplay: warning: plots not drawn: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
