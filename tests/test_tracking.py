"""MLflow tracking shared by concurrent jobs on one SQLite store."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from lossopt.core.tracking import TrackedRun, experiment_id, open_client

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
