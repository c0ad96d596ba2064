"""What a report holds: the cells of a sweep (a loss, optimizer and learning rate over
seeds), the rows that rank (loss, optimizer) pairs, one ranking per task, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lossopt.core.report.store import Job

__all__ = ["Cell", "Reach", "Report", "Row", "Task"]


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
    task: str = ""


@dataclass(frozen=True)
class Reach:
    """How a pair's seeds at its best lr reached the task's target: medians over the
    seeds that did (None when none did)."""

    seeds: int
    reached: int
    epochs: float | None
    seconds: float | None


@dataclass(frozen=True)
class Row:
    """A (loss, optimizer) pair ranked by its best cell (None when every job failed).

    diff_ci: 95 % bootstrap interval of its mean minus the best pair's (over seeds);
    tied: that interval contains 0. budget: expected best of k random lrs, k = 1 … .
    """

    rank: int
    loss: str
    optimizer: str
    best: Cell | None
    failed: int
    task: str = ""
    diff_ci: tuple[float, float] | None = None
    tied: bool = False
    budget: tuple[float, ...] = ()
    reach: Reach | None = None


@dataclass(frozen=True)
class Task:
    """One task of the sweep: its monitor, target, ranking and cells."""

    name: str
    monitor: str
    mode: str
    target: float | None
    rows: list[Row]
    cells: list[Cell]


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
    tasks: list[Task] = field(default_factory=list)
    # Performance ratios {(loss, optimizer): {task: r}} of a sweep across tasks.
    ratios: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
