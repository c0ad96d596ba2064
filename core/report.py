"""``lossopt report``: one sweep in MLflow → a ranked comparison, plots, files.

A sweep is a parent run (tag ``lossopt.sweep=true``, its monitored metric and mode as
tags); its jobs are child runs whose objective is the metric ``best_<monitor>``. The
report ranks each (loss, optimizer) pair at its best learning rate by the mean over
seeds, writes ``summary.md``/``summary.csv``/``by_lr.csv``/``lr_sensitivity.png``/
``curves.png`` and attaches them to the parent run under ``report/``.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from lossopt.core._report_store import Job, open_sweep, sweep_jobs
from lossopt.core.tracking import TAG_SWEEP

__all__ = ["Cell", "Job", "Report", "Row", "print_report", "write_report"]

CURVES_SHOWN = 10  # best-ranked pairs drawn in curves.png; more is unreadable


@dataclass(frozen=True)
class Cell:
    """The seeds of one (loss, optimizer, lr); ``std`` (sample) is None for one seed."""

    loss: str
    optimizer: str
    lr: float | None
    mean: float
    std: float | None
    n: int
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """A (loss, optimizer) pair ranked by its best cell (None when every job failed)."""

    rank: int
    loss: str
    optimizer: str
    best: Cell | None
    failed: int


@dataclass(frozen=True)
class Report:
    parent_run_id: str
    sweep_name: str
    monitor: str
    mode: str
    rows: list[Row]
    cells: list[Cell]
    failures: list[Job]
    out_dir: Path
    files: dict[str, Path]
    attach_error: str | None = None


def write_report(
    uri: str, experiment: str = "lossopt", sweep: str = "latest", out: str | Path | None = None
) -> Report:
    """Read the sweep from ``uri``, write the report to ``out`` and attach it to the sweep."""
    import matplotlib.pyplot as plt
    from mlflow.exceptions import MlflowException

    from lossopt.core.plots import curves_figure, lr_sensitivity_figure

    client, parent = open_sweep(uri, experiment, sweep)
    name = parent.info.run_name or parent.info.run_id
    jobs, monitor, mode = sweep_jobs(client, parent)
    cells = _cells(jobs)
    rows = _rank(cells, jobs, mode)
    out_dir = Path(out) if out is not None else Path("reports") / re.sub(r"[^\w.-]", "_", name)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {k: out_dir / k for k in ("summary.md", "summary.csv", "by_lr.csv")}
    failures = [job for job in jobs if job.value is None]
    figures = {
        "lr_sensitivity.png": lr_sensitivity_figure(_panels(cells), monitor, mode),
        "curves.png": curves_figure(_curves(client, rows, monitor), monitor, mode),
    }
    for file_name, figure in figures.items():
        files[file_name] = out_dir / file_name
        figure.savefig(files[file_name])
        plt.close(figure)
    report = Report(parent.info.run_id, name, monitor, mode, rows, cells, failures, out_dir, files)
    _write_tables(report, parent.data.tags.get(TAG_SWEEP), len(jobs))
    try:
        for path in files.values():
            client.log_artifact(report.parent_run_id, str(path), "report")
    except (OSError, MlflowException) as exc:  # the files are written; say why not attached
        return replace(report, attach_error=f"{type(exc).__name__}: {exc}")
    return report


def _groupby(items, key) -> dict:
    groups: dict = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


def _cell_key(job: Job) -> tuple:
    return job.loss, job.optimizer, job.lr


def _cells(jobs: list[Job]) -> list[Cell]:
    done = [job for job in jobs if job.value is not None]
    cells = []
    for (loss, optimizer, lr), group in _groupby(done, _cell_key).items():
        values = [job.value for job in group]
        ids = tuple(job.run_id for job in group)
        mean = statistics.fmean(values)
        cells.append(Cell(loss, optimizer, lr, mean, _std(values), len(values), ids))
    return sorted(cells, key=lambda c: (c.loss, c.optimizer, c.lr is None, c.lr or 0.0))


def _rank(cells: list[Cell], jobs: list[Job], mode: str) -> list[Row]:
    sign = 1.0 if mode == "max" else -1.0  # sign * mean: larger is better
    by_pair = _groupby(cells, lambda c: (c.loss, c.optimizer))
    failed = _groupby([j for j in jobs if j.value is None], lambda j: (j.loss, j.optimizer))
    pairs = sorted({(job.loss, job.optimizer) for job in jobs})
    best = {p: max(by_pair.get(p, []), key=lambda c: sign * c.mean, default=None) for p in pairs}
    pairs.sort(key=lambda p: -sign * best[p].mean if best[p] else math.inf)
    return [Row(i, *p, best[p], len(failed.get(p, []))) for i, p in enumerate(pairs, 1)]


def _panels(cells: list[Cell]) -> dict[str, dict[str, list]]:
    """``{loss: {optimizer: [(lr, mean, std), …]}}`` for the sensitivity plot."""
    panels: dict = defaultdict(dict)
    for (loss, optimizer), group in _groupby(cells, lambda c: (c.loss, c.optimizer)).items():
        if points := [(c.lr, c.mean, c.std) for c in group if c.lr is not None and c.lr > 0]:
            panels[loss][optimizer] = points
    return panels


def _curves(client, rows: list[Row], monitor: str) -> dict[str, list]:
    """Per-epoch history of the monitor at each pair's best lr, mean ± std over seeds."""
    curves = {}
    for row in [r for r in rows if r.best][:CURVES_SHOWN]:
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for run_id in row.best.run_ids:
            history = sorted(
                client.get_metric_history(run_id, monitor), key=lambda m: (m.step, m.timestamp)
            )
            for epoch, metric in enumerate(history, 1):
                per_epoch[epoch].append(metric.value)
        if per_epoch:
            label = f"{row.loss} + {row.optimizer} ({_lr(row.best.lr)})"
            curves[label] = [(e, statistics.fmean(v), _std(v)) for e, v in per_epoch.items()]
    return curves


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _lr(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:g}"


def _num(value: float | None) -> str:
    """Four decimals, so a column of means and spreads lines up (0.9639, 0.0039)."""
    return "—" if value is None else f"{value:.4f}"


def _table(report: Report) -> list[list[str]]:
    """The ranked rows as text: rank, loss, optimizer, best lr, mean ± std, seeds, failed."""
    rows = []
    for r in report.rows:
        b = r.best
        best = [_lr(b.lr), f"{_num(b.mean)} ± {_num(b.std)}", str(b.n)] if b else ["—", "—", "0"]
        rows.append([str(r.rank), r.loss, r.optimizer, *best, str(r.failed)])
    return rows


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def _write_tables(report: Report, sweep_id: str | None, n_jobs: int) -> None:
    metric, mode = report.monitor, report.mode
    summary = []
    for r in report.rows:
        best = (r.best.lr, r.best.mean, r.best.std, r.best.n) if r.best else (None, None, None, 0)
        summary.append([r.rank, r.loss, r.optimizer, *best, r.failed, metric, mode])
    header = ["rank", "loss", "optimizer", "best_lr", "mean", "std", "seeds", "failed"]
    _write_csv(report.files["summary.csv"], [*header, "metric", "mode"], summary)
    by_lr = [[c.loss, c.optimizer, c.lr, c.mean, c.std, c.n, metric] for c in report.cells]
    header = ["loss", "optimizer", "lr", "mean", "std", "n", "metric"]
    _write_csv(report.files["by_lr.csv"], header, by_lr)
    lines = [
        f"# Sweep report: {report.sweep_name}",
        "",
        f"Parent run `{report.parent_run_id}`, sweep id `{sweep_id or '—'}`; {n_jobs} jobs, "
        f"{len(report.failures)} without a result.",
        f"Objective: `best_{metric}` of each job ({_better(mode)}); each (loss, optimizer) "
        "at its best learning rate, mean ± sample std over seeds.",
        "",
        f"| rank | loss | optimizer | best lr | {metric} (mean ± std) | seeds | failed |",
        "|---:|---|---|---:|---:|---:|---:|",
        *(f"| {' | '.join(row)} |" for row in _table(report)),
        "",
        "![learning-rate sensitivity](lr_sensitivity.png)",
        "",
        "![training curves](curves.png)",
    ]
    if report.failures:
        lines += [
            "",
            "## Failed jobs",
            "",
            "| run | loss | optimizer | lr | seed | status | error |",
        ]
        lines.append("|---|---|---|---:|---:|---|---|")
        for j in report.failures:
            error = " ".join(j.error.split()).replace("|", "\\|")
            cells = [j.name, j.loss, j.optimizer, _lr(j.lr), j.seed, j.status, error]
            lines.append(f"| {' | '.join(cells)} |")
    report.files["summary.md"].write_text("\n".join(lines) + "\n")


def _better(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def print_report(report: Report, console) -> None:
    """The ranked table, the failed jobs and where the files are, on a rich console."""
    from rich.table import Table

    table = Table(
        title=f"{report.sweep_name}: best {report.monitor} ({_better(report.mode)})",
        caption="mean ± std over seeds at each (loss, optimizer)'s best learning rate",
    )
    for column in ("#", "loss", "optimizer", "best lr", report.monitor, "seeds", "failed"):
        table.add_column(column, justify="left" if column in ("loss", "optimizer") else "right")
    for row in _table(report):
        table.add_row(*row[:-1], f"[red]{row[-1]}[/]" if row[-1] != "0" else "0")
    console.print(table)
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
