"""The Optuna sweeper (``hydra/sweeper=optuna``): the search space read from sweep
overrides, failed jobs told as failed trials, and a study run end to end, its trials
trained in stacked batches and recorded as child runs of the sweep."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lossopt.core.composition import compose
from lossopt.core.errors import LossoptError
from lossopt.core.sweep.search import OptunaSearch, search_space

LOG_LR = "optimizer.lr=tag(log, interval(1e-4, 1))"


def test_sweep_overrides_become_distributions_and_the_rest_is_fixed():
    space = search_space(
        [LOG_LR, "loss=cross_entropy,focal", "seed=range(0,5,2)", "trainer.max_epochs=2",
         "+loss.gamma=choice(1,2)", "data.batch_size=16", "data.batch_size=32"]
    )  # fmt: skip
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
        "loss": CategoricalDistribution(["cross_entropy", "focal"]),
        "seed": IntDistribution(0, 4, step=2),  # range() excludes its stop
        "+loss.gamma": CategoricalDistribution([1, 2]),
    }
    overrides = space.overrides(
        {"optimizer.lr": 0.01, "loss": "focal", "seed": 4, "+loss.gamma": 2}
    )
    assert overrides == [
        "optimizer.lr=0.01", "loss=focal", "seed=4", "+loss.gamma=2",
        "trainer.max_epochs=2", "data.batch_size=32",  # the later override of a key wins
    ]  # fmt: skip


def test_a_value_optuna_cannot_search_is_refused_naming_it():
    with pytest.raises(LossoptError, match="optimizer.lr=tag"):
        search_space(["optimizer.lr=tag(log, 1e-3)"])  # tags a value, not a sweep
    with pytest.raises(LossoptError, match="loss=glob"):
        search_space(["loss=glob(*)"])  # a glob is read where Hydra lists the options


def test_wrong_settings_are_refused_naming_the_keys():
    with pytest.raises(LossoptError, match=r"n_trials=0.*sampler=cmaes"):
        OptunaSearch(n_trials=0, sampler="cmaes")
    assert OptunaSearch(n_trials=12).batch == 4  # a third of the trials per batch


def _job(status: JobStatus, value) -> JobReturn:
    job = JobReturn(status=status)
    job.return_value = value
    return job


def test_failed_jobs_are_told_as_failed_trials_not_as_values():
    search = OptunaSearch(n_trials=3)
    study = optuna.create_study(direction="maximize")
    jobs = [
        _job(JobStatus.COMPLETED, 0.75),
        _job(JobStatus.COMPLETED, float("nan")),  # a sweep job that failed returns NaN
        _job(JobStatus.FAILED, RuntimeError("the job raised")),
    ]
    for number, job in enumerate(jobs):
        search._tell(study, study.ask(), job, number)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "FAIL"]
    assert study.best_value == 0.75 and study.trials[1].value is None


def test_a_stored_study_must_go_the_monitors_way(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=storage, study_name="s", direction="minimize")
    search = OptunaSearch(storage=storage, study_name="s")
    search.config = _config(["monitor=val/accuracy"])
    with pytest.raises(LossoptError, match="minimize.*maximize"):
        search._study("maximize")
    assert search._study("minimize").study_name == "s"


def _config(overrides: list[str]):
    return compose(overrides, with_hydra=True)


def test_the_sweeper_config_composes_with_its_defaults():
    sweeper = _config(["hydra/sweeper=optuna", "hydra.sweeper.n_trials=12"]).hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.lossopt_optuna.OptunaSweeper"
    assert sweeper.n_trials == 12 and sweeper.n_jobs is None and sweeper.storage is None


@pytest.mark.slow
def test_a_study_of_12_trials_trains_stacked_batches_and_records_child_runs(tmp_path, lossopt_cli):
    args = [
        "train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=12",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
        LOG_LR, "loss=cross_entropy,focal",
        "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    result = lossopt_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Three batches of four trials, each trained as one stacked model.
    assert result.stdout.count("4 jobs: 1 stacked group of 4") == 3, result.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lossopt").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("lossopt.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 12 and {c.info.status for c in children} == {"FINISHED"}
    trials = {int(c.data.tags["lossopt.optuna.trial"]): c for c in children}
    assert sorted(trials) == list(range(12))
    lrs = [float(c.data.params["optimizer.lr"]) for c in children]
    assert len(set(lrs)) == 12 and all(1e-4 <= lr <= 1 for lr in lrs)
    assert sum(lr < 1e-2 for lr in lrs) >= 3  # a log scale: uniform would give ~1%
    assert {c.data.params["loss.name"] for c in children} == {"cross_entropy", "focal"}

    scores = {n: c.data.metrics["best_val/accuracy"] for n, c in trials.items()}
    best = re.search(r"Best trial (\d+) of 12: val/accuracy (\d\.\d{4})", result.stdout)
    assert best, result.stdout[-2000:]
    assert math.isclose(scores[int(best[1])], max(scores.values()), abs_tol=1e-9)
    assert float(best[2]) == pytest.approx(max(scores.values()), abs=5e-5)

    study = json.loads(
        Path(
            client.download_artifacts(parent.info.run_id, "optuna.json", str(tmp_path))
        ).read_text()
    )
    assert study["direction"] == "maximize" and study["best_trial"] == int(best[1])
    assert [t["state"] for t in study["trials"]] == ["COMPLETE"] * 12
    assert {t["run_id"] for t in study["trials"]} == {c.info.run_id for c in children}

    # The same command on the stored study: its 12 trials have ended, nothing trains.
    again = lossopt_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "12 trials ended earlier" in again.stdout and "stacked" not in again.stdout
    assert f"Best trial {best[1]} of 12" in again.stdout
