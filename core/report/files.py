"""The text files of ``lossopt report``: ``summary.md``, ``summary.csv``, ``by_lr.csv``
and, for a sweep across tasks, ``profiles.csv``, ``budget.csv`` and
``time_to_target.csv``; and the table rows ``print_report`` shows."""

from __future__ import annotations

import csv
from pathlib import Path

from lossopt.core.report.ranking import Report, Row, Task
from lossopt.core.report.stats import TAUS, profile, profile_order

__all__ = ["analysis_rows", "better", "lr_text", "num", "ranking_rows", "write_files"]

TIE_NOTE = (
    "`=` after a rank: not distinguishable from #1, the 95 % bootstrap interval of the "
    "difference of means over seeds contains 0."
)


def num(value: float | None) -> str:
    """Four decimals, so a column of means and spreads lines up (0.9639, 0.0039)."""
    return "—" if value is None else f"{value:.4f}"


def lr_text(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:g}"


def better(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def ranking_rows(rows: list[Row]) -> list[list[str]]:
    """Ranked rows as text: rank (``=`` when tied with #1), loss, optimizer, best lr,
    mean ± std, seeds, failed."""
    out = []
    for r in rows:
        b = r.best
        best = [lr_text(b.lr), f"{num(b.mean)} ± {num(b.std)}", str(b.n)] if b else ["—", "—", "0"]
        out.append([f"{r.rank}{'=' if r.tied else ''}", r.loss, r.optimizer, *best, str(r.failed)])
    return out


def _ci(r: Row) -> str:
    if r.best is None:
        return "—"
    if r.diff_ci is None:
        return "(the best)" if r.rank == 1 else "— (one seed)"
    return f"[{r.diff_ci[0]:+.4f}, {r.diff_ci[1]:+.4f}]"


def analysis_rows(rows: list[Row], whole_budget: bool = True) -> list[list[str]]:
    """Rank, loss, optimizer, Δ to #1 (CI), budget curve (or its ends), epochs, seconds,
    seeds reaching."""
    out = []
    for r in rows:
        if r.best is None:
            continue
        ends = r.budget if whole_budget or len(r.budget) < 3 else (r.budget[0], r.budget[-1])
        budget = " → ".join(f"{v:.3f}" for v in ends) or "—"
        reach = r.reach
        if reach is None:
            timing = ["—", "—", "—"]
        else:
            epochs = "—" if reach.epochs is None else f"{reach.epochs:g}"
            seconds = "—" if reach.seconds is None else f"{reach.seconds:.1f}"
            timing = [epochs, seconds, f"{reach.reached}/{reach.seeds}"]
        out.append(
            [f"{r.rank}{'=' if r.tied else ''}", r.loss, r.optimizer, _ci(r), budget, *timing]
        )
    return out


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def _md_table(header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    return [
        f"| {' | '.join(header)} |",
        align,
        *(f"| {' | '.join(row)} |" for row in rows),
    ]


def _ranking_md(task: Task) -> list[str]:
    header = ["rank", "loss", "optimizer", "best lr", f"{task.monitor} (mean ± std)"]
    return _md_table(
        [*header, "seeds", "failed"], "|---:|---|---|---:|---:|---:|---:|", ranking_rows(task.rows)
    )


def _analysis_md(task: Task) -> list[str]:
    target = "—" if task.target is None else f"{task.target:.4f}"
    header = ["rank", "loss", "optimizer", "Δ to #1 (95 % CI)", "E[best of k lrs], k = 1 …"]
    header += ["epochs to target", "seconds to target", "seeds reaching"]
    return [
        f"Target: {task.monitor} {'≥' if task.mode == 'max' else '≤'} {target}. Times are the "
        "medians over the seeds that reach it, at the pair's best lr; seconds are wall time "
        "from the job's start (a stacked job shares its clock with its stack).",
        "",
        *_md_table(header, "|---:|---|---|---:|---|---:|---:|---:|", analysis_rows(task.rows)),
    ]


def write_files(report: Report, sweep_id: str | None, n_jobs: int) -> None:
    """Write the text files into ``report.out_dir`` and add them to ``report.files``."""
    for name in ("summary.md", "summary.csv", "by_lr.csv"):
        report.files[name] = report.out_dir / name
    _write_summary_csv(report)
    by_lr = [
        [c.loss, c.optimizer, c.lr, c.mean, c.std, c.n, t.monitor, t.name]
        for t in report.tasks
        for c in t.cells
    ]
    header = ["loss", "optimizer", "lr", "mean", "std", "n", "metric", "task"]
    _write_csv(report.files["by_lr.csv"], header, by_lr)
    if len(report.tasks) > 1:
        _write_across_tasks(report)
    report.files["summary.md"].write_text("\n".join(_markdown(report, sweep_id, n_jobs)) + "\n")


def _write_summary_csv(report: Report) -> None:
    rows = []
    for t in report.tasks:
        for r in t.rows:
            b = r.best
            best = (b.lr, b.mean, b.std, b.n) if b else (None, None, None, 0)
            ci = r.diff_ci or (None, None)
            reach = r.reach
            timing = (reach.reached, reach.epochs, reach.seconds) if reach else (None,) * 3
            rows.append(
                [r.rank, r.loss, r.optimizer, *best, r.failed, t.monitor, t.mode, t.name,
                 r.tied, *ci, t.target, *timing]
            )  # fmt: skip
    header = ["rank", "loss", "optimizer", "best_lr", "mean", "std", "seeds", "failed"]
    header += ["metric", "mode", "task", "tied", "diff_ci_low", "diff_ci_high", "target"]
    header += ["seeds_reaching", "epochs_to_target", "seconds_to_target"]
    _write_csv(report.files["summary.csv"], header, rows)


def _write_across_tasks(report: Report) -> None:
    tasks = [t.name for t in report.tasks]
    rows = []
    for pair in profile_order(report.ratios):
        ratios = report.ratios[pair]
        rhos = [profile(ratios, tau) for tau in TAUS]
        rows.append([*pair, len(ratios), *rhos, *(ratios.get(t, "") for t in tasks)])
    header = ["loss", "optimizer", "tasks", *(f"rho_{tau:g}" for tau in TAUS)]
    _write_csv(report.out_dir / "profiles.csv", [*header, *(f"ratio_{t}" for t in tasks)], rows)
    budget = [
        [t.name, r.loss, r.optimizer, k, value]
        for t in report.tasks
        for r in t.rows
        for k, value in enumerate(r.budget, 1)
    ]
    header = ["task", "loss", "optimizer", "k", "expected_best"]
    _write_csv(report.out_dir / "budget.csv", header, budget)
    timing = [
        [t.name, r.loss, r.optimizer, r.best.lr, t.monitor, t.target, r.reach.seeds,
         r.reach.reached, r.reach.epochs, r.reach.seconds]
        for t in report.tasks
        for r in t.rows
        if r.best and r.reach
    ]  # fmt: skip
    header = ["task", "loss", "optimizer", "best_lr", "metric", "target", "seeds", "reached"]
    header += ["median_epochs", "median_seconds"]
    _write_csv(report.out_dir / "time_to_target.csv", header, timing)
    for name in ("profiles.csv", "budget.csv", "time_to_target.csv"):
        report.files[name] = report.out_dir / name


def _profile_md(report: Report) -> list[str]:
    rows = []
    for pair in profile_order(report.ratios):
        ratios = report.ratios[pair]
        rhos = [f"{profile(ratios, tau):.2f}" for tau in TAUS]
        rows.append([*pair, str(len(ratios)), *rhos])
    header = ["loss", "optimizer", "tasks", *(f"ρ({tau:g})" for tau in TAUS)]
    return _md_table(header, "|---|---|---:|" + "---:|" * len(TAUS), rows)


def _markdown(report: Report, sweep_id: str | None, n_jobs: int) -> list[str]:
    lines = [
        f"# Sweep report: {report.sweep_name}",
        "",
        f"Parent run `{report.parent_run_id}`, sweep id `{sweep_id or '—'}`; {n_jobs} jobs, "
        f"{len(report.failures)} without a result.",
    ]
    if len(report.tasks) == 1:
        (task,) = report.tasks
        lines += [
            f"Objective: `best_{task.monitor}` of each job ({better(task.mode)}); each (loss, "
            "optimizer) at its best learning rate, mean ± sample std over seeds.",
            "",
            *_ranking_md(task),
            "",
            "![learning-rate sensitivity](lr_sensitivity.png)",
            "",
            "![training curves](curves.png)",
            "",
            "## Significance, tuning budget, time to target",
            "",
            TIE_NOTE,
            "",
            *_analysis_md(task),
        ]
    else:
        names = ", ".join(f"{t.name} (`{t.monitor}`, {better(t.mode)})" for t in report.tasks)
        lines += [
            f"Tasks: {names}. Each (loss, optimizer) at its best learning rate on each task, "
            "mean ± sample std over seeds.",
            "",
            "## Across tasks: performance profiles",
            "",
            "ρ(τ): the share of the tasks a pair ran on where its best-lr mean is within a "
            "factor τ of the task's best (best/value where higher is better, value/best "
            "where lower is; a pair whose jobs all failed counts as never within).",
            "",
            *_profile_md(report),
            "",
            "![performance profiles](profiles.png)",
            "",
            "## Tuning budget",
            "",
            "The expected best result when k learning rates of the grid are tried at random "
            "(exact, over all k-subsets); `budget.csv` has every pair.",
            "",
            "![tuning budget](budget.png)",
            "",
            "## Per task",
            "",
            TIE_NOTE,
            "",
            "![learning-rate sensitivity](lr_sensitivity.png)",
            "",
            "![training curves](curves.png)",
        ]
        for task in report.tasks:
            lines += ["", f"### {task.name}", "", *_ranking_md(task), "", *_analysis_md(task)]
    if report.failures:
        lines += [
            "",
            "## Failed jobs",
            "",
            "| run | task | loss | optimizer | lr | seed | status | error |",
            "|---|---|---|---|---:|---:|---|---|",
        ]
        for j in report.failures:
            error = " ".join(j.error.split()).replace("|", "\\|")
            cells = [j.name, j.task, j.loss, j.optimizer, lr_text(j.lr), j.seed, j.status, error]
            lines.append(f"| {' | '.join(cells)} |")
    return lines
