"""Nothing lost, nothing left RUNNING: a sweep killed (SIGKILL) at each moment of its
life, re-run after each kill, ends with the record of a sweep that never stopped; two
sweeps started together on one store both end whole, each under its own parent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

# 4 jobs that stack (cross_entropy, focal × sgd, adamw) and 2 that run alone (lbfgs).
SWEEP = [
    "loss=cross_entropy,focal",
    "optimizer=sgd,adamw,lbfgs",
    "optimizer.lr=0.05",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "checkpoint_every_s=0",
]
# Each moment a sweep can die in (core/_kill_points.py), in the order a sweep reaches
# them across the re-runs: each kill leaves the store in a state the next run resumes.
KILLS = [
    "sweep-start",  # composed, no parent yet
    "parent-created",  # the parent exists, without its axes
    "stack-trained",  # the stack trained, no member recorded
    "member-recording:2",  # one member FINISHED, the next one's run RUNNING, empty
    "run-ending:1",  # that member's record written, its run still RUNNING
    "job-training:1",  # the stack recorded; a job alone has its run, RUNNING
    "summary",  # every job FINISHED, the parent RUNNING
]


def _lossopt(cwd: Path, *args: str, kill_at: str | None = None, **env: str):
    environment = {k: v for k, v in os.environ.items() if k != "LOSSOPT_KILL_AT"}
    environment.update(COLUMNS="200", **env)
    if kill_at:
        environment["LOSSOPT_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "lossopt.core.cli", "train", "-m", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=environment, timeout=600
    )


def _record(cwd: Path, experiment: str = "lossopt") -> dict:
    """The store's record, checked to be whole: one parent per sweep, FINISHED; every
    job one FINISHED run nested under it. Returns {sweep: {fingerprint: (metrics,
    {metric: history length})}}."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    assert [r.info.status for r in runs if r.info.status != "FINISHED"] == []
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("lossopt.sweep") == "true"}
    children = [r for r in runs if r.info.run_id not in parents]
    assert all(r.data.tags.get("mlflow.parentRunId") in parents for r in children)
    sweeps = Counter(p.data.tags["lossopt.sweep_id"] for p in parents.values())
    assert max(sweeps.values()) == 1, "a sweep with two parents"
    record: dict = {}
    for child in children:
        sweep = parents[child.data.tags["mlflow.parentRunId"]].data.tags["lossopt.sweep_id"]
        jobs = record.setdefault(sweep, {})
        key = child.data.tags["lossopt.fingerprint"]
        assert key not in jobs, f"job {child.info.run_name} recorded twice"
        lengths = {m: _history(client, child.info.run_id, m) for m in child.data.metrics}
        jobs[key] = (child.data.metrics, lengths)
    return record


def _history(client: MlflowClient, run_id: str, metric: str) -> int | set:
    """How many values ``metric`` has; for ``epoch``, which steps. Lightning logs
    ``epoch`` with every logging call, several at one step, and MLflow keeps one of
    those that fall in the same millisecond: their count depends on timing."""
    history = client.get_metric_history(run_id, metric)
    return {m.step for m in history} if metric == "epoch" else len(history)


def _same(whole: dict, resumed: dict) -> None:
    assert resumed.keys() == whole.keys()
    for sweep, jobs in whole.items():
        assert resumed[sweep].keys() == jobs.keys()
        for key, (metrics, lengths) in jobs.items():
            again, again_lengths = resumed[sweep][key]
            assert again_lengths == lengths  # the whole per-epoch history, once
            assert again.keys() == metrics.keys()
            for name, value in metrics.items():
                assert again[name] == pytest.approx(value, abs=1e-5), name


@pytest.mark.slow
def test_a_sweep_killed_at_every_moment_and_re_run_ends_as_if_never_stopped(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    done = _lossopt(whole, *SWEEP)
    assert done.returncode == 0, done.stderr[-3000:]

    for moment in KILLS:
        died = _lossopt(killed, *SWEEP, kill_at=moment)
        assert died.returncode == -signal.SIGKILL, f"{moment}: {died.stdout[-2000:]}"
    finished = _lossopt(killed, *SWEEP)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "skip" in finished.stdout  # the last kill left only the summary to do
    _same(_record(whole), _record(killed))
    assert not list(killed.glob("multirun/*/*/.lossopt-resume/*"))  # nothing left behind


def _two_sweeps(cwd: Path, seeds: tuple[str, str]) -> list[subprocess.CompletedProcess]:
    commands = [
        ["loss=cross_entropy,focal", "optimizer=sgd,adam", f"seed={seeds[0]}"],
        ["loss=nll,mse", "optimizer=adamw,rmsprop", f"seed={seeds[1]}"],
    ]
    common = ["optimizer.lr=0.01", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    environment = {**os.environ, "COLUMNS": "200"}
    started = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lossopt.core.cli",
                "train",
                "-m",
                *args,
                *common,
                f"hydra.sweep.dir=multirun/sweep{n}-{seeds[n]}",
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )  # fmt: skip
        for n, args in enumerate(commands)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(600), *p.communicate()) for p in started]


@pytest.mark.slow
def test_two_sweeps_started_together_on_a_fresh_store_and_on_one_in_use_both_end_whole(
    tmp_path,
):
    for seeds, sweeps in ((("0", "1"), 2), (("2", "3"), 4)):  # a fresh store, then in use
        for done in _two_sweeps(tmp_path, seeds):
            assert done.returncode == 0, done.stderr[-3000:]
            assert "Callback SweepCallback" not in done.stderr, done.stderr[-3000:]
        record = _record(tmp_path)
        assert len(record) == sweeps and all(len(jobs) == 4 for jobs in record.values())


@pytest.mark.slow
def test_a_store_locked_past_the_bound_stops_the_sweep_before_any_job(tmp_path):
    from lossopt.core.store import open_client

    path = tmp_path / "mlflow.db"
    open_client(f"sqlite:///{path}")  # the store exists, its schema too
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and writing on
    try:
        stopped = _lossopt(tmp_path, *SWEEP[:2], LOSSOPT_STORE_WAIT_S="2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert stopped.returncode == 2, stopped.stdout[-2000:] + stopped.stderr[-2000:]
    assert "stayed locked for 2 s" in stopped.stderr and "no job has run" in stopped.stderr
    assert "job 0" not in stopped.stdout
    client = MlflowClient(f"sqlite:///{path}")
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
