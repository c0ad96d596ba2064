"""The MLflow store every run of a sweep writes to, shared with other processes.

Two sweeps started together in one folder write to one SQLite file, and so do a
sweep's parallel workers. SQLite lets one process write at a time; what it refuses
is waited for and tried again here, within ``store_wait_s()`` (120 s unless
``LOSSOPT_STORE_WAIT_S`` says otherwise), after which the call fails with one clear
error (a sweep then stops, exit status 2, before any job runs without its parent):

- every SQLite connection of the process waits for a lock up to that long
  (``PRAGMA busy_timeout``; pysqlite's default is 5 s);
- a call SQLite refuses at once (a lock it cannot wait for without a deadlock) is
  repeated, with growing pauses, until the bound;
- a new store's schema is created (or an old one upgraded) by one process at a time,
  under a lock file beside the database: MLflow's migrations run by two processes
  at once lock each other out or create a table twice.

A tracking server (``http://…``) does its own locking: its client is MLflow's own.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from lossopt.core.errors import LossoptError

__all__ = ["STORE_WAIT_ENV", "experiment_id", "open_client", "patiently", "store_wait_s"]

STORE_WAIT_ENV = "LOSSOPT_STORE_WAIT_S"
STORE_WAIT_S = 120.0
SQLITE = "sqlite:///"

T = TypeVar("T")


def store_wait_s() -> float:
    """How long a call waits for a SQLite store other processes hold, in seconds."""
    text = os.environ.get(STORE_WAIT_ENV, "")
    try:
        seconds = float(text) if text else STORE_WAIT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise LossoptError(
            f"{STORE_WAIT_ENV}={text!r}: give the seconds to wait for a busy MLflow store "
            f"as a positive number (default {STORE_WAIT_S:g})."
        )
    return seconds


@functools.cache  # one per store and process: making one costs ~50 ms (store, schema check)
def open_client(uri: str):
    """A client on ``uri``; for SQLite this creates the schema on first use.

    A SQLite store is switched to write-ahead logging (a setting kept in the file):
    a commit then syncs the disk once instead of three times (a run's record takes
    40 instead of 100 ms here), and the MLflow UI reads while a sweep writes.
    """
    from mlflow import MlflowClient

    if not uri.startswith(SQLITE):
        return MlflowClient(tracking_uri=uri)
    import sqlite3

    path = Path(uri.removeprefix(SQLITE))
    path.parent.mkdir(parents=True, exist_ok=True)
    _wait_for_sqlite_locks()

    def write_ahead_logging() -> None:
        with contextlib.closing(sqlite3.connect(path, timeout=store_wait_s())) as db:
            db.execute("PRAGMA journal_mode=WAL")

    with _creating(path):
        patiently(write_ahead_logging, path)
        # MLflow makes its store (one per URI and process) with the client: the schema
        # is created or checked here.
        client = PatientClient(patiently(lambda: MlflowClient(tracking_uri=uri), path), path)
    atexit.register(_checkpoint, path)
    return client


class PatientClient:
    """An ``MlflowClient`` on a SQLite store whose every call waits, within
    ``store_wait_s()``, while other processes hold the store (see the module)."""

    def __init__(self, client: Any, path: Path) -> None:
        self.client, self.path = client, path

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def patient(*args: Any, **kwargs: Any) -> Any:
            return patiently(lambda: attribute(*args, **kwargs), self.path)

        return patient


def patiently(call: Callable[[], T], path: Path) -> T:
    """``call()``, repeated while SQLite says the store at ``path`` is locked, until
    ``store_wait_s()`` has passed. A refused call changed nothing: SQLite rolled its
    transaction back, so repeating it records nothing twice."""
    deadline = time.monotonic() + store_wait_s()
    pause = 0.05
    while True:
        try:
            return call()
        except Exception as error:
            if not _locked(error):
                raise
            if time.monotonic() + pause > deadline:
                raise LossoptError(
                    f"the MLflow store {path} stayed locked for {store_wait_s():g} s: other "
                    "processes kept writing to it (another sweep, a server or a tool "
                    f"holding it open). Nothing was lost. Run the command again once they "
                    f"are done, wait longer ({STORE_WAIT_ENV}=SECONDS), or give this sweep "
                    "its own store (tracking.uri=sqlite:///PATH)."
                ) from None
            time.sleep(pause)
            pause = min(2 * pause, 1.0)


def _locked(error: BaseException) -> bool:
    text = str(error)
    return "database is locked" in text or "database table is locked" in text


@functools.cache  # once per process
def _wait_for_sqlite_locks() -> None:
    """Every SQLite connection this process opens through SQLAlchemy (MLflow's, an
    Optuna storage's) waits for a lock up to ``store_wait_s()``."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    milliseconds = int(store_wait_s() * 1000)

    def busy_timeout(connection: Any, _record: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute(f"PRAGMA busy_timeout = {milliseconds}")

    event.listen(Engine, "connect", busy_timeout)


@contextlib.contextmanager
def _creating(path: Path) -> Iterator[None]:
    """Held while this process opens the store: one process at a time creates or
    checks its schema. The lock is the kernel's (``flock``): a killed holder frees it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _checkpoint(path: Path) -> None:
    """Move what the write-ahead log holds into the database file, so that the file
    alone is the whole store (a copy of it misses nothing) even when the process ends
    without closing its connections (``cli.entry``)."""
    import sqlite3

    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name`` in ``client``'s store, created if needed; looked up
    once per process (a stacked sweep records dozens of runs in a row). Two sweeps
    creating it at once: the second finds the first's."""
    from mlflow.exceptions import MlflowException

    key = (client, name)  # the client itself: clients of other stores never collide
    if key not in _experiment_ids:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                found = client.create_experiment(name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = client.get_experiment_by_name(name).experiment_id
        else:
            found = experiment.experiment_id
        _experiment_ids[key] = found
    return _experiment_ids[key]


_experiment_ids: dict[tuple[Any, str], str] = {}
