"""``lossopt report`` on a sweep across three tasks, in a real SQLite MLflow store.

iris and wine are classification (``val/accuracy``, higher is better), linnerud is
regression (``val/mse``, lower is better), as a ``monitor: auto`` sweep records them:
the parent says val/accuracy, each job logs ``best_`` of its own monitor. Results at
the best lr (means over 3 seeds, ±0.02 around them); the other lr is 0.3 worse:

    iris:     ce+adam 0.92, ce+sgd 0.91, mse+adam 0.72, mse+sgd 0.46
    wine:     ce+adam 0.80, ce+sgd 0.96, mse+adam 0.48, mse+sgd 0.90
    linnerud: mse+adam 0.50, mse+sgd 0.60, l1+adam 0.54, l1+sgd 1.00

Each job's validation value over 4 epochs is value × (0.625, 0.75, 0.875, 1) (value ×
(1.375, 1.25, 1.125, 1) for MSE), epoch e logged e seconds after the job started.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import time

import pytest

from lossopt.core.report.comparison import write_report

MEANS = {
    "iris": {("cross_entropy", "adam"): 0.92, ("cross_entropy", "sgd"): 0.91,
             ("mse", "adam"): 0.72, ("mse", "sgd"): 0.46},
    "wine": {("cross_entropy", "adam"): 0.80, ("cross_entropy", "sgd"): 0.96,
             ("mse", "adam"): 0.48, ("mse", "sgd"): 0.90},
    "linnerud": {("mse", "adam"): 0.50, ("mse", "sgd"): 0.60,
                 ("l1", "adam"): 0.54, ("l1", "sgd"): 1.00},
}  # fmt: skip
BEST_LR, OTHER_LR = 0.01, 0.1
SEEDS = {0: -0.02, 1: 0.0, 2: 0.02}


def _job(client, exp_id, parent, task, loss, optimizer, lr, seed, start):
    from mlflow.entities import Metric, Param

    regression = task == "linnerud"
    monitor = "val/mse" if regression else "val/accuracy"
    mean = MEANS[task][loss, optimizer]
    if lr == OTHER_LR:
        mean = mean + 0.3 if regression else mean - 0.3
    value = mean + SEEDS[seed]
    tags = {"mlflow.parentRunId": parent, "lossopt.fingerprint": f"{parent}{start}"}
    name = f"{loss}-{optimizer}-lr{lr:g}-s{seed}"
    run = client.create_run(exp_id, start_time=start, tags=tags, run_name=name)
    params = {"loss.name": loss, "optimizer.name": optimizer, "optimizer.lr": lr, "seed": seed}
    params |= {"data.name": task, "monitor": "auto", "monitor_mode": "auto"}
    metrics = [Metric(f"best_{monitor}", value, start + 5000, 0)]
    for epoch in range(1, 5):
        factor = 1 + 0.125 * (4 - epoch) if regression else 0.5 + 0.125 * epoch
        metrics.append(Metric(monitor, value * factor, start + 1000 * epoch, 10 * epoch - 1))
    client.log_batch(
        run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()]
    )
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("tasks")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("lossopt", artifact_location=(root / "mlruns").as_uri())
    tags = {
        "lossopt.sweep": "true",
        "lossopt.sweep_id": "suite",
        "lossopt.monitor": "val/accuracy",
        "lossopt.monitor_mode": "max",
    }
    now = int(time.time() * 1000)
    parent = client.create_run(exp_id, start_time=now, tags=tags, run_name="suite").info.run_id
    start = now
    for task, pairs in MEANS.items():
        for loss, optimizer in pairs:
            for lr in (BEST_LR, OTHER_LR):
                for seed in SEEDS:
                    start += 10_000
                    _job(client, exp_id, parent, task, loss, optimizer, lr, seed, start)
    result = write_report(uri, out=root / "report")
    return result, client, uri, root


def _csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_each_task_is_ranked_by_its_own_monitor(report):
    result, *_ = report
    tasks = {t.name: t for t in result.tasks}
    assert list(tasks) == ["iris", "linnerud", "wine"]
    assert (tasks["linnerud"].monitor, tasks["linnerud"].mode) == ("val/mse", "min")
    assert (tasks["iris"].monitor, tasks["iris"].mode) == ("val/accuracy", "max")
    ranked = [(r.loss, r.optimizer) for r in tasks["linnerud"].rows]
    assert ranked == [("mse", "adam"), ("l1", "adam"), ("mse", "sgd"), ("l1", "sgd")]
    assert [r.best.lr for r in tasks["wine"].rows] == [BEST_LR] * 4
    assert tasks["wine"].rows[0].best.mean == pytest.approx(0.96)
    assert result.failures == []


def test_ties_are_marked_where_seeds_cannot_tell_pairs_apart(report):
    result, *_ = report
    iris = next(t for t in result.tasks if t.name == "iris")
    assert [(r.loss, r.optimizer, r.tied) for r in iris.rows] == [
        ("cross_entropy", "adam", False),  # the best itself
        ("cross_entropy", "sgd", True),  # 0.01 behind, seeds ±0.02
        ("mse", "adam", False),
        ("mse", "sgd", False),
    ]
    low, high = iris.rows[1].diff_ci
    assert low < -0.01 < 0 < high
    assert "| 2= | cross_entropy | sgd |" in result.files["summary.md"].read_text()


def test_performance_profiles_match_the_ratios_by_hand(report):
    result, *_ = report
    by_hand = {
        ("cross_entropy", "adam"): {"iris": 1.0, "wine": 0.96 / 0.80},
        ("cross_entropy", "sgd"): {"iris": 0.92 / 0.91, "wine": 1.0},
        ("mse", "adam"): {"iris": 0.92 / 0.72, "wine": 2.0, "linnerud": 1.0},
        ("mse", "sgd"): {"iris": 2.0, "wine": 0.96 / 0.90, "linnerud": 1.2},
        ("l1", "adam"): {"linnerud": 0.54 / 0.50},
        ("l1", "sgd"): {"linnerud": 2.0},
    }
    assert set(result.ratios) == set(by_hand)
    for pair, ratios in by_hand.items():
        assert result.ratios[pair] == pytest.approx(ratios), pair
    rows = {(r["loss"], r["optimizer"]): r for r in _csv(result.files["profiles.csv"])}
    rho_at_1_1 = {  # ratios <= 1.1 over the pair's tasks
        ("cross_entropy", "adam"): 1 / 2,
        ("cross_entropy", "sgd"): 2 / 2,
        ("mse", "adam"): 1 / 3,
        ("mse", "sgd"): 1 / 3,
        ("l1", "adam"): 1.0,
        ("l1", "sgd"): 0.0,
    }
    for pair, rho in rho_at_1_1.items():
        assert float(rows[pair]["rho_1.1"]) == pytest.approx(rho), pair
    assert rows["mse", "adam"]["tasks"] == "3" and float(rows["l1", "sgd"]["rho_1"]) == 0.0


def test_budget_curves_and_time_to_target(report):
    result, *_ = report
    budget = {
        (r["task"], r["loss"], r["optimizer"], r["k"]): float(r["expected_best"])
        for r in _csv(result.files["budget.csv"])
    }
    assert budget["iris", "cross_entropy", "adam", "1"] == pytest.approx((0.92 + 0.62) / 2)
    assert budget["iris", "cross_entropy", "adam", "2"] == pytest.approx(0.92)
    assert budget["linnerud", "mse", "adam", "1"] == pytest.approx((0.50 + 0.80) / 2)
    assert budget["linnerud", "mse", "adam", "2"] == pytest.approx(0.50)
    timing = {
        (r["task"], r["loss"], r["optimizer"]): r for r in _csv(result.files["time_to_target.csv"])
    }  # noqa: E501
    iris = timing["iris", "cross_entropy", "sgd"]  # target 0.95 × 0.92: only the last epoch
    assert float(iris["target"]) == pytest.approx(0.874)
    assert (iris["reached"], float(iris["median_epochs"]), float(iris["median_seconds"])) == (
        "3", 4.0, 4.0,
    )  # fmt: skip
    assert timing["iris", "mse", "adam"]["reached"] == "0"
    linnerud = timing["linnerud", "mse", "adam"]  # MSE ≤ 0.50 / 0.95
    assert float(linnerud["target"]) == pytest.approx(0.50 / 0.95)
    assert (linnerud["reached"], float(linnerud["median_epochs"])) == ("3", 4.0)
    assert math.isclose(float(timing["wine", "cross_entropy", "sgd"]["median_epochs"]), 4.0)


def test_files_are_written_attached_and_real_images(report):
    import matplotlib.image

    result, client, *_ = report
    expected = {
        "summary.md", "summary.csv", "by_lr.csv", "lr_sensitivity.png", "curves.png",
        "profiles.png", "profiles.csv", "budget.png", "budget.csv", "time_to_target.csv",
    }  # fmt: skip
    assert set(result.files) == expected
    attached = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert attached == {f"report/{name}" for name in expected}
    for name in expected:
        if name.endswith(".png"):
            image = matplotlib.image.imread(result.files[name])
            assert image.shape[0] >= 400 and image[..., :3].std() > 0.05, name
    markdown = result.files["summary.md"].read_text()
    assert "### linnerud" in markdown and "## Across tasks: performance profiles" in markdown
    summary = _csv(result.files["summary.csv"])
    assert {r["task"] for r in summary} == {"iris", "wine", "linnerud"} and len(summary) == 12


def test_cli_prints_each_task_and_the_profiles(report, tmp_path):
    _, _, uri, _ = report
    result = subprocess.run(
        [sys.executable, "-m", "lossopt.core.cli", "report", "--uri", uri, "--out", str(tmp_path),
         "--target-fraction", "0.5"],
        capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "linnerud: best val/mse (lower is better)" in out and "Performance profiles" in out
    assert "2=" in out
    timing = {
        (r["task"], r["loss"], r["optimizer"]): r for r in _csv(tmp_path / "time_to_target.csv")
    }  # noqa: E501
    assert timing["iris", "mse", "adam"]["reached"] == "3"  # 0.72 ≥ 0.5 × 0.92 early on
    assert float(timing["iris", "mse", "adam"]["median_epochs"]) == 2.0  # seeds: 2, 2, 1
