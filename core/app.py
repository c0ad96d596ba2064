"""``lossopt train``: the Hydra application, and composing its config elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

import lossopt.conf
from lossopt.core.errors import LossoptError

CONFIG_DIR = str(Path(lossopt.conf.__file__).parent)
CONFIG_NAME = "train"
VERSION_BASE = "1.3"

console = Console()


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``lossopt train OVERRIDES`` would run, composed without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lossopt.core.configs import store_configs

    store_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=VERSION_BASE):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides))


def check_plugin_choices(args: Sequence[str]) -> None:
    """Unknown plugin names in ``loss=…`` / ``-m loss=a,b`` fail with close matches,
    before Hydra answers with a bare list of options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from lossopt.core.configs import PLUGIN_GROUPS
    from lossopt.core.registry import registry

    candidates = [a for a in args if "=" in a and a.split("=", 1)[0] in PLUGIN_GROUPS]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except OverrideParseException as exc:
        raise LossoptError(str(exc)) from None
    for override in overrides:
        names = override.sweep_iterator() if override.is_sweep_override() else [override.value()]
        for name in names:
            registry(override.key_or_group).plugin(str(name))  # raises when unknown


def _print_config(cfg: DictConfig) -> None:
    shown = {k: cfg[k] for k in ("data", "model", "loss", "optimizer", "scheduler")}
    text = OmegaConf.to_yaml(OmegaConf.create({**shown, "seed": cfg.seed}), resolve=True)
    console.print(Panel(Syntax(text, "yaml", background_color="default"), title="config"))


def _print_summary(result) -> None:
    table = Table(title="results", show_header=False)
    for key, value in sorted(result.metrics.items()):
        table.add_row(key, f"{value:.4f}")
    table.add_row(f"best {result.monitor}", f"{result.objective:.4f}")
    console.print(table)
    if result.run_id:
        console.print(f"MLflow run [bold]{result.run_id}[/] in {result.tracking_uri}")
        console.print(
            "Open the MLflow UI: [bold]lossopt ui[/]  "
            f"(or: mlflow ui --backend-store-uri {result.tracking_uri})"
        )
    if result.best_checkpoint:
        console.print(f"Best checkpoint: {result.best_checkpoint}")


@hydra.main(config_path=CONFIG_DIR, config_name=CONFIG_NAME, version_base=VERSION_BASE)
def _hydra_main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from lossopt.core.train import run

    _print_config(cfg)
    try:
        result = run(cfg, HydraConfig.get().runtime.output_dir)
    except LossoptError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(2) from None
    _print_summary(result)
    return result.objective


def train(args: Sequence[str]) -> int:
    """Run ``lossopt train ARGS`` (Hydra overrides and flags)."""
    from lossopt.core.configs import store_configs

    store_configs()
    check_plugin_choices(args)
    sys.argv = ["lossopt train", *args]
    _hydra_main()
    return 0
