"""MLflow tracking: a job's identity, and one SQLite store shared by concurrent jobs."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from lossopt.core.composition import compose
from lossopt.core.tracking import TrackedRun, experiment_id, fingerprint, open_client


@pytest.mark.parametrize(
    "display", ["trainer.enable_progress_bar=false", "tracking.experiment=elsewhere"]
)
def test_settings_that_change_nothing_computed_keep_a_jobs_fingerprint(display):
    # A sweep re-run with the progress bar off, or logging elsewhere, still resumes.
    assert fingerprint(compose([display])) == fingerprint(compose([]))


@pytest.mark.parametrize("change", ["optimizer.lr=0.01", "trainer.max_epochs=3", "seed=1"])
def test_settings_that_change_the_result_change_the_fingerprint(change):
    assert fingerprint(compose([change])) != fingerprint(compose([]))


JOBS = 4
DATASETS = 20  # each a new insert all jobs race on


def _log_same_dataset(uri: str, run_id: str, barrier) -> None:
    client = open_client(uri)
    run = TrackedRun(client, run_id, uri, "race")
    for n in range(DATASETS):
        barrier.wait(timeout=60)  # every job reaches each dataset's first insert together
        run.log_input({"name": f"data{n}", "n": n})


@pytest.mark.slow
def test_parallel_jobs_logging_one_new_dataset_all_record_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = open_client(uri)
    experiment = experiment_id(client, "race")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(JOBS)]
    context = mp.get_context("spawn")
    barrier = context.Barrier(JOBS)
    jobs = [
        context.Process(target=_log_same_dataset, args=(uri, run_id, barrier)) for run_id in run_ids
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(180)
    for job in jobs:
        job.kill()  # only those still stuck, after a failure broke the barrier
    assert [job.exitcode for job in jobs] == [0] * JOBS
    for run_id in run_ids:
        logged = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(i.dataset.name for i in logged) == sorted(f"data{n}" for n in range(DATASETS))


def test_a_record_larger_than_mlflows_batch_limits_is_written_whole(tmp_path):
    # A long member's history (values every epoch and every few steps) and a plugin with
    # many parameters exceed one log_batch (100 params, 1000 values): nothing is lost.
    from mlflow.entities import Param

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = open_client(uri)
    run_id = client.create_run(experiment_id(client, "batches")).info.run_id
    run = TrackedRun(client, run_id, uri, "batches")
    run.pending_params = [Param(f"p{i}", str(i)) for i in range(150)]
    run.log_history([("train/loss", 1.0 / (step + 1), step, 1_000 + step) for step in range(2500)])
    run.log_metrics({"best_val/accuracy": 0.9})
    run.write_pending()

    data = client.get_run(run_id).data
    assert len(data.params) == 150 and data.params["p149"] == "149"
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(2500))
    assert data.metrics["best_val/accuracy"] == 0.9
    run.write_pending()  # written once: a second call adds nothing
    assert len(client.get_metric_history(run_id, "train/loss")) == 2500
