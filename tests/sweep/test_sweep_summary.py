"""The end-of-sweep summary: ranked per task when a sweep spans several."""

from __future__ import annotations

import io

from rich.console import Console

from lossopt.core.composition import compose
from lossopt.core.sweep.callback import _summary


def _row(job: int, data: str, monitor: str, mode: str, objective: float) -> dict:
    return {
        "job": job, "data": data, "monitor": monitor, "mode": mode, "loss": "mse",
        "optimizer": "adam", "lr": 0.01 * (job + 1), "seed": 0, "overrides": [],
        "status": "finished", "objective": objective, "run_id": f"run{job}",
    }  # fmt: skip


def test_a_sweep_over_tasks_ranks_each_task_by_its_own_metric():
    rows = [
        _row(0, "iris", "val/accuracy", "max", 0.90),
        _row(1, "linnerud", "val/mse", "min", 3.0),
        _row(2, "iris", "val/accuracy", "max", 0.95),
        _row(3, "linnerud", "val/mse", "min", 0.8),
    ]
    out = io.StringIO()
    markdown = _summary(rows, compose([]), Console(file=out, width=80))
    printed = out.getvalue()
    assert "iris: 2 jobs, ranked by val/accuracy (max)" in printed
    assert "linnerud: 2 jobs, ranked by val/mse (min)" in printed
    # Higher accuracy first on iris, lower MSE first on linnerud.
    assert printed.index("0.9500") < printed.index("0.9000")
    assert printed.index("0.8000") < printed.index("3.0000")
    assert markdown.count("| rank |") == 2


def test_a_sweep_of_one_task_keeps_one_table():
    rows = [_row(0, "digits", "val/accuracy", "max", 0.9)]
    out = io.StringIO()
    _summary(rows, compose([]), Console(file=out, width=80))
    assert "sweep summary: 1 jobs, ranked by val/accuracy (max)" in out.getvalue()
