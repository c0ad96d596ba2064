"""Sweeps end to end: `lossopt train -m` with MLflow parent/child runs, failures,
resume, parallel jobs, and the report on a real sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

SHORT = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def _lossopt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lossopt.core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,  # a hung DDP rank must fail the test, not stall CI
        env={**os.environ, "COLUMNS": "200"},
    )


def _runs(cwd: Path) -> tuple[MlflowClient, list, list]:
    """(client, parent runs, child runs) of the default experiment."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lossopt")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("lossopt.sweep") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


@pytest.fixture(scope="module")
def sweep_2x2x2(tmp_path_factory) -> tuple[Path, list[str]]:
    cwd = tmp_path_factory.mktemp("sweep")
    args = ["loss=cross_entropy,focal", "optimizer=sgd,adamw", "optimizer.lr=0.001,0.01"]
    result = _lossopt("train", "-m", *args, *SHORT, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, args


def test_sweep_records_one_parent_and_a_finished_child_per_job(sweep_2x2x2):
    cwd, _ = sweep_2x2x2
    client, parents, children = _runs(cwd)
    assert len(parents) == 1 and len(children) == 8
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    combos = {
        (c.data.params["loss.name"], c.data.params["optimizer.name"], c.data.params["optimizer.lr"])
        for c in children
    }
    assert len(combos) == 8
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.md", "summary.json"} <= artifacts
    summary = client.download_artifacts(parent.info.run_id, "summary.md", str(cwd))
    assert Path(summary).read_text().count("| finished |") == 8


def test_rerunning_the_same_sweep_skips_finished_jobs_and_reuses_the_parent(sweep_2x2x2):
    cwd, args = sweep_2x2x2
    result = _lossopt("train", "-m", *args, *SHORT, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("already FINISHED") == 8
    _, parents, children = _runs(cwd)
    assert len(parents) == 1 and len(children) == 8


def test_report_on_a_real_sweep_writes_table_and_plots(sweep_2x2x2):
    cwd, _ = sweep_2x2x2
    result = _lossopt("report", "--sweep", "latest", "--out", "report", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cross_entropy" in result.stdout and "adamw" in result.stdout
    out = cwd / "report"
    table = (out / "summary.md").read_text()
    assert table.count("| cross_entropy") + table.count("| focal") >= 4
    for image in ("lr_sensitivity.png", "curves.png"):
        pixels = imread(out / image)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500 and pixels.std() > 0.01


def test_a_failing_job_is_recorded_the_others_finish_and_the_exit_status_says_so(tmp_path):
    args = ["optimizer=sgd", "optimizer.lr=0.01,1e30"]
    result = _lossopt("train", "-m", *args, *SHORT, cwd=tmp_path)
    assert result.returncode == 1  # kept by the quick exit (cli.entry)
    assert "1 of 2 jobs failed" in result.stderr
    # The database file alone holds the whole record (nothing left in SQLite's log).
    # Copied before this process connects: closing any file handle on it would drop
    # the locks of this process's connection (POSIX), so SQLite could no longer tell
    # that it is open here.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "mlflow.db").write_bytes((tmp_path / "mlflow.db").read_bytes())
    assert sorted(c.info.status for c in _runs(copy)[2]) == ["FAILED", "FINISHED"]
    client, parents, children = _runs(tmp_path)
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "diverged" in failed.data.tags["lossopt.error"]
    assert parents[0].info.status == "FAILED"

    again = _lossopt("train", "-m", *args, *SHORT, cwd=tmp_path)
    assert again.returncode != 0
    assert again.stdout.count("already FINISHED") == 1  # the failed job runs again
    _, _, children = _runs(tmp_path)
    assert sorted(c.info.status for c in children) == ["FAILED", "FAILED", "FINISHED"]


def test_four_parallel_jobs_on_a_fresh_store_all_complete(tmp_path):
    args = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "seed=0,1,2,3"]
    result = _lossopt("train", "-m", *args, *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "database is locked" not in output and "Traceback" not in output
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4


def test_ddp_inside_a_sweep_runs_each_job_once_on_every_rank(tmp_path):
    # DDP on CPU (gloo): the same code path as on GPUs, testable without one.
    args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "seed=0,1"]
    result = _lossopt("train", "-m", *args, *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1  # worker processes create no runs of their own
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 2
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    # 2 ranks share each epoch: 10 steps instead of the 20 of one device on digits.
    checkpoints = sorted(p.name for p in sweep_dir.glob("*/checkpoints/*.ckpt"))
    assert checkpoints == ["epoch=0-step=10.ckpt"] * 2
    assert sorted(p.name for p in sweep_dir.iterdir() if not p.name.startswith(".")) == [
        "0",
        "1",
        "multirun.yaml",
    ]
    assert not (tmp_path / "outputs").exists()  # no stray single-run folders
