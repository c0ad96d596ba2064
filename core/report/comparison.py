"""``lossopt report``: one sweep in MLflow → a ranked comparison, plots, files.

A sweep is a parent run (tag ``lossopt.sweep=true``, its monitored metric and mode as
tags); its jobs are child runs whose objective is the metric ``best_<monitor>``. The
report ranks each (loss, optimizer) pair at its best learning rate by the mean over
seeds, writes ``summary.md``/``summary.csv``/``by_lr.csv``/``lr_sensitivity.png``/
``curves.png`` and attaches them to the parent run under ``report/``.

Each task (``data.name``) of a sweep is ranked on its own, by its own monitor (a sweep
across tasks monitors accuracy on classification and MSE on regression). Within a
task, a pair that the bootstrap over seeds cannot tell from the best is marked tied,
its tuning-budget curve is the expected best of k random learning rates of the grid,
and its time to target is the epochs and seconds its seeds took to reach the target at
its best lr. A sweep over several tasks adds Dolan–Moré performance profiles
(``profiles.png``/``.csv``), the budget curves (``budget.png``/``.csv``) and
``time_to_target.csv``; one task keeps the files it always had, with the same numbers
in ``summary.md``/``.csv``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from lossopt.core.report.files import analysis_rows, better, ranking_rows, write_files
from lossopt.core.report.ranking import Cell, Reach, Report, Row, Task
from lossopt.core.report.stats import (
    TAUS,
    bootstrap_difference,
    budget_curve,
    performance_ratios,
    profile,
    profile_order,
    target_of,
    time_to_target,
)
from lossopt.core.report.store import Job, history, open_sweep, sweep_jobs
from lossopt.core.tracking import TAG_SWEEP

__all__ = ["print_report", "write_report"]

CURVES_SHOWN = 10  # best-ranked pairs drawn in curves.png; more is unreadable
CURVES_PER_TASK = 5  # the same, per panel of a sweep across tasks
BUDGET_SHOWN = 6  # pairs drawn per task in budget.png: the 3 best and the 3 worst
PROFILE_SHOWN = 10  # pairs drawn in colour in profiles.png
TARGET_FRACTION = 0.95


def write_report(
    uri: str,
    experiment: str = "lossopt",
    sweep: str = "latest",
    out: str | Path | None = None,
    target: float | None = None,
    target_fraction: float = TARGET_FRACTION,
) -> Report:
    """Read the sweep from ``uri``, write the report to ``out`` and attach it to the sweep.

    target: the validation value a job must reach for time-to-target (every task);
    by default ``target_fraction`` of the best mean on each task (the best divided by
    it where lower is better).
    """
    import matplotlib.pyplot as plt
    from mlflow.exceptions import MlflowException

    client, parent = open_sweep(uri, experiment, sweep)
    name = parent.info.run_name or parent.info.run_id
    jobs, monitor, mode = sweep_jobs(client, parent)
    histories = _Histories(client)
    by_task = _groupby(jobs, lambda j: j.task)
    tasks = [
        _task(task, by_task[task], histories, (monitor, mode), target, target_fraction)
        for task in sorted(by_task)
    ]
    if len(tasks) == 1:  # its own monitor is the sweep's, unless the sweep did not say
        monitor, mode = tasks[0].monitor, tasks[0].mode
    rows = [row for t in tasks for row in t.rows]
    cells = [cell for t in tasks for cell in t.cells]
    ratios = _ratios(tasks) if len(tasks) > 1 else {}
    out_dir = Path(out) if out is not None else Path("reports") / re.sub(r"[^\w.-]", "_", name)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = [job for job in jobs if job.value is None]
    report = Report(
        parent.info.run_id, name, monitor, mode, rows, cells, failures, out_dir, {},
        tasks=tasks, ratios=ratios,
    )  # fmt: skip
    figures = _figures(report, histories)
    for file_name, figure in figures.items():
        report.files[file_name] = out_dir / file_name
        figure.savefig(report.files[file_name])
        plt.close(figure)
    write_files(report, parent.data.tags.get(TAG_SWEEP), len(jobs))
    try:
        for path in report.files.values():
            client.log_artifact(report.parent_run_id, str(path), "report")
    except (OSError, MlflowException) as exc:  # the files are written; say why not attached
        return replace(report, attach_error=f"{type(exc).__name__}: {exc}")
    return report


class _Histories:
    """Per-epoch histories read once each: ``(run_id, metric)`` → ``[(epoch, value, ms)]``."""

    def __init__(self, client) -> None:
        self.client, self.cache = client, {}

    def get(self, run_id: str, metric: str) -> list[tuple[int, float, int]]:
        if (run_id, metric) not in self.cache:
            self.cache[run_id, metric] = history(self.client, run_id, metric)
        return self.cache[run_id, metric]


def _task(
    name: str, jobs: list[Job], histories: _Histories, sweep: tuple[str, str],
    target: float | None, fraction: float,
) -> Task:  # fmt: skip
    """One task's ranking, with significance, budget curves and time to target."""
    done = [job for job in jobs if job.value is not None]
    monitors = Counter((j.monitor or sweep[0], j.mode or sweep[1]) for j in done or jobs)
    monitor, mode = monitors.most_common(1)[0][0]
    cells = _cells(jobs, name)
    rows = _rank(cells, jobs, mode, name)
    value = {job.run_id: job.value for job in done}
    start = {job.run_id: job.start_ms for job in jobs}
    top = rows[0].best if rows else None
    if target is None and top is not None:
        target = target_of(top.mean, mode, fraction)
    reference = [value[i] for i in top.run_ids] if top else []
    by_pair = _groupby([c for c in cells if c.lr is not None], lambda c: (c.loss, c.optimizer))
    ranked = []
    for row in rows:
        if row.best is None:
            ranked.append(row)
            continue
        ci = None
        if row.best is not top:
            ci = bootstrap_difference([value[i] for i in row.best.run_ids], reference)
        grid = sorted(by_pair.get((row.loss, row.optimizer), []), key=lambda c: c.lr)
        budget = tuple(budget_curve([c.mean for c in grid], mode)) if grid else ()
        reach = None
        if target is not None:
            hits = [
                time_to_target(histories.get(i, monitor), start[i], target, mode)
                for i in row.best.run_ids
            ]
            reached = [hit for hit in hits if hit is not None]
            epochs = statistics.median(h[0] for h in reached) if reached else None
            seconds = statistics.median(h[1] for h in reached) if reached else None
            reach = Reach(len(hits), len(reached), epochs, seconds)
        tied = ci is not None and ci[0] <= 0.0 <= ci[1]
        ranked.append(replace(row, diff_ci=ci, tied=tied, budget=budget, reach=reach))
    return Task(name, monitor, mode, target, ranked, cells)


def _ratios(tasks: list[Task]) -> dict[tuple[str, str], dict[str, float]]:
    results = {
        t.name: {(r.loss, r.optimizer): r.best.mean if r.best else None for r in t.rows}
        for t in tasks
    }
    return performance_ratios(results, {t.name: t.mode for t in tasks})


def _figures(report: Report, histories: _Histories) -> dict:
    from lossopt.core import plots

    tasks = report.tasks
    if len(tasks) == 1:
        curves = _curves(histories, report.rows, report.monitor, CURVES_SHOWN)
        return {
            "lr_sensitivity.png": plots.lr_sensitivity_figure(
                _panels(report.cells), report.monitor, report.mode
            ),
            "curves.png": plots.curves_figure(curves, report.monitor, report.mode),
        }
    shown = profile_order(report.ratios)[:PROFILE_SHOWN]
    budgets = []
    for t in tasks:
        rows = sorted((r for r in t.rows if r.budget), key=lambda r: -_sign(t.mode) * _area(r))
        half = BUDGET_SHOWN // 2  # the best and the worst: the spread a budget makes
        drawn = rows if len(rows) <= BUDGET_SHOWN else rows[:half] + rows[-half:]
        budgets.append((t.name, t.monitor, t.mode, {_label(r): r.budget for r in drawn}))
    return {
        "lr_sensitivity.png": plots.lr_sensitivity_by_task(
            [(t.name, t.monitor, t.mode, _panels(t.cells)) for t in tasks]
        ),
        "curves.png": plots.curves_by_task(
            [
                (t.name, t.monitor, t.mode, _curves(histories, t.rows, t.monitor, CURVES_PER_TASK))
                for t in tasks
            ]
        ),
        "profiles.png": plots.profile_figure(
            {f"{p[0]} + {p[1]}": list(r.values()) for p, r in report.ratios.items()},
            [f"{p[0]} + {p[1]}" for p in shown],
        ),
        "budget.png": plots.budget_figure(budgets),
    }


def _sign(mode: str) -> float:
    return 1.0 if mode == "max" else -1.0


def _area(row: Row) -> float:
    return statistics.fmean(row.budget)


def _label(row: Row) -> str:
    return f"{row.loss} + {row.optimizer}"


def _groupby(items, key) -> dict:
    groups: dict = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


def _cell_key(job: Job) -> tuple:
    return job.loss, job.optimizer, job.lr


def _cells(jobs: list[Job], task: str = "") -> list[Cell]:
    done = [job for job in jobs if job.value is not None]
    cells = []
    for (loss, optimizer, lr), group in _groupby(done, _cell_key).items():
        values = [job.value for job in group]
        ids = tuple(job.run_id for job in group)
        mean = statistics.fmean(values)
        cells.append(Cell(loss, optimizer, lr, mean, _std(values), len(values), ids, task))
    return sorted(cells, key=lambda c: (c.loss, c.optimizer, c.lr is None, c.lr or 0.0))


def _rank(cells: list[Cell], jobs: list[Job], mode: str, task: str = "") -> list[Row]:
    sign = 1.0 if mode == "max" else -1.0  # sign * mean: larger is better
    by_pair = _groupby(cells, lambda c: (c.loss, c.optimizer))
    failed = _groupby([j for j in jobs if j.value is None], lambda j: (j.loss, j.optimizer))
    pairs = sorted({(job.loss, job.optimizer) for job in jobs})
    best = {p: max(by_pair.get(p, []), key=lambda c: sign * c.mean, default=None) for p in pairs}
    pairs.sort(key=lambda p: -sign * best[p].mean if best[p] else math.inf)
    return [Row(i, *p, best[p], len(failed.get(p, [])), task) for i, p in enumerate(pairs, 1)]


def _panels(cells: list[Cell]) -> dict[str, dict[str, list]]:
    """``{loss: {optimizer: [(lr, mean, std), …]}}`` for the sensitivity plot."""
    panels: dict = defaultdict(dict)
    for (loss, optimizer), group in _groupby(cells, lambda c: (c.loss, c.optimizer)).items():
        if points := [(c.lr, c.mean, c.std) for c in group if c.lr is not None and c.lr > 0]:
            panels[loss][optimizer] = points
    return panels


def _curves(histories: _Histories, rows: list[Row], monitor: str, shown: int) -> dict[str, list]:
    """Per-epoch history of the monitor at each pair's best lr, mean ± std over seeds."""
    curves = {}
    for row in [r for r in rows if r.best][:shown]:
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for run_id in row.best.run_ids:
            for epoch, value, _ in histories.get(run_id, monitor):
                per_epoch[epoch].append(value)
        if per_epoch:
            label = f"{row.loss} + {row.optimizer} ({_lr(row.best.lr)})"
            curves[label] = [(e, statistics.fmean(v), _std(v)) for e, v in per_epoch.items()]
    return curves


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _lr(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:g}"


def print_report(report: Report, console) -> None:
    """The ranked table(s), ties, budgets, times to target, the profiles across tasks,
    the failed jobs and where the files are, on a rich console."""
    from rich.table import Table

    several = len(report.tasks) > 1
    for task in report.tasks:
        title = f"{task.name}: " if several else f"{report.sweep_name}: "
        table = Table(
            title=f"{title}best {task.monitor} ({better(task.mode)})",
            caption="mean ± std over seeds at each (loss, optimizer)'s best learning rate; "
            "= after a rank: tied with #1 (bootstrap over seeds)",
        )
        for column in ("#", "loss", "optimizer", "best lr", task.monitor, "seeds", "failed"):
            table.add_column(column, justify="left" if column in ("loss", "optimizer") else "right")
        for row in ranking_rows(task.rows)[: 10 if several else None]:
            table.add_row(*row[:-1], f"[red]{row[-1]}[/]" if row[-1] != "0" else "0")
        console.print(table)
        target = "—" if task.target is None else f"{task.target:.4f}"
        extra = Table(title=f"Δ to #1, tuning budget, time to {task.monitor} = {target}")
        for column in ("#", "loss", "optimizer", "Δ to #1 (95% CI)", "E[best], 1 → all lrs"):
            extra.add_column(column)
        for column in ("epochs", "seconds", "reached"):
            extra.add_column(column, justify="right")
        for row in analysis_rows(task.rows, whole_budget=False)[: 5 if several else None]:
            extra.add_row(*row)
        console.print(extra)
    if several:
        _print_profiles(report, console)
    for job in report.failures[:10]:
        console.print(f"[red]{job.status.lower()}[/] {job.name}: {job.error}", highlight=False)
    if len(report.failures) > 10:
        console.print(f"… and {len(report.failures) - 10} more (see summary.md)")
    console.print(f"Report written to {report.out_dir}/ ({', '.join(report.files)})")
    if report.attach_error:
        console.print(
            f"[yellow]Not attached to run {report.parent_run_id}:[/] {report.attach_error}"
        )
    else:
        console.print(f"Attached to run {report.parent_run_id} under report/.")


def _print_profiles(report: Report, console) -> None:
    from rich.table import Table

    table = Table(
        title="Performance profiles across tasks (best first)",
        caption="ρ(τ): share of the pair's tasks within a factor τ of the task's best",
    )
    for column in ("loss", "optimizer", "tasks", *(f"ρ({tau:g})" for tau in TAUS)):
        table.add_column(column, justify="left" if column in ("loss", "optimizer") else "right")
    for pair in profile_order(report.ratios)[:PROFILE_SHOWN]:
        ratios = report.ratios[pair]
        rhos = [f"{profile(ratios, tau):.2f}" for tau in TAUS]
        table.add_row(*pair, str(len(ratios)), *rhos)
    console.print(table)
