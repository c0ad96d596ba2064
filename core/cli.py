"""The ``lossopt`` command: ``plugins``, ``check``, ``new-plugin``, ``train``, ``report``,
``ui``, ``server``.

User errors (LossoptError) are printed as one message with a non-zero exit status;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from lossopt.core.errors import LossoptError, print_error

__all__ = ["entry", "main"]


# The kinds `new-plugin` writes ("dataset" is the kind `data`).
NEW_PLUGIN_KINDS = ["loss", "optimizer", "model", "dataset", "scheduler"]


def _plugins(args: argparse.Namespace) -> int:
    from lossopt.core.plugin_view import show_plugin, show_plugins

    console = Console()
    if args.name:
        show_plugin(console, args.name)
    else:
        show_plugins(console, args.kind)
    return 0


def _check(args: argparse.Namespace) -> int:
    from lossopt.core.conformance.view import run_checks

    return run_checks(Console(), args.names, args.all, args.verbose)


def _new_plugin(args: argparse.Namespace) -> int:
    from lossopt.core.scaffold.package import write_package

    written = write_package(args.dir, args.kind, args.name)
    console = Console()
    console.print(f"Wrote {len(written)} files to {args.dir}:")
    for path in written:
        console.print(f"  {path}")
    console.print(
        f"Next: pip install -e {args.dir}, then 'lossopt check {args.name}' and "
        f"'pytest {args.dir}'."
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from lossopt.core.report.comparison import print_report, write_report
    from lossopt.core.tracking import default_uri

    report = write_report(
        args.uri or default_uri(), args.experiment, args.sweep, args.out,
        args.target, args.target_fraction,
    )  # fmt: skip
    if args.rerun_best:
        from lossopt.core.report.rerun import rerun_best

        print_report(report, Console())
        report = rerun_best(
            report, args.uri or default_uri(), args.rerun_best, args.out,
            target=args.target, target_fraction=args.target_fraction,
        )  # fmt: skip
    print_report(report, Console())
    return 0


def _ui(args: argparse.Namespace) -> int:
    import subprocess

    from lossopt.core.tracking import default_uri

    uri = args.uri or default_uri()
    console = Console()
    url = _ui_landing(uri, f"http://127.0.0.1:{args.port}", args.experiment)
    console.print(f"MLflow UI for {uri} (Ctrl+C stops it); open:\n{url}", soft_wrap=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    return subprocess.call([*command, "--host", "127.0.0.1", "--port", str(args.port)])


def _server(args: argparse.Namespace) -> int:
    from lossopt.core.mlflow_ui.server import ServerSettings, run_server

    settings = ServerSettings(
        args.host, args.port, args.backend_store_uri, args.artifacts_destination, args.workers
    )
    return run_server(settings, Console())


def _ui_landing(uri: str, base: str, experiment: str | None) -> str:
    """The experiment's runs, in its latest sweep's view (``core.mlflow_ui.view``)."""
    from pathlib import Path

    from lossopt.core.mlflow_ui.view import ensure_training_view, landing, runs_url
    from lossopt.core.store import open_client

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return runs_url(base, None)  # nothing tracked here yet
    client = open_client(uri)
    experiment_id, view = landing(client, experiment)
    if experiment_id is not None:
        ensure_training_view(client, experiment_id)
    return runs_url(base, experiment_id, view)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossopt",
        description="Compare loss functions and optimizers.",
        epilog="Training: 'lossopt train [hydra overrides]', e.g. "
        "'lossopt train -m loss=cross_entropy,focal optimizer=sgd,adamw'.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = commands.add_parser("plugins", help="list plugins, or show one's parameters")
    plugins.add_argument("action", nargs="?", choices=["show"], help="show one plugin")
    plugins.add_argument("name", nargs="?", help="NAME or KIND/NAME")
    plugins.add_argument("--kind", help="list only this kind (loss, optimizer, …)")
    plugins.set_defaults(run=_plugins)
    check = commands.add_parser(
        "check", help="run the conformance rules on plugins; exit 1 if any rule fails"
    )
    check.add_argument("names", nargs="*", metavar="NAME", help="NAME or KIND/NAME")
    check.add_argument("--all", action="store_true", help="check every registered plugin")
    check.add_argument("-v", "--verbose", action="store_true", help="say why rules do not apply")
    check.set_defaults(run=_check)
    new_plugin = commands.add_parser(
        "new-plugin", help="write a ready plugin package: entry point, spec, tests, README"
    )
    new_plugin.add_argument("dir", help="the folder to create; its name is the distribution's")
    new_plugin.add_argument("--kind", required=True, choices=NEW_PLUGIN_KINDS)
    new_plugin.add_argument("--name", required=True, help="the plugin's name (loss=NAME …)")
    new_plugin.set_defaults(run=_new_plugin)
    commands.add_parser(
        "train", help="run one experiment, or a sweep with -m (Hydra overrides follow)"
    )
    report = commands.add_parser(
        "report", help="compare a sweep's runs: ranked table, lr sensitivity, curves"
    )
    report.add_argument(
        "--experiment", default="lossopt", help="MLflow experiment (default: lossopt)"
    )
    report.add_argument(
        "--sweep", default="latest", help="parent run id of the sweep (default: the latest sweep)"
    )
    report.add_argument("--out", help="output folder (default: reports/<sweep run name>/)")
    report.add_argument("--uri", help="tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    report.add_argument(
        "--target", type=float, help="time-to-target: the validation value to reach (all tasks)"
    )
    report.add_argument(
        "--target-fraction", type=float, default=0.95,
        help="time-to-target by default: this fraction of the best on each task (0.95)",
    )  # fmt: skip
    report.add_argument(
        "--rerun-best", type=int, metavar="N",
        help="DeepOBS protocol: re-run each pair's best lr with seeds 0..N-1 as a second "
        "stage (a child of the sweep's parent run) and report from it",
    )  # fmt: skip
    report.set_defaults(run=_report)
    ui = commands.add_parser("ui", help="open the MLflow UI on this directory's store")
    ui.add_argument("--uri", help="tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--experiment", help="open this experiment (default: the latest sweep's)")
    ui.set_defaults(run=_ui)
    server = commands.add_parser(
        "server", help="run an MLflow tracking server for sweeps on several machines or a team"
    )
    server.add_argument(
        "--host", default="127.0.0.1",
        help="interface to bind (default: 127.0.0.1, this machine only; 0.0.0.0: the network)",
    )  # fmt: skip
    server.add_argument("--port", type=int, default=5000)
    server.add_argument(
        "--backend-store-uri",
        help="where runs are stored: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: sqlite:///<cwd>/mlflow-server/mlflow.db)",
    )
    server.add_argument(
        "--artifacts-destination",
        help="where the server keeps uploaded artifacts: a folder or s3://… "
        "(default: <cwd>/mlflow-server/artifacts)",
    )
    server.add_argument("--workers", type=int, help="server worker processes (MLflow's default)")
    server.set_defaults(run=_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["train"]:  # everything after it belongs to Hydra
            from lossopt.core._startup_heap import starting_up

            with starting_up():
                from lossopt.core.app import train

                return train(argv[1:])
        args = _parser().parse_args(argv)
        if args.command == "plugins" and args.action == "show" and not args.name:
            raise LossoptError("'lossopt plugins show' needs a NAME or KIND/NAME.")
        return args.run(args)
    except LossoptError as exc:
        print_error(exc)
        return 2


def entry() -> None:
    """The ``lossopt`` program: ``main()``, then a quick exit.

    Once the command has finished and every exit handler has run (threads joined, logs
    and MLflow's queues flushed, SQLite checkpointed), the process ends without tearing
    down its modules one by one: with torch (CUDA build), Lightning and MLflow loaded,
    that teardown alone takes 2–4 s of every command on a 2-core machine. An uncaught
    error keeps the normal exit and its traceback.
    """
    # Registered before anything else is imported: exit handlers run last-in first-out,
    # so this one runs after all the others.
    atexit.register(_leave_quickly)
    try:
        code = main()
    except SystemExit as stop:  # a failed sweep's status, Hydra's --help…
        if not isinstance(stop.code, int | None):
            raise  # a message for the normal exit to print
        code = stop.code or 0
    _exit_code.append(code)
    sys.exit(code)


_exit_code: list[int] = []


def _leave_quickly() -> None:
    if _exit_code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_code[0])


if __name__ == "__main__":
    entry()
