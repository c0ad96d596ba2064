"""``lossopt report`` on a real SQLite MLflow store laid out as sweeps write it.

The store holds two sweeps of one experiment. The newest crosses 2 losses × 2
optimizers × 3 learning rates × 2 seeds, with adamw best at the middle lr and sgd best
at the largest, focal a little behind cross_entropy, and one FAILED job. The older
one has a single lr and a single seed per pair.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import time

import pytest

from lossopt.core.cli import main
from lossopt.core.report.comparison import write_report

LRS = (0.001, 0.01, 0.1)
BASE = {  # best val/accuracy by optimizer and lr, before the loss and seed offsets
    "adamw": {0.001: 0.85, 0.01: 0.95, 0.1: 0.70},
    "sgd": {0.001: 0.60, 0.01: 0.80, 0.1: 0.90},
}
LOSS_OFFSET = {"cross_entropy": 0.0, "focal": -0.03}
SEED_OFFSET = {0: -0.01, 1: 0.01}
EPOCHS = 5


def _objective(loss: str, optimizer: str, lr: float, seed: int) -> float:
    return BASE[optimizer][lr] + LOSS_OFFSET[loss] + SEED_OFFSET[seed]


def _child(
    client, exp_id, parent_id, loss, optimizer, lr, seed, start, best=None, error=None,
    fingerprint=None,
):  # fmt: skip
    """A job as tracked_run + Lightning log it: params, per-epoch metrics, best_<monitor>."""
    from mlflow.entities import Metric, Param

    fingerprint = fingerprint or f"{parent_id}{start}"
    tags = {"mlflow.parentRunId": parent_id, "lossopt.fingerprint": fingerprint}
    if error:
        tags["lossopt.error"] = error
    name = f"{loss}-{optimizer}-lr{lr:g}-s{seed}"
    run = client.create_run(exp_id, start_time=start, tags=tags, run_name=name)
    params = {"loss.name": loss, "optimizer.name": optimizer, "optimizer.lr": lr, "seed": seed}
    params |= {"data.name": "digits", "model.name": "mlp", "scheduler.name": "none"}
    metrics = []
    if best is not None:  # rises to `best` at the last epoch; step = global step
        for epoch in range(EPOCHS):
            step, value = 10 * (epoch + 1) - 1, best * (0.6 + 0.4 * epoch / (EPOCHS - 1))
            metrics += [Metric("val/accuracy", value, start + epoch, step)]
            metrics += [Metric("val/loss", 2.0 - value, start + epoch, step)]
        metrics += [Metric("best_val/accuracy", best, start + EPOCHS, 0)]
        metrics += [Metric("test/accuracy", best - 0.01, start + EPOCHS, 0)]
    client.log_batch(
        run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()]
    )
    client.set_terminated(run.info.run_id, "FAILED" if error else "FINISHED")
    return run.info.run_id


def _sweep(client, exp_id, name, start, sweep_id=None):
    tags = {
        "lossopt.sweep": "true",
        "lossopt.sweep_id": sweep_id or f"id-{name}",
        "lossopt.monitor": "val/accuracy",
        "lossopt.monitor_mode": "max",
    }
    return client.create_run(exp_id, start_time=start, tags=tags, run_name=name).info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("lossopt", artifact_location=(root / "mlruns").as_uri())
    client.create_experiment("other")
    now = int(time.time() * 1000)
    old = _sweep(client, exp_id, "sweep-old", now - 3_600_000)
    for i, (loss, optimizer) in enumerate([("cross_entropy", "sgd"), ("focal", "adamw")]):
        best = _objective(loss, optimizer, 0.01, 0)
        _child(client, exp_id, old, loss, optimizer, 0.01, 0, now - 3_500_000 + i, best)
    new = _sweep(client, exp_id, "sweep-new", now)
    start, children = now + 1000, []
    for loss in LOSS_OFFSET:
        for optimizer in BASE:
            for lr in LRS:
                for seed in SEED_OFFSET:
                    best = _objective(loss, optimizer, lr, seed)
                    start += 100
                    children.append(
                        _child(client, exp_id, new, loss, optimizer, lr, seed, start, best)
                    )
    error = "RuntimeError: loss is NaN | diverged at epoch 2"
    failed = _child(client, exp_id, new, "focal", "sgd", 0.1, 7, start + 100, error=error)
    single = client.create_run(exp_id, run_name="single").info.run_id
    client.set_terminated(single)
    return {
        "uri": uri, "root": root, "client": client, "old": old, "new": new,
        "child": children[0], "failed": failed, "single": single,
    }  # fmt: skip


@pytest.fixture(scope="module")
def report(store):
    return write_report(store["uri"], out=store["root"] / "report")


def test_ranking_and_best_lr_follow_the_data(report, store):
    ranked = [(r.loss, r.optimizer, r.best.lr) for r in report.rows]
    assert ranked == [
        ("cross_entropy", "adamw", 0.01),  # 0.95
        ("focal", "adamw", 0.01),  # 0.92
        ("cross_entropy", "sgd", 0.1),  # 0.90
        ("focal", "sgd", 0.1),  # 0.87
    ]
    assert [r.rank for r in report.rows] == [1, 2, 3, 4]
    assert report.parent_run_id == store["new"]
    assert (report.monitor, report.mode) == ("val/accuracy", "max")


def test_mean_and_std_are_over_seeds_at_the_best_lr(report):
    top = report.rows[0].best
    values = [_objective("cross_entropy", "adamw", 0.01, s) for s in SEED_OFFSET]
    assert top.mean == pytest.approx(statistics.fmean(values))
    assert top.std == pytest.approx(statistics.stdev(values))
    assert top.n == 2
    assert len(report.cells) == 12 and all(c.n == 2 for c in report.cells)


def test_failed_job_is_counted_and_listed_with_config_and_error(report, store):
    assert [r.failed for r in report.rows] == [0, 0, 0, 1]
    assert [j.run_id for j in report.failures] == [store["failed"]]
    markdown = report.files["summary.md"].read_text()
    failed_section = markdown.split("## Failed jobs")[1]
    assert "focal-sgd-lr0.1-s7" in failed_section and "FAILED" in failed_section
    assert "RuntimeError: loss is NaN \\| diverged" in failed_section  # escaped for tables
    assert "| 1 | cross_entropy | adamw | 0.01 | 0.9500 ± 0.0141 | 2 | 0 |" in markdown


def test_csv_files_hold_the_ranking_and_every_cell(report):
    with open(report.files["summary.csv"]) as f:
        summary = list(csv.DictReader(f))
    assert [(r["loss"], r["optimizer"], float(r["best_lr"])) for r in summary][0] == (
        "cross_entropy",
        "adamw",
        0.01,
    )
    assert float(summary[3]["mean"]) == pytest.approx(0.87) and summary[3]["failed"] == "1"
    with open(report.files["by_lr.csv"]) as f:
        by_lr = list(csv.DictReader(f))
    assert len(by_lr) == 12
    cell = next(
        r for r in by_lr if (r["loss"], r["optimizer"], r["lr"]) == ("focal", "sgd", "0.001")
    )
    assert float(cell["mean"]) == pytest.approx(0.57) and cell["n"] == "2"


@pytest.mark.parametrize("name", ["lr_sensitivity.png", "curves.png"])
def test_plots_are_real_images(report, name):
    import matplotlib.image

    image = matplotlib.image.imread(report.files[name])
    height, width, channels = image.shape
    assert height >= 400 and width >= 700 and channels in (3, 4)
    assert image[..., :3].std() > 0.05  # drawn on, not a blank canvas


def test_files_are_attached_to_the_parent_run(report, store):
    attached = {a.path for a in store["client"].list_artifacts(store["new"], "report")}
    expected = {"summary.md", "summary.csv", "by_lr.csv", "lr_sensitivity.png", "curves.png"}
    assert attached == {f"report/{name}" for name in expected}
    assert set(report.files) == expected and report.attach_error is None


def test_explicit_sweep_with_one_lr_and_one_seed(store, tmp_path):
    old = write_report(store["uri"], sweep=store["old"], out=tmp_path)
    assert [(r.loss, r.optimizer, r.best.n, r.best.std) for r in old.rows] == [
        ("focal", "adamw", 1, None),
        ("cross_entropy", "sgd", 1, None),
    ]
    assert (
        "| 1 | focal | adamw | 0.01 | 0.9100 ± — | 1 | 0 |" in (tmp_path / "summary.md").read_text()
    )
    assert (tmp_path / "lr_sensitivity.png").stat().st_size > 10_000


def test_cli_prints_the_table_and_writes_to_the_default_folder(store, tmp_path):
    env = dict(os.environ, COLUMNS="200")
    result = subprocess.run(
        [sys.executable, "-m", "lossopt.core.cli", "report", "--uri", store["uri"]],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sweep-new" in out and "cross_entropy" in out and "0.9500 ± 0.0141" in out
    assert "focal-sgd-lr0.1-s7" in out and "loss is NaN" in out
    assert (tmp_path / "reports" / "sweep-new" / "summary.md").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--experiment", "other"], "has no sweep"),
        (["--sweep", "0123456789abcdef"], "no run with id '0123456789abcdef'"),
        (["--sweep", "<child>"], "is a job, not a sweep"),
        (["--sweep", "<single>"], "is a single run, not a sweep"),
    ],
)
def test_cli_errors_are_one_clear_message(store, tmp_path, capsys, args, expected):
    args = [a.replace("<child>", store["child"]).replace("<single>", store["single"]) for a in args]
    code = main(["report", "--uri", store["uri"], "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    if "job" in expected:
        assert f"--sweep {store['new']}" in err.replace("\n", "")


def test_missing_store_is_an_error_not_a_new_database(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["report", "--uri", uri]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_rerun_sweep_counts_a_job_once_by_its_finished_run(store, tmp_path):
    """A sweep run again (same sweep id, new parent) re-runs only its failed job: the
    report of the new parent covers the earlier jobs too and drops the old failure."""
    client = store["client"]
    exp_id = client.create_experiment("rerun", artifact_location=(tmp_path / "mlruns").as_uri())
    now = int(time.time() * 1000)
    first = _sweep(client, exp_id, "sweep-a", now, sweep_id="same")
    _child(client, exp_id, first, "focal", "sgd", 0.01, 0, now + 1, best=0.8, fingerprint="f1")
    _child(client, exp_id, first, "focal", "adamw", 0.01, 0, now + 2, error="OOM", fingerprint="f2")
    second = _sweep(client, exp_id, "sweep-b", now + 10, sweep_id="same")
    _child(client, exp_id, second, "focal", "adamw", 0.01, 0, now + 11, best=0.9, fingerprint="f2")
    report = write_report(store["uri"], experiment="rerun", out=tmp_path / "out")
    assert report.parent_run_id == second and report.failures == []
    summary = [(r.optimizer, r.best.mean, r.failed) for r in report.rows]
    assert summary == [("adamw", 0.9, 0), ("sgd", 0.8, 0)]
