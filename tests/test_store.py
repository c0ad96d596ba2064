"""The MLflow store shared by several processes: what SQLite's locking refuses is
waited for within a bound, then one clear error; a killed process can be placed at a
named moment."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

from lossopt.core.errors import LossoptError
from lossopt.core.store import (
    STORE_WAIT_ENV,
    experiment_id,
    open_client,
    patiently,
    store_wait_s,
)


def _locked_then(result: str, refusals: int):
    calls = []

    def call() -> str:
        calls.append(time.monotonic())
        if len(calls) <= refusals:
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        return result

    return call, calls


def test_a_call_the_store_refuses_while_locked_is_repeated_until_it_goes_through(tmp_path):
    call, calls = _locked_then("run-1", refusals=3)
    assert patiently(call, tmp_path / "mlflow.db") == "run-1"
    assert len(calls) == 4


def test_a_store_locked_past_the_bound_is_one_error_naming_it_and_the_way_out(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(STORE_WAIT_ENV, "0.3")
    call, calls = _locked_then("never", refusals=10**6)
    start = time.monotonic()
    with pytest.raises(LossoptError, match=r"mlflow\.db stayed locked for 0\.3 s") as raised:
        patiently(call, tmp_path / "mlflow.db")
    assert time.monotonic() - start < 3
    assert STORE_WAIT_ENV in str(raised.value) and len(calls) > 1


def test_other_errors_are_not_repeated(tmp_path):
    calls = []

    def call():
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run abc")

    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        patiently(call, tmp_path / "mlflow.db")
    assert calls == [1]


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_wait_that_is_not_a_positive_number_says_so(monkeypatch, value):
    monkeypatch.setenv(STORE_WAIT_ENV, value)
    with pytest.raises(LossoptError, match=f"{STORE_WAIT_ENV}='{value}'"):
        store_wait_s()


def test_a_write_waits_for_another_connection_holding_the_store(tmp_path):
    """A real lock: another connection holds the write lock for 1.5 s; the client's
    write waits and goes through once it is released."""
    path = tmp_path / "mlflow.db"
    client = open_client(f"sqlite:///{path}")
    experiment = experiment_id(client, "waits")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.5, lambda: holder.execute("ROLLBACK"))
    start = time.monotonic()
    release.start()
    with contextlib.closing(holder):
        run = client.create_run(experiment)
        release.join()
    assert time.monotonic() - start >= 1.0
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def test_an_experiment_created_by_another_process_meanwhile_is_found_not_an_error():
    class Store:
        """A store where another process creates the experiment between our lookup
        and our create."""

        def __init__(self) -> None:
            self.lookups = 0

        def get_experiment_by_name(self, name):
            self.lookups += 1
            if self.lookups == 1:
                return None
            return type("Experiment", (), {"experiment_id": "7"})()

        def create_experiment(self, name):
            raise MlflowException("already exists", RESOURCE_ALREADY_EXISTS)

    assert experiment_id(Store(), "raced") == "7"


def test_a_kill_point_kills_the_process_the_nth_time_it_is_reached():
    code = (
        "from lossopt.core._kill_points import kill_point\n"
        "for n in range(3):\n"
        "    kill_point('here'); kill_point('elsewhere'); print(n, flush=True)\n"
    )
    env = {"LOSSOPT_KILL_AT": "here:2", "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == -9 and done.stdout.split() == ["0"]
    unset = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert unset.returncode == 0 and unset.stdout.split() == ["0", "1", "2"]
