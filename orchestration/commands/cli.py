"""``selfplay`` command line: ``selfplay train [CONFIG.yaml] [key=value ...] [--dry-run] [--debug]``, ``resume``,
``export``, ``status``, ``config``, ``plot`` and ``serve-preference``."""

from __future__ import annotations

import argparse
import sys

from selfplay.errors import SelfplayError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfplay", description="Online self-play preference training.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a policy (the embedded tiny default with no arguments)")
    train.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                       help="an optional YAML config file, then dotted key=value overrides")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    train.add_argument("--address", default=None, help="Ray cluster to join (same as ray.address; RAY_ADDRESS "
                                                        "also joins)")
    train.add_argument("--debug", action="store_true", help="show full tracebacks")
    resume = sub.add_parser("resume", help="continue a run from its latest complete checkpoint")
    resume.add_argument("run_dir", help="the run directory, e.g. runs/tiny-sppo")
    resume.add_argument("overrides", nargs="*", metavar="key=value",
                        help="keys that do not change what is learnt, e.g. run.total_steps=400")
    resume.add_argument("--address", default=None, help="Ray cluster to join (same as ray.address)")
    resume.add_argument("--debug", action="store_true", help="show full tracebacks")
    export = sub.add_parser("export", help="write a checkpoint's policy as a Hugging Face model directory")
    export.add_argument("run_dir", help="the run directory")
    export.add_argument("out_dir", help="where to write the model directory (must be new or empty)")
    export.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest complete)")
    export.add_argument("--debug", action="store_true", help="show full tracebacks")
    status = sub.add_parser("status", help="where a run stands, from its directory: alive, step and ETA, latest "
                                           "metrics, win-rate curve, checkpoints, last error")
    status.add_argument("run_dir", help="the run directory, e.g. runs/tiny-sppo")
    status.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 5) until Ctrl-C")
    status.add_argument("--json", action="store_true", help="print one JSON object (with --watch: one a refresh)")
    status.add_argument("--stale-after", type=float, default=30.0, metavar="SECONDS",
                        help="a heartbeat older than this means not alive (default 30)")
    status.add_argument("--debug", action="store_true", help="show full tracebacks")
    config = sub.add_parser("config", help="every config key with its type, bounds, default and help; with a config "
                                           "file or overrides, the value each key resolves to")
    config.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                        help="an optional YAML config file, then dotted key=value overrides, to resolve")
    config.add_argument("--section", default=None, help="one top-level section only, e.g. rollout")
    config.add_argument("--markdown", action="store_true", help="the reference as a Markdown page "
                                                                "(docs/config-reference.md)")
    config.add_argument("--debug", action="store_true", help="show full tracebacks")
    plot = sub.add_parser("plot", help="draw the run's curves as PNGs into RUN_DIR/plots/")
    plot.add_argument("run_dir", help="the run directory")
    plot.add_argument("--debug", action="store_true", help="show full tracebacks")
    serve = sub.add_parser("serve-preference", help="serve the config's preference model over HTTP for runs with "
                                                    "preference.kind=remote")
    serve.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                       help="an optional YAML config file, then dotted key=value overrides")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                           "only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser


def split_items(items: list[str]) -> tuple[str | None, list[str]]:
    path, overrides = None, []
    for i, item in enumerate(items):
        if "=" in item:
            overrides.append(item)
        elif i == 0 and path is None:
            path = item
        else:
            raise SelfplayError(f"unexpected argument '{item}': give the config file first, then key=value")
    return path, overrides


def _run(args) -> int:
    if args.command == "resume":
        from selfplay.orchestration.commands.launch import resume
        for item in args.overrides:
            if "=" not in item:
                raise SelfplayError(f"unexpected argument '{item}': resume takes key=value overrides")
        address = [f"ray.address={args.address}"] if args.address else []
        resume(args.run_dir, [*args.overrides, *address])
        return 0
    if args.command == "status":
        from selfplay.orchestration.commands.status import show_status
        if args.watch is not None and args.watch <= 0:
            raise SelfplayError("--watch takes a positive number of seconds")
        show_status(args.run_dir, args.json, args.watch, args.stale_after)
        return 0
    if args.command == "plot":
        from selfplay.orchestration.telemetry.plots import draw_plots
        from selfplay.orchestration.commands.status import read_status
        read_status(args.run_dir)  # a clear error for a directory that is not a run directory
        paths = draw_plots(args.run_dir)
        if not paths:
            raise SelfplayError(f"{args.run_dir} has no metrics to plot yet (metrics.jsonl is empty)")
        print("\n".join(str(p) for p in paths))
        return 0
    if args.command == "config":
        from selfplay.orchestration.config.reference import as_markdown, as_text, key_docs
        from selfplay.orchestration.config.loading import load_config
        docs = key_docs(args.section)
        path, overrides = split_items(args.items)
        resolved = load_config(path, overrides) if path or overrides else None
        print(as_markdown(docs) if args.markdown else as_text(docs, resolved), end="")
        return 0
    if args.command == "export":
        from selfplay.orchestration.commands.launch import export
        out = export(args.run_dir, args.out_dir, args.step)
        print(f"exported {out}")
        return 0
    from selfplay.orchestration.config.loading import load_config, to_yaml

    path, overrides = split_items(args.items)
    if getattr(args, "address", None):
        overrides.append(f"ray.address={args.address}")
    config = load_config(path, overrides)
    if args.command == "serve-preference":
        from selfplay.orchestration.commands.serve_preference import serve_preference
        serve_preference(config, args.host, args.port)
        return 0
    if args.dry_run:
        preset = getattr(config, "preset_keys", [])
        if preset:
            print("# presets (the embedded model's, the mixture algorithms' engine), under your settings: "
                  + ", ".join(preset))
        print(to_yaml(config), end="")
        return 0
    from selfplay.orchestration.commands.launch import train
    train(config)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ray_was_up = _ray_up()
    try:
        return _run(args)
    except SelfplayError as exc:
        if args.debug:
            raise
        return _fail(f"selfplay: error: {user_error(exc)}", 2, ray_was_up)
    except KeyboardInterrupt:
        return _fail("selfplay: interrupted", 130, ray_was_up)
    except Exception as exc:  # a bug or an engine failure: one line unless --debug
        if args.debug:
            raise
        return _fail(f"selfplay: error: {type(exc).__name__}: {_first_line(exc)} (run with --debug for the "
                     "traceback)", 1, ray_was_up)


def _fail(line: str, code: int, ray_was_up: bool) -> int:
    """Print the one error line last: a cluster this command started is shut down first, so that no actor log
    Ray still holds is printed after it."""
    if not ray_was_up and _ray_up():
        import ray

        ray.shutdown()
    print(line, file=sys.stderr)
    return code


def _ray_up() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def user_error(exc: SelfplayError) -> SelfplayError:
    """The error itself, or the one an actor raised: Ray re-raises it as a RayTaskError subclass whose text is
    the actor's traceback, with the original as ``cause``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, SelfplayError) else exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


if __name__ == "__main__":
    sys.exit(main())
