"""A sweep's parent run and summary: one MLflow parent run per sweep, a child run per
job (``core.sweep.job``), a ranked table at the end.

``SweepCallback`` is a Hydra callback (``hydra.callbacks`` in ``conf/train.yaml``).
In the launching process, before any job starts, it creates the MLflow schema, the
experiment and the parent run — parallel jobs racing to create them would corrupt a
new SQLite store — and hands the parent's id and a results folder to the jobs through
the environment (``core.job_context``), which every launcher passes on (joblib
workers, submitit jobs). Each job writes one small result file; at the end the
callback ranks them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich import box
from rich.console import Console
from rich.table import Table

from lossopt.core._kill_points import kill_point
from lossopt.core.errors import LossoptError, print_error
from lossopt.core.job_context import AXES_ENV, PARENT_ENV, RESULTS_ENV, RESUME_ENV
from lossopt.core.tracking import TAG_SWEEP

__all__ = ["SweepCallback", "sweep_id"]

TAG_IS_SWEEP = "lossopt.sweep"
# The folder of the sweep's first run, where stacks keep their state between epochs:
# a re-run of the command (a new output folder) finds it through the parent run.
TAG_RESUME_DIR = "lossopt.resume_dir"


def sweep_id(config: DictConfig) -> str:
    """The same sweep command (same overrides, same experiment) gives the same id."""
    overrides = sorted(config.hydra.overrides.task)
    text = json.dumps([config.tracking.experiment, overrides])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SweepCallback(Callback):
    """Parent run and summary of a multirun; see the module docstring."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.results: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        kill_point("sweep-start")
        self.results = Path(str(config.hydra.sweep.dir)).resolve() / ".lossopt-results"
        os.environ[RESULTS_ENV] = str(self.results)
        if config.tracking.enabled:
            # Hydra turns a callback's exception into a warning and sweeps on: the
            # jobs would be top-level runs, and nothing would say the sweep is broken.
            with _or_exit("the sweep's parent run could not be opened: no job has run"):
                self._open_parent(config)

    def _open_parent(self, config: DictConfig) -> None:
        from mlflow.entities import Param

        from lossopt.core.mlflow_ui.view import (
            VIEW_TAG,
            ensure_training_view,
            grid_size,
            sweep_axes,
            sweep_name,
            sweep_view,
        )
        from lossopt.core.store import experiment_id, open_client
        from lossopt.core.tracking import tracking_uri
        from lossopt.core.train import monitor_of

        axes = sweep_axes(config)
        client = open_client(tracking_uri(config))  # creates the schema, once
        exp_id = experiment_id(client, config.tracking.experiment)
        sid = sweep_id(config)
        existing = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{TAG_SWEEP}` = '{sid}' and tags.`{TAG_IS_SWEEP}` = 'true'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        resume = Path(str(config.hydra.sweep.dir)).resolve() / ".lossopt-resume"
        if existing:
            self.parent_run_id = existing[0].info.run_id
            resume = Path(existing[0].data.tags.get(TAG_RESUME_DIR, resume))
            client.update_run(self.parent_run_id, status="RUNNING")
            Console().print(f"Resuming sweep: parent run {self.parent_run_id}")
        else:
            monitor, mode = monitor_of(config)
            overrides = " ".join(config.hydra.overrides.task)
            tags = {
                TAG_IS_SWEEP: "true",
                TAG_SWEEP: sid,
                "lossopt.monitor": monitor,
                "lossopt.monitor_mode": mode,
                "lossopt.overrides": overrides[:5000],
                TAG_RESUME_DIR: str(resume),
            }
            name = sweep_name(config.tracking.experiment, axes, grid_size(axes))
            run = client.create_run(exp_id, tags=tags, run_name=name)
            self.parent_run_id = run.info.run_id
            kill_point("parent-created")
        # The axes as params, under the children's keys: the parent's row shows them.
        # Again when the parent is reused: a killed sweep may have created it without.
        logged = client.get_run(self.parent_run_id).data.params if existing else {}
        axes_params = [Param(k, v[:6000]) for k, v, _ in axes if k not in logged]
        if axes_params:
            client.log_batch(self.parent_run_id, params=axes_params)
        ensure_training_view(client, exp_id)
        view = sweep_view(axes, f"best_{monitor_of(config)[0]}")
        client.set_experiment_tag(exp_id, VIEW_TAG + sid, view)
        os.environ[PARENT_ENV] = self.parent_run_id
        os.environ[RESUME_ENV] = str(resume)
        os.environ[AXES_ENV] = ",".join(key for key, _, _ in axes)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = self._rows()
        failed = [r for r in rows if r["status"] == "failed"]
        markdown = _summary(rows, config, Console())
        kill_point("summary")
        if self.parent_run_id:
            with _or_exit("the sweep's summary could not be recorded (its jobs' runs are)"):
                self._close_parent(config, rows, markdown, failed)
        for variable in (PARENT_ENV, RESULTS_ENV, RESUME_ENV, AXES_ENV):
            os.environ.pop(variable, None)
        if failed:
            Console(stderr=True).print(f"[bold red]{len(failed)} of {len(rows)} jobs failed.[/]")
            raise SystemExit(1)

    def _close_parent(self, config: DictConfig, rows: list, markdown: str, failed: list) -> None:
        from lossopt.core.mlflow_ui.view import sweep_axes, sweep_name
        from lossopt.core.store import open_client
        from lossopt.core.tracking import tracking_uri

        client = open_client(tracking_uri(config))
        client.log_text(self.parent_run_id, markdown, "summary.md")
        client.log_dict(self.parent_run_id, {"jobs": rows}, "summary.json")
        name = sweep_name(config.tracking.experiment, sweep_axes(config), len(rows))
        client.update_run(self.parent_run_id, name=name)
        resume = os.environ.get(RESUME_ENV)
        if resume and not failed:  # every job is recorded: no stack has anything to resume
            shutil.rmtree(resume, ignore_errors=True)
        client.set_terminated(self.parent_run_id, "FAILED" if failed else "FINISHED")

    def _rows(self) -> list[dict[str, Any]]:
        if self.results is None or not self.results.exists():
            return []
        files = sorted(self.results.glob("*.json"), key=lambda p: int(p.stem))
        return [json.loads(p.read_text()) for p in files]


@contextlib.contextmanager
def _or_exit(what: str) -> Iterator[None]:
    """A failure inside is printed and ends the sweep's process (exit status 2): a
    SystemExit is the one exception Hydra's callbacks do not turn into a warning."""
    try:
        yield
    except Exception as exc:
        message = str(exc) if isinstance(exc, LossoptError) else f"{type(exc).__name__}: {exc}"
        print_error(message, what)
        raise SystemExit(2) from None


def _summary(rows: list[dict[str, Any]], config: DictConfig, console: Console) -> str:
    """Print the ranked table (one per task when the sweep spans several: each ranked
    by its own monitored metric); return it as markdown for the parent run."""
    from lossopt.core.train import monitor_of

    monitor, mode = monitor_of(config)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:  # result files of older sweeps carry no task: the sweep's
        key = (
            row.get("data", config.data.name),
            row.get("monitor", monitor),
            row.get("mode", mode),
        )
        groups.setdefault(key, []).append(row)
    lines: list[str] = []
    for (data, group_monitor, group_mode), group in groups.items():
        title = f"{len(group)} jobs, ranked by {group_monitor} ({group_mode})"
        title = f"sweep summary: {title}" if len(groups) == 1 else f"{data}: {title}"
        if len(groups) > 1:
            lines.append(f"\n### {title}\n")
        table, markdown = _ranked(group, group_monitor, group_mode, title)
        console.print(table)
        lines += markdown
    failed = [r for r in rows if r["status"] == "failed"]
    for row in failed:
        lines.append(f"\n- job {row['job']} ({' '.join(row['overrides'])}): {row['error']}")
    for row in failed:
        print_error(row["error"], f"job {row['job']} failed ({' '.join(row['overrides'])})")
    return "\n".join(lines) + "\n"


def _ranked(
    rows: list[dict[str, Any]], monitor: str, mode: str, title: str
) -> tuple[Table, list[str]]:
    """Jobs ranked by ``monitor`` (failed ones last): a table and its markdown lines."""
    done = [r for r in rows if r["status"] in ("finished", "skipped")]
    done.sort(key=lambda r: r["objective"], reverse=mode == "max")
    failed = [r for r in rows if r["status"] == "failed"]
    columns = ("rank", "loss", "optimizer", "lr", "seed", monitor, "status", "run")
    # Readable at 80 columns: no borders, one space between cells; only long plugin
    # names fold, never a number or a status.
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for column in ("#", *columns[1:]):
        right = column in ("#", "lr", "seed", monitor)
        wraps = column in ("loss", "optimizer")
        table.add_column(
            column, justify="right" if right else "left", no_wrap=not wraps, overflow="fold"
        )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for rank, row in enumerate(done + failed, start=1):
        score = row.get("objective")
        cells = (
            str(rank) if row in done else "-",
            row["loss"],
            row["optimizer"],
            f"{row['lr']:g}" if isinstance(row["lr"], float) else str(row["lr"]),
            str(row["seed"]),
            f"{score:.4f}" if isinstance(score, float) and math.isfinite(score) else "-",
            row["status"],
            str(row.get("run_id") or "-")[:8],
        )
        table.add_row(*cells, style="red" if row in failed else None)
        lines.append("| " + " | ".join(cells) + " |")
    return table, lines
