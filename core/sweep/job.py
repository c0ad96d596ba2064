"""One job of a sweep: skipped when already FINISHED, resumed when its process died,
trained here or recorded from the stack that trained it, and its result row written
for the sweep's summary (``core.sweep.callback``) and the sweeper.

Every launcher's job goes through ``sweep_job``: Hydra's task function calls it for a
job run alone (``core.app``), the vectorized launcher through ``member_task`` for a
member of a stack, so both leave the same record.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from lossopt.core._quiet import verbose
from lossopt.core.errors import LossoptError, print_error
from lossopt.core.job_context import job_context
from lossopt.core.store import open_client
from lossopt.core.sweep.gpu_slots import pin_worker_gpu
from lossopt.core.tracking import (
    TAG_FINGERPRINT,
    TAG_HOST,
    TAG_OUTPUT_DIR,
    TAG_PARENT,
    TAG_PID,
    fingerprint,
    is_running,
    run_name,
    tracking_uri,
)
from lossopt.core.train import end_process_group, monitor_of, print_result, record, run

__all__ = [
    "finished_job",
    "member_task",
    "read_result",
    "sweep_job",
    "sweep_state",
    "unfinished_run",
    "write_result",
]

console = Console()


def write_result(results: Path, job_num: int, row: Mapping[str, Any]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{job_num}.json").write_text(json.dumps(dict(row), default=str))


def read_result(results: Path | None, job_num: int) -> dict[str, Any] | None:
    """What job ``job_num`` wrote with ``write_result`` (its status, objective, run
    id), or None."""
    path = results / f"{job_num}.json" if results else None
    return json.loads(path.read_text()) if path and path.exists() else None


def _child_runs(cfg: DictConfig, parent_run_id: str, extra: str = "", limit: int = 1) -> list:
    """Runs of this sweep (children of its parent) matching ``extra``, newest first."""
    client = open_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}'{extra}",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )


def finished_job(cfg: DictConfig, parent_run_id: str) -> Any | None:
    """The FINISHED child run of this sweep with this job's config fingerprint."""
    runs = _child_runs(
        cfg,
        parent_run_id,
        f" and attributes.status = 'FINISHED' and tags.`{TAG_FINGERPRINT}` = '{fingerprint(cfg)}'",
    )
    return runs[0] if runs else None


# A job on another host whose checkpoint has not changed for this long is taken for
# dead (this host cannot look at another's processes).
STALE_AFTER_S = 3600


def unfinished_run(cfg: DictConfig, parent_run_id: str) -> Any | None:
    """This job's latest run in the sweep that its process left RUNNING or KILLED, to
    be continued; None if there is none. A job still running (on this host: its
    process is alive; on another: its checkpoint changed within ``STALE_AFTER_S``) is
    not started twice: that is an error saying where it runs."""
    runs = _child_runs(cfg, parent_run_id, f" and tags.`{TAG_FINGERPRINT}` = '{fingerprint(cfg)}'")
    if not runs or runs[0].info.status not in ("RUNNING", "KILLED"):
        return None
    run = runs[0]
    if _alive(run) and run.info.status == "RUNNING":
        tags = run.data.tags
        raise LossoptError(
            f"this job is running already: run {run.info.run_id}, process "
            f"{tags.get(TAG_PID)} on {tags.get(TAG_HOST)}. It is not started twice; "
            "re-run the sweep once that process has ended."
        )
    return run


def _alive(run: Any) -> bool:
    """Whether the process that recorded ``run`` may still be running."""
    tags = run.data.tags
    alive = is_running(tags)
    if alive is None:  # another host: judged by when its checkpoint last changed
        last = Path(tags.get(TAG_OUTPUT_DIR, "")) / "checkpoints" / "last.ckpt"
        changed = last.stat().st_mtime if last.exists() else run.info.start_time / 1000
        alive = time.time() - changed < STALE_AFTER_S
    return alive


def sweep_state(cfg: DictConfig, parent_run_id: str) -> tuple[set[str], dict[str, Any]]:
    """In one query, what this sweep's store holds of its jobs: the fingerprints of
    the FINISHED ones, and by fingerprint the runs that a dead process left RUNNING or
    KILLED, to be continued rather than duplicated."""
    finished: set[str] = set()
    unfinished: dict[str, Any] = {}
    for child in _child_runs(cfg, parent_run_id, limit=50000):  # newest first
        key, status = child.data.tags.get(TAG_FINGERPRINT), child.info.status
        if key is None or key in finished:
            continue
        if status == "FINISHED":
            finished.add(key)
            unfinished.pop(key, None)
        elif key not in unfinished and (
            status == "KILLED" or (status == "RUNNING" and not _alive(child))
        ):
            unfinished[key] = child
    return finished, unfinished


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
        end_process_group()
        os.environ.clear()
        os.environ.update(environ)
        sys.argv, hydra_cfg.run.dir = argv, run_dir
        OmegaConf.set_readonly(hydra_cfg, True)


def member_task(outcome, resume: Any = None) -> Callable[[DictConfig], float]:
    """The Hydra task function of a job trained as a member of a stack: it records the
    member's outcome as its job's run, through the same steps as any sweep job.
    ``resume``: the run a dead process left while recording it (``sweep_state``),
    continued instead of a new one."""

    def task(cfg: DictConfig) -> float:
        from hydra.core.hydra_config import HydraConfig

        return sweep_job(cfg, HydraConfig.get(), *job_context(), member=outcome, resume=resume)

    return task


def sweep_job(
    cfg: DictConfig,
    hydra_cfg,
    parent_run_id: str | None,
    results: Path | None,
    member=None,
    resume=None,
) -> float:
    """One job of a sweep: skipped when already FINISHED, continued in the run a dead
    process left, a failure recorded and reported without stopping the other jobs.
    Returns the objective (NaN on failure).

    ``member``: the outcome of the job trained in a stack (``core.sweep.stacked``),
    which is recorded instead of training the job here (the launcher already left out
    the FINISHED ones, and looked up ``resume``, its unfinished run, for the batch).
    """
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
            if member is None and parent_run_id:
                resume = unfinished_run(cfg, parent_run_id)
            if resume is not None:
                console.print(
                    f"[yellow]resume[/] job {job}: run {resume.info.run_id}, left "
                    f"{resume.info.status} by a process that has ended"
                )
            if member is None:
                result = run(cfg, hydra_cfg.runtime.output_dir, parent_run_id, resume)
            else:
                result = record(cfg, hydra_cfg.runtime.output_dir, parent_run_id, member, resume)
    except Exception as exc:  # one failed job must not stop the sweep
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LossoptError) else str(exc)
        print_error(message, f"job {job} failed")
        write_result(results, job, {**row, "status": "failed", "error": message[:500]})
        return float("nan")
    if member is None and verbose():
        print_result(result)
    else:  # one line a job; the sweep's summary names the runs
        run_id = f", run {result.run_id}" if result.run_id and verbose() else ""
        console.print(
            f"job {job} [green]finished[/] {run_name(cfg)}: best {result.monitor} "
            f"{result.objective:.4f}{run_id}"
        )
    write_result(
        results,
        job,
        {**row, "status": "finished", "objective": result.objective, "run_id": result.run_id},
    )
    return result.objective
