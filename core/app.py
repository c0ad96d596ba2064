"""``lossopt train``: the Hydra application, and composing its config elsewhere.

It stands above the sweep part: Hydra calls one task function for a run alone and for
every job of a sweep, and a sweep's job goes to ``core.sweep.job``.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from lossopt.core._quiet import calm, take_verbose_flag, verbose
from lossopt.core.composition import (
    CONFIG_DIR,
    CONFIG_NAME,
    VERSION_BASE,
    check_plugin_choices,
    register_hydra_plugins,
)
from lossopt.core.errors import LossoptError, print_error
from lossopt.core.tracking import is_rank_zero

console = Console()


def _print_config(cfg: DictConfig) -> None:
    if not is_rank_zero():  # DDP's other processes run the same command
        return
    shown = {k: cfg[k] for k in ("data", "model", "loss", "optimizer", "scheduler")}
    text = OmegaConf.to_yaml(OmegaConf.create({**shown, "seed": cfg.seed}), resolve=True)
    console.print(Panel(Syntax(text, "yaml", background_color="default"), title="config"))


def _hydra_main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    calm(sweep=hydra_cfg.mode == RunMode.MULTIRUN)  # again in a joblib / submitit worker
    if hydra_cfg.mode == RunMode.MULTIRUN:
        from lossopt.core.job_context import job_context
        from lossopt.core.sweep.job import sweep_job

        if verbose():
            _print_config(cfg)
        return sweep_job(cfg, hydra_cfg, *job_context())
    from lossopt.core.train import end_process_group, print_result, run, validate

    try:
        # A mistake in the command line is one message, not a FAILED run in the store.
        validate(cfg)
        _print_config(cfg)
        result = run(cfg, hydra_cfg.runtime.output_dir)
    except LossoptError as exc:
        print_error(exc)
        raise SystemExit(2) from None
    finally:
        end_process_group()
    print_result(result)
    return result.objective


def train(args: Sequence[str]) -> int:
    """Run ``lossopt train ARGS`` (Hydra overrides and flags)."""
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser
    from hydra.core.utils import setup_globals

    from lossopt.core.configs import store_configs

    args = take_verbose_flag(args)
    calm(sweep=bool({"-m", "--multirun"} & set(args)))
    store_configs()
    register_hydra_plugins()
    check_plugin_choices(args)
    # What @hydra.main does, with our arguments instead of sys.argv: sys.argv stays the
    # real command line, which Lightning re-runs to start DDP worker processes.
    version.setbase(VERSION_BASE)
    setup_globals()
    parser = get_args_parser()
    _run_hydra(
        args=parser.parse_args(list(args)),
        args_parser=parser,
        task_function=_hydra_main,
        config_path=CONFIG_DIR,
        config_name=CONFIG_NAME,
    )
    return 0
