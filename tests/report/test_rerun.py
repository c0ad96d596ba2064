"""``lossopt report --rerun-best N``: the DeepOBS protocol, end to end."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lossopt.core.cli", *args]
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_rerun_best_is_a_second_stage_under_the_sweep_and_the_report_comes_from_it(tmp_path):
    from mlflow import MlflowClient

    grid = _cli(
        "train", "-m", "data=iris", "loss=cross_entropy,mse", "optimizer=adam",
        "optimizer.lr=0.0003,0.03", "trainer.max_epochs=2", cwd=tmp_path,
    )  # fmt: skip
    assert grid.returncode == 0, grid.stderr
    done = _cli("report", "--rerun-best", "2", "--out", "report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lossopt").experiment_id
    sweeps = client.search_runs([exp], "tags.`lossopt.sweep` = 'true'")
    first, second = sorted(sweeps, key=lambda r: r.info.start_time)
    assert second.data.tags["mlflow.parentRunId"] == first.info.run_id
    assert second.data.tags["lossopt.stage"] == "rerun_best"
    assert first.data.tags["lossopt.rerun_best"] == second.info.run_id

    best_lr = {r["loss"]: r["best_lr"] for r in _rows(tmp_path / "report" / "summary.csv")}
    jobs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{second.info.run_id}'")
    assert sorted((j.data.params["loss.name"], j.data.params["seed"]) for j in jobs) == [
        ("cross_entropy", "0"), ("cross_entropy", "1"), ("mse", "0"), ("mse", "1"),
    ]  # fmt: skip
    for job in jobs:
        assert float(job.data.params["optimizer.lr"]) == float(
            best_lr[job.data.params["loss.name"]]
        )
        assert job.data.params["trainer.max_epochs"] == "2"  # stage one's other settings
    second_report = _rows(tmp_path / "report" / "rerun_best" / "summary.csv")
    assert {r["seeds"] for r in second_report} == {"2"} and len(second_report) == 2
    assert second.info.run_id in done.stdout.split("Attached to run")[-1]
    # Stage one's report still counts its own 4 jobs, not the second stage's parent.
    again = _cli("report", "--sweep", first.info.run_id, "--out", "again", cwd=tmp_path)
    assert (
        again.returncode == 0
        and "4 jobs, 0 without a result" in (tmp_path / "again" / "summary.md").read_text()
    )
