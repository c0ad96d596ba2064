"""MLflow tracking: a job's identity, and one SQLite store shared by concurrent jobs."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from lossopt.core.composition import compose
from lossopt.core.store import experiment_id, open_client
from lossopt.core.tracking import TrackedRun, fingerprint


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


def test_a_run_a_dead_process_left_half_written_is_completed_not_written_twice(tmp_path):
    # A stacked member's record killed after one of its batches: the re-run continues
    # that run; each value (key, step) and each param ends up in it once.
    from lossopt.core.tracking import tracked_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose([f"tracking.uri={uri}", "tracking.experiment=continued"])
    history = [("val/loss", 1.0 / (step + 1), step, 1_000 + step) for step in range(1500)]
    with pytest.raises(KeyboardInterrupt), tracked_run(cfg, {}, started_ms=1) as first:
        first.log_history(history[:1000])
        first.write_pending()  # the first batch reached the store; then the kill
        raise KeyboardInterrupt
    client = open_client(uri)
    assert client.get_run(first.run_id).info.status == "KILLED"

    later = [(k, v, step, ms + 50_000) for k, v, step, ms in history]  # trained again
    with tracked_run(cfg, {}, started_ms=1, resume_run_id=first.run_id) as again:
        again.log_history(later)
        again.log_metrics({"best_val/accuracy": 0.9})
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(first.run_id, "val/loss")]
    assert sorted(steps) == list(range(1500))
    assert run.data.params["optimizer.name"] == "adam" and run.data.metrics["best_val/accuracy"]
