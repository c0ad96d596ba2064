"""``lossopt train``: the Hydra application, and composing its config elsewhere."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

import lossopt.conf
from lossopt.core._quiet import calm, take_verbose_flag, verbose
from lossopt.core.errors import LossoptError, print_error
from lossopt.core.tracking import is_rank_zero
from lossopt.core.tracking import run_name as run_name_of

CONFIG_DIR = str(Path(lossopt.conf.__file__).parent)
CONFIG_NAME = "train"
VERSION_BASE = "1.3"

console = Console()


def register_launcher() -> None:
    """Make lossopt's Hydra plugins (vectorized launcher, Optuna and grids sweepers)
    known to Hydra.

    Hydra 1.3 finds launchers by walking the ``hydra_plugins`` namespace package, which
    an editable install hides from it (setuptools' import hook cannot be walked; Hydra
    issue 2359, solved by entry points in Hydra 1.4). Importing the module stores its
    config; the class goes into Hydra's plugin table as the scan would have put it.
    """
    from hydra.core.plugins import Plugins

    # The scan first: it re-executes the modules it finds (Hydra's own basic sweeper
    # among them), so a class imported before it would subclass a BasicSweeper that
    # the module no longer holds (super() then fails in its methods).
    plugins = Plugins.instance()
    import hydra_plugins.lossopt_launcher as launcher
    import hydra_plugins.lossopt_optuna as optuna
    import hydra_plugins.lossopt_sweeper as grids

    for plugin in (launcher.VectorizedLauncher, optuna.OptunaSweeper, grids.GridsSweeper):
        plugins.register(plugin)  # replaces a copy the scan may have loaded


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``lossopt train OVERRIDES`` would run, composed without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lossopt.core.configs import store_configs

    store_configs()
    register_launcher()
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
    if not is_rank_zero():  # DDP's other processes run the same command
        return
    shown = {k: cfg[k] for k in ("data", "model", "loss", "optimizer", "scheduler")}
    text = OmegaConf.to_yaml(OmegaConf.create({**shown, "seed": cfg.seed}), resolve=True)
    console.print(Panel(Syntax(text, "yaml", background_color="default"), title="config"))


def _print_summary(result) -> None:
    if not is_rank_zero():
        return
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


def _hydra_main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lossopt.core.sweep.callback import job_context

    hydra_cfg = HydraConfig.get()
    calm(sweep=hydra_cfg.mode == RunMode.MULTIRUN)  # again in a joblib / submitit worker
    if hydra_cfg.mode == RunMode.MULTIRUN:
        if verbose():
            _print_config(cfg)
        return _sweep_job(cfg, hydra_cfg, *job_context())
    from lossopt.core.train import run, validate

    try:
        # A mistake in the command line is one message, not a FAILED run in the store.
        validate(cfg)
        _print_config(cfg)
        result = run(cfg, hydra_cfg.runtime.output_dir)
    except LossoptError as exc:
        print_error(exc)
        raise SystemExit(2) from None
    finally:
        _end_process_group()
    _print_summary(result)
    return result.objective


def _end_process_group() -> None:
    """Close the DDP process group a run opened, while the interpreter still runs: left
    to the interpreter's exit, its communication threads are sometimes torn down alive
    and the process aborts ("terminate called without an active exception"), and
    Lightning then kills the other ranks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def _as_single_run(hydra_cfg) -> Iterator[None]:
    """While a sweep's job runs, the command line reads as that job alone, in its own
    folder: Lightning re-runs the command line to start DDP workers, which must run
    exactly this job, not the whole sweep."""
    argv, environ = sys.argv, dict(os.environ)
    sys.argv = [argv[0], "train", *hydra_cfg.overrides.task]
    OmegaConf.set_readonly(hydra_cfg, False)
    run_dir, hydra_cfg.run.dir = hydra_cfg.run.dir, hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        # Clean teardown, so the next job starts as the first did: no process group,
        # none of the variables (MASTER_PORT, WORLD_SIZE…) a DDP launch set.
        _end_process_group()
        os.environ.clear()
        os.environ.update(environ)
        sys.argv, hydra_cfg.run.dir = argv, run_dir
        OmegaConf.set_readonly(hydra_cfg, True)


def member_task(outcome) -> Callable[[DictConfig], float]:
    """The Hydra task function of a job trained as a member of a stack: it records the
    member's outcome as its job's run, through the same steps as any sweep job."""

    def task(cfg: DictConfig) -> float:
        from hydra.core.hydra_config import HydraConfig

        from lossopt.core.sweep.callback import job_context

        return _sweep_job(cfg, HydraConfig.get(), *job_context(), member=outcome)

    return task


def _sweep_job(
    cfg: DictConfig, hydra_cfg, parent_run_id: str | None, results: Path | None, member=None
) -> float:
    """One job of a sweep: skipped when already FINISHED, a failure recorded and
    reported without stopping the other jobs. Returns the objective (NaN on failure).

    ``member``: the outcome of the job trained in a stack (``core.stacked``), which is
    recorded instead of training the job here (the launcher already left out the
    FINISHED ones).
    """
    from lossopt.core.sweep.callback import finished_job, unfinished_run, write_result
    from lossopt.core.sweep.gpu_slots import pin_worker_gpu
    from lossopt.core.train import monitor_of, record, run

    job = hydra_cfg.job.num
    monitor, mode = monitor_of(cfg)
    row = {
        "job": job,
        "data": cfg.data.name,
        "monitor": monitor,
        "mode": mode,
        "loss": cfg.loss.name,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.get("lr"),
        "seed": cfg.seed,
        "overrides": list(hydra_cfg.overrides.task),
    }
    results = results or Path(hydra_cfg.runtime.output_dir)
    done = None if member is not None or not parent_run_id else finished_job(cfg, parent_run_id)
    if done is not None:
        objective = done.data.metrics.get(f"best_{monitor}", float("nan"))
        console.print(f"[yellow]skip[/] job {job}: already FINISHED as run {done.info.run_id}")
        write_result(
            results,
            job,
            {**row, "status": "skipped", "objective": objective, "run_id": done.info.run_id},
        )
        return objective
    # Before _as_single_run, which restores the environment after each job: the worker
    # keeps its GPU for the jobs it runs next.
    pin_worker_gpu(cfg.trainer, hydra_cfg.launcher._target_, results / "gpu-slots")
    try:
        with _as_single_run(hydra_cfg):
            if member is None:
                resume = unfinished_run(cfg, parent_run_id) if parent_run_id else None
                if resume is not None:
                    console.print(
                        f"[yellow]resume[/] job {job}: run {resume.info.run_id}, left "
                        f"{resume.info.status} by a process that has ended"
                    )
                result = run(cfg, hydra_cfg.runtime.output_dir, parent_run_id, resume)
            else:
                result = record(cfg, hydra_cfg.runtime.output_dir, parent_run_id, member)
    except Exception as exc:  # one failed job must not stop the sweep
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LossoptError) else str(exc)
        print_error(message, f"job {job} failed")
        write_result(results, job, {**row, "status": "failed", "error": message[:500]})
        return float("nan")
    if member is None and verbose():
        _print_summary(result)
    else:  # one line a job; the sweep's summary names the runs
        run = f", run {result.run_id}" if result.run_id and verbose() else ""
        console.print(
            f"job {job} [green]finished[/] {run_name_of(cfg)}: best {result.monitor} "
            f"{result.objective:.4f}{run}"
        )
    write_result(
        results,
        job,
        {**row, "status": "finished", "objective": result.objective, "run_id": result.run_id},
    )
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
    register_launcher()
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
