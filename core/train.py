"""One experiment: validate → build → track → fit → test → summarize.

``run(cfg)`` is what ``lossopt train`` calls for each job (once, or once per job of
a sweep); it returns the monitored validation metric so Hydra sweepers can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lossopt.core._kill_points import kill_point
from lossopt.core.configs import build, plugin_values, validate_plugins
from lossopt.core.errors import ConfigError, LossoptError
from lossopt.core.registry import registry
from lossopt.core.specs import LossSpec, ModelSpec

__all__ = [
    "RunResult",
    "end_process_group",
    "monitor_of",
    "print_result",
    "record",
    "run",
    "validate",
]


@dataclass
class RunResult:
    objective: float
    monitor: str
    metrics: dict[str, float]
    run_id: str | None
    tracking_uri: str | None
    best_checkpoint: str | None


def monitor_of(cfg: DictConfig) -> tuple[str, str]:
    """(metric, mode): the configured one, or accuracy / MSE by task."""
    regression = cfg.data.task == "regression"
    metric = cfg.monitor if cfg.monitor != "auto" else ("val/mse" if regression else "val/accuracy")
    mode = cfg.monitor_mode
    if mode == "auto":
        mode = "min" if any(k in metric for k in ("loss", "mse", "mae")) else "max"
    return metric, mode


def validate(cfg: DictConfig) -> None:
    """Every problem of the config at once, before anything heavy runs."""
    problems = validate_plugins(cfg)
    task = cfg.data.task
    loss = registry("loss").plugin(cfg.loss.name)
    if loss.error is None and task not in (spec := loss.load()).tasks:
        assert isinstance(spec, LossSpec)
        problems.append(
            f"loss={cfg.loss.name}: it serves {', '.join(spec.tasks)}, but data="
            f"{cfg.data.name} is a {task} task. Choose a {task} loss "
            f"('lossopt plugins --kind loss' shows each loss's tasks)."
        )
    model = registry("model").plugin(cfg.model.name)
    if model.error is None and len(cfg.data.input_shape) != 3:
        spec = model.load()
        if isinstance(spec, ModelSpec) and spec.image_only:
            problems.append(
                f"model={cfg.model.name}: needs image inputs [C, H, W], but data="
                f"{cfg.data.name} gives {list(cfg.data.input_shape)}. Use model=mlp."
            )
    if cfg.get("checkpoint_every_s", 0) < 0:
        problems.append(
            f"checkpoint_every_s: {cfg.checkpoint_every_s} is negative; give seconds >= 0 "
            "(0 saves a resume point after every epoch)"
        )
    if cfg.monitor_mode not in ("auto", "min", "max"):
        problems.append(f"monitor_mode: {cfg.monitor_mode!r} is not one of auto, min, max")
    if problems:
        raise ConfigError(problems)


def _loss_values(cfg: DictConfig, data: Any) -> dict[str, Any]:
    values = plugin_values(cfg, "loss")
    spec = registry("loss").spec(cfg.loss.name)
    key = spec.class_weights if isinstance(spec, LossSpec) else None
    if key and values.get(key) == "balanced":
        counts = data.class_counts().clamp(min=1)
        # "balanced" as in scikit-learn: n_samples / (n_classes * count per class).
        values[key] = (counts.sum() / (len(counts) * counts)).tolist()
    return values


def _check_matrix_only(cfg: DictConfig, model: Any, loss: Any) -> None:
    spec = registry("optimizer").spec(cfg.optimizer.name)
    if not getattr(spec, "matrix_params_only", False):
        return
    others = [n for m in (model, loss) for n, p in m.named_parameters() if p.ndim != 2]
    if others:
        raise LossoptError(
            f"optimizer={cfg.optimizer.name} accepts only 2-D parameters, but the model "
            f"and loss have others: {', '.join(others[:4])}{' …' if len(others) > 4 else ''}. "
            f"Use a model without them (e.g. model=mlp model.bias=false) or another optimizer."
        )


def _module(cfg: DictConfig, data: Any, model: Any, loss: Any) -> Any:
    from lossopt.core.adapter import contract_for
    from lossopt.core.module import ExperimentModule

    optimizer_values = plugin_values(cfg, "optimizer")
    scheduler_values = plugin_values(cfg, "scheduler")
    weight_decay = optimizer_values.get("weight_decay") if cfg.no_decay_bias_and_norm else None
    loss_spec = registry("loss").spec(cfg.loss.name)
    return ExperimentModule(
        model=model,
        loss=loss,
        contract=contract_for(loss_spec, cfg.loss.name, data.task, cfg.data.name),
        task=data.task,
        num_outputs=data.num_outputs,
        optimizer_spec=registry("optimizer").spec(cfg.optimizer.name),
        make_optimizer=lambda groups: build(
            "optimizer", cfg.optimizer.name, optimizer_values, params=groups
        ),
        make_scheduler=lambda optimizer, steps: build(
            "scheduler",
            cfg.scheduler.name,
            scheduler_values,
            optimizer=optimizer,
            total_steps=steps,
        ),
        scheduler_interval=registry("scheduler").spec(cfg.scheduler.name).interval,
        weight_decay=weight_decay,
    )


LAST_CHECKPOINT = "last.ckpt"  # written every epoch while a job trains, to resume it


def run(
    cfg: DictConfig, output_dir: str | Path, parent_run_id: str | None = None, resume: Any = None
) -> RunResult:
    """Train and test one configuration; see the module docstring.

    ``resume``: this job's MLflow run left unfinished by a dead process (``sweep.
    unfinished_run``): the job continues that run, from the last epoch its checkpoint
    folder holds, so it ends as the uninterrupted job would have.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lossopt.core._quiet import job_progress_bar, one_console_for_lightning
    from lossopt.core._startup_heap import settle
    from lossopt.core.data import lightning_data
    from lossopt.core.recipe import seed_job
    from lossopt.core.tracking import TAG_OUTPUT_DIR, is_rank_zero, source_tags, tracked_run

    one_console_for_lightning()
    checkpoints = Path(output_dir) / "checkpoints"
    last = None
    if resume is not None and (before := resume.data.tags.get(TAG_OUTPUT_DIR)):
        last = Path(before) / "checkpoints" / LAST_CHECKPOINT
        if last.exists():  # same folder: Lightning then restores the best checkpoint's record
            checkpoints, output_dir = last.parent, before
        else:
            last = None
    tags = {**source_tags(cfg), TAG_OUTPUT_DIR: str(Path(output_dir).resolve())}
    resume_id = resume.info.run_id if resume is not None else None
    # 1. Track: the run exists before anything else happens, and always ends with a
    # terminal status, so even a config error in a sweep's job is a FAILED run.
    with tracked_run(cfg, tags, parent_run_id, resume_run_id=resume_id) as tracked:
        kill_point("job-training")
        settle()  # start-up is over (Lightning and MLflow imported): see _startup_heap
        # 2. Validate everything before anything heavy runs.
        validate(cfg)
        seed_job(cfg.seed)

        # 3. Build the plugins, through the registry only.
        data = build("data", cfg.data.name, plugin_values(cfg, "data"))
        model = build("model", cfg.model.name, plugin_values(cfg, "model"))
        loss = build("loss", cfg.loss.name, _loss_values(cfg, data))
        _check_matrix_only(cfg, model, loss)
        module = _module(cfg, data, model, loss)
        monitor, mode = monitor_of(cfg)
        checkpoint = ModelCheckpoint(dirpath=checkpoints, monitor=monitor, mode=mode, save_top_k=1)
        resume_point = _resume_point(
            checkpoints / LAST_CHECKPOINT, cfg.checkpoint_every_s, tracked.enabled
        )
        tracked.log_input(data.describe())
        trainer = L.Trainer(
            **cfg.trainer,
            logger=tracked.logger(),
            # Lightning runs checkpoint callbacks last, in this order: the resume point
            # is saved after the best checkpoint (both at a training epoch's end).
            callbacks=[checkpoint, resume_point, *job_progress_bar(cfg.trainer)],
            default_root_dir=str(output_dir),
            enable_model_summary=False,
        )
        # 4. Fit (from the last epoch a dead process saved), then test the best checkpoint.
        # weights_only=False: lossopt's own checkpoints (they hold the random state).
        datamodule = lightning_data(data)
        trainer.fit(module, datamodule=datamodule, ckpt_path=last, weights_only=False)
        if trainer.interrupted:
            raise KeyboardInterrupt
        if is_rank_zero():  # only needed while the job can be interrupted
            (checkpoints / LAST_CHECKPOINT).unlink(missing_ok=True)
        best = checkpoint.best_model_path or None
        tested = trainer.test(
            module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=False
        )
        metrics = {k: float(v) for k, v in tested[0].items()} if tested else {}
        score = checkpoint.best_model_score
        objective = float(score) if score is not None else math.nan
        confusion = None
        if module.confusion is not None:
            # Every DDP rank takes part in this sync, on the device its backend serves:
            # after testing, Lightning has moved the module (and these counts) to the CPU,
            # which NCCL refuses.
            module.confusion.to(trainer.strategy.root_device)
            counts = module.confusion.compute().cpu().numpy()
            if is_rank_zero():
                from lossopt.core.plots import save_confusion

                confusion = save_confusion(counts, Path(output_dir) / "confusion_matrix.png")
        # 5. Summarize into the run.
        _summarize(tracked, cfg, monitor, objective, confusion, best)
    return RunResult(objective, monitor, metrics, tracked.run_id, tracked.uri, best)


def _resume_point(path: Path, every_s: float, tracked: bool):
    """A callback writing the job's whole training state to ``path`` at the end of a
    training epoch (after the best checkpoint's, as Lightning's own checkpoints are
    saved), at most every ``every_s`` seconds, for a re-run to resume from. The metrics
    logged before it reach the store with it (MLflow's queue holds them a few seconds
    otherwise): a job resumed from it keeps its history (the epoch's training metrics,
    logged just after it, go with the next one)."""
    import time

    import mlflow
    from lightning.pytorch.callbacks import Checkpoint

    class ResumePoint(Checkpoint):
        saved = time.monotonic()  # a job shorter than every_s never writes one

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            due = time.monotonic() - self.saved >= every_s
            if trainer.strategy.broadcast(due):  # rank 0 decides: saving is collective
                if tracked:
                    mlflow.flush_async_logging()
                trainer.save_checkpoint(path, weights_only=False)
                self.saved = time.monotonic()

    return ResumePoint()


def _summarize(
    tracked, cfg: DictConfig, monitor: str, objective: float, confusion: str | None, best
) -> None:
    """What a job adds to its run once trained: the best monitored value, the test
    confusion matrix (a PNG file), the best checkpoint when asked."""
    tracked.log_metrics({f"best_{monitor}": objective})
    if confusion is not None:
        tracked.log_artifact(confusion)
    if best and cfg.log_checkpoint:
        tracked.log_artifact(best, "checkpoints")


def record(
    cfg: DictConfig,
    output_dir: str | Path,
    parent_run_id: str | None,
    outcome: Any,
    resume: Any = None,
) -> RunResult:
    """The run of a job trained as a member of a stack (``core.sweep.stacked``): the same
    record ``run`` leaves, from the member's outcome. A failed member raises its error
    inside the run, which ends FAILED with it. ``resume``: the run a dead process left
    while recording this member, completed instead of a new one."""
    from lossopt.core._startup_heap import settle
    from lossopt.core.tracking import TAG_OUTPUT_DIR, source_tags, tracked_run

    monitor, _ = monitor_of(cfg)
    tags = {**source_tags(cfg), TAG_OUTPUT_DIR: str(Path(output_dir).resolve())}
    resume_id = resume.info.run_id if resume is not None else None
    with tracked_run(cfg, tags, parent_run_id, outcome.started_ms, resume_id) as tracked:
        kill_point("member-recording")
        settle()
        tracked.log_input(outcome.data)
        tracked.log_history(outcome.history)
        if outcome.error is not None:
            raise outcome.error
        # Drawn by the launcher's worker process while the members before were recorded.
        png = outcome.confusion_png.result() if outcome.confusion_png is not None else None
        _summarize(tracked, cfg, monitor, outcome.objective, png, outcome.best_checkpoint)
    return RunResult(
        outcome.objective,
        monitor,
        outcome.metrics,
        tracked.run_id,
        tracked.uri,
        outcome.best_checkpoint,
    )


def print_result(result: RunResult) -> None:
    """The results table of a job, with where to find its run and best checkpoint."""
    from rich.console import Console
    from rich.table import Table

    from lossopt.core.tracking import is_rank_zero

    if not is_rank_zero():  # DDP's other processes run the same command
        return
    console = Console()
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


def end_process_group() -> None:
    """Close the DDP process group a run opened, while the interpreter still runs: left
    to the interpreter's exit, its communication threads are sometimes torn down alive
    and the process aborts ("terminate called without an active exception"), and
    Lightning then kills the other ranks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
