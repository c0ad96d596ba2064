"""The ``lossopt`` command: ``plugins``, ``train``, ``report``, ``ui``.

User errors (LossoptError) are printed as one message with a non-zero exit status;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from lossopt.core.errors import LossoptError, print_error

__all__ = ["main"]


def _plugins(args: argparse.Namespace) -> int:
    from lossopt.core.plugin_view import show_plugin, show_plugins

    console = Console()
    if args.name:
        show_plugin(console, args.name)
    else:
        show_plugins(console, args.kind)
    return 0


def _report(args: argparse.Namespace) -> int:
    from lossopt.core.report import print_report, write_report
    from lossopt.core.tracking import default_uri

    report = write_report(
        args.uri or default_uri(), args.experiment, args.sweep, args.out,
        args.target, args.target_fraction,
    )  # fmt: skip
    print_report(report, Console())
    return 0


def _ui(args: argparse.Namespace) -> int:
    import subprocess

    from lossopt.core.tracking import default_uri

    uri = args.uri or default_uri()
    console = Console()
    console.print(f"MLflow UI on http://127.0.0.1:{args.port} for {uri} (Ctrl+C stops it)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    return subprocess.call([*command, "--host", "127.0.0.1", "--port", str(args.port)])


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
    report.set_defaults(run=_report)
    ui = commands.add_parser("ui", help="open the MLflow UI on this directory's store")
    ui.add_argument("--uri", help="tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(run=_ui)
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


if __name__ == "__main__":
    sys.exit(main())
