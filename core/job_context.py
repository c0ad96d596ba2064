"""What a job knows of the sweep that started it, handed over through the environment.

Before any job starts, the sweep's callback (``core.sweep.callback``) creates the
parent run and sets these variables; every launcher passes the environment on (the
vectorized launcher's workers, joblib's processes, submitit's cluster jobs), so a job
learns its sweep the same way wherever it runs. Outside a sweep none is set.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AXES_ENV", "PARENT_ENV", "RESULTS_ENV", "RESUME_ENV", "job_context", "resume_dir"]

PARENT_ENV = "LOSSOPT_PARENT_RUN_ID"  # the sweep's MLflow parent run
RESULTS_ENV = "LOSSOPT_SWEEP_RESULTS"  # the folder of the jobs' result files
RESUME_ENV = "LOSSOPT_RESUME_DIR"  # where stacks keep their state between epochs
AXES_ENV = "LOSSOPT_SWEEP_AXES"  # the sweep's axes (config keys), comma-separated


def job_context() -> tuple[str | None, Path | None]:
    """(parent run id, results folder) when running as a job of a sweep."""
    results = os.environ.get(RESULTS_ENV)
    return os.environ.get(PARENT_ENV) or None, Path(results) if results else None


def resume_dir() -> Path | None:
    """Where this sweep's stacks keep their state between epochs (None outside a
    tracked sweep: nothing could find it again)."""
    folder = os.environ.get(RESUME_ENV)
    return Path(folder) if folder else None
