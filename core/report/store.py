"""Find a sweep and its jobs in an MLflow store, for ``lossopt report``.

A sweep is a parent run tagged ``lossopt.sweep=true`` (with its monitored metric and
mode as tags); its jobs are child runs (``mlflow.parentRunId``) whose objective is the
metric ``best_<monitor>``. Unknown stores, experiments and runs are LossoptErrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lossopt.core.errors import LossoptError
from lossopt.core.store import open_client
from lossopt.core.tracking import TAG_FINGERPRINT, TAG_PARENT, TAG_SWEEP

__all__ = ["Job", "history", "open_sweep", "sweep_jobs"]

TAG_IS_SWEEP = "lossopt.sweep"
TAG_MONITOR = "lossopt.monitor"
TAG_MODE = "lossopt.monitor_mode"
TAG_ERROR = "lossopt.error"
_IS_SWEEP = f"tags.`{TAG_IS_SWEEP}` = 'true'"


@dataclass(frozen=True)
class Job:
    """One child run; ``value`` is its objective, None unless it finished with one."""

    run_id: str
    name: str
    loss: str
    optimizer: str
    lr: float | None
    seed: str
    status: str
    value: float | None
    error: str
    task: str = ""
    monitor: str = ""
    mode: str = ""
    start_ms: int = 0


def open_sweep(uri: str, experiment: str, sweep: str):
    """(client, parent run) of the sweep ``sweep`` ("latest" or a parent run id)."""
    client = _client(uri)
    return client, _find_sweep(client, uri, experiment, sweep)


def sweep_jobs(client, parent) -> tuple[list[Job], str, str]:
    """(jobs, monitored metric, mode) of the sweep whose parent run is ``parent``."""
    runs = _child_runs(client, parent)
    if not runs:
        raise LossoptError(
            f"sweep '{parent.info.run_name}' (run {parent.info.run_id}) has no jobs: no run has "
            "it as parent. If it has just started, wait for its first job, then run this again."
        )
    monitor, mode = _monitor(parent, runs)
    return [_job(run, monitor, mode) for run in runs], monitor, mode


def _client(uri: str):
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise LossoptError(
            f"no MLflow store at {uri}: the file does not exist. Run 'lossopt report' in the "
            "directory where the sweep ran (its mlflow.db), or pass --uri."
        )
    return open_client(uri)


def _find_sweep(client, uri: str, experiment: str, sweep: str):
    """The parent run: the newest sweep of ``experiment``, or the run ``sweep`` names."""
    from mlflow.exceptions import MlflowException

    if sweep == "latest":
        if (exp := client.get_experiment_by_name(experiment)) is None:
            names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
            raise LossoptError(
                f"no experiment '{experiment}' in {uri} (experiments there: {names}). Pass "
                "--experiment NAME (the sweep's tracking.experiment) or --uri for another store."
            )
        order = ["attributes.start_time DESC"]
        found = client.search_runs([exp.experiment_id], _IS_SWEEP, order_by=order, max_results=1)
        if not found:
            raise LossoptError(
                f"experiment '{experiment}' in {uri} has no sweep (no run tagged "
                f"{TAG_IS_SWEEP}=true). Run one with 'lossopt train -m …', or pass --sweep RUN_ID."
            )
        return found[0]
    try:
        run = client.get_run(sweep)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise LossoptError(
            f"no run with id '{sweep}' in {uri}. Pass --sweep latest, or the run id of a "
            "sweep's parent run (printed by 'lossopt train -m', shown in the MLflow UI)."
        ) from None
    if run.data.tags.get(TAG_IS_SWEEP) != "true":
        parent = run.data.tags.get(TAG_PARENT)
        kind, hint = ("a job", f"--sweep {parent}") if parent else ("a single run", "a sweep")
        raise LossoptError(
            f"run {sweep} is {kind}, not a sweep (no tag {TAG_IS_SWEEP}=true): "
            f"pass {hint}, or --sweep latest for the newest sweep."
        )
    return run


def _search(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        if not (token := page.token):
            return runs


def _child_runs(client, parent) -> list:
    """The jobs of the sweep, including those of earlier parents with the same sweep id
    (a re-run sweep); a job re-run with the same fingerprint counts once, by its newest
    run unless only an older one finished."""
    exp_id, sweep_id = parent.info.experiment_id, parent.data.tags.get(TAG_SWEEP)
    parents = {parent.info.run_id}
    if sweep_id:
        same = _search(client, exp_id, f"{_IS_SWEEP} and tags.`{TAG_SWEEP}` = '{sweep_id}'")
        parents |= {run.info.run_id for run in same}
    runs = [
        r
        for p in sorted(parents)
        for r in _search(client, exp_id, f"tags.`{TAG_PARENT}`='{p}'")
        if r.data.tags.get(TAG_IS_SWEEP) != "true"  # a later stage (--rerun-best) is no job
    ]
    latest: dict[str, object] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = run.data.tags.get(TAG_FINGERPRINT, run.info.run_id)
        old = latest.get(key)
        if old is None or run.info.status == "FINISHED" or old.info.status != "FINISHED":
            latest[key] = run
    return list(latest.values())


def _monitor(parent, runs) -> tuple[str, str]:
    """(metric, mode) from the parent's tags; else the children's ``best_*`` metric."""
    monitor = parent.data.tags.get(TAG_MONITOR)
    if not monitor:
        keys = [k for run in runs for k in run.data.metrics if k.startswith("best_")]
        monitor = max(set(keys), key=keys.count)[5:] if keys else "val/accuracy"
    mode = parent.data.tags.get(TAG_MODE)
    if mode not in ("min", "max"):
        mode = _mode_of(monitor)
    return monitor, mode


def _mode_of(metric: str) -> str:
    """As ``core.train.monitor_of`` decides ``monitor_mode: auto``."""
    return "min" if any(k in metric for k in ("loss", "mse", "mae")) else "max"


def _job_monitor(run, monitor: str, mode: str) -> tuple[str, str]:
    """The job's own monitored metric and mode: a sweep across tasks monitors accuracy
    on classification and MSE on regression jobs (``monitor: auto``), and each job logs
    ``best_<its monitor>``; the sweep's monitor when the job logged none."""
    best = sorted(k[5:] for k in run.data.metrics if k.startswith("best_"))
    own = monitor if monitor in best or not best else best[0]
    if own == monitor:
        return own, mode
    configured = run.data.params.get("monitor_mode", "auto")
    return own, configured if configured in ("min", "max") else _mode_of(own)


def _job(run, sweep_monitor: str, sweep_mode: str) -> Job:
    params, tags = run.data.params, run.data.tags
    monitor, mode = _job_monitor(run, sweep_monitor, sweep_mode)
    value = run.data.metrics.get(f"best_{monitor}")
    finished = run.info.status == "FINISHED"
    ok = finished and value is not None and math.isfinite(value)
    error = tags.get(TAG_ERROR, "")
    if not ok and not error:
        error = f"no best_{monitor} logged" if value is None else f"best_{monitor} is {value}"
        error = error if finished else f"{run.info.status} ({error})"
    try:
        lr = float(params["optimizer.lr"])
    except (KeyError, ValueError):
        lr = None
    return Job(
        run.info.run_id, run.info.run_name or run.info.run_id, params.get("loss.name", "?"),
        params.get("optimizer.name", "?"), lr, params.get("seed", "?"), run.info.status,
        value if ok else None, error, params.get("data.name", "?"), monitor, mode,
        run.info.start_time or 0,
    )  # fmt: skip


def history(client, run_id: str, metric: str) -> list[tuple[int, float, int]]:
    """``(epoch, value, timestamp ms)`` of a job's per-epoch ``metric``, epochs from 1.

    Lightning and the stacked loop log a validation metric once per epoch (at the
    epoch's last global step); its timestamp is when that epoch's training ended."""
    found = sorted(client.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
    return [(epoch, m.value, m.timestamp) for epoch, m in enumerate(found, 1)]
