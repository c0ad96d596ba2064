"""An MLflow tracking server: ``lossopt server``, and sweeps that log to it over HTTP
with the basic and the vectorized launcher (runs, params, metrics and artifacts read
back through the server's REST API)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lossopt.core.errors import LossoptError
from lossopt.core.mlflow_ui.server import ServerSettings, mlflow_server_command

LAUNCHERS = ("basic", "vectorized")
SHORT = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_server_defaults_to_loopback_sqlite_and_proxied_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = ServerSettings()
    command = mlflow_server_command(settings)
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert _option(command, "--host") == "127.0.0.1" and "--allowed-hosts" not in command
    backend = _option(command, "--backend-store-uri")
    assert backend == f"sqlite:///{tmp_path.resolve()}/mlflow-server/mlflow.db"
    assert (tmp_path / "mlflow-server").is_dir()  # SQLite creates the file, not its folder
    assert "--serve-artifacts" in command
    assert _option(command, "--artifacts-destination") == str(
        tmp_path.resolve() / "mlflow-server" / "artifacts"
    )
    assert settings.uri() == "http://127.0.0.1:5000"


def test_server_on_the_network_admits_this_machines_name(tmp_path):
    settings = ServerSettings(
        host="0.0.0.0", port=5123, backend_store_uri=f"sqlite:///{tmp_path}/m.db"
    )
    hosts = _option(mlflow_server_command(settings), "--allowed-hosts").split(",")
    assert socket.getfqdn() in hosts and f"{socket.gethostname()}:5123" in hosts
    assert "localhost" in hosts  # MLflow's defaults are kept
    assert settings.uri() == f"http://{socket.getfqdn()}:5123"


@pytest.mark.skipif(
    importlib.util.find_spec("psycopg2") is not None, reason="psycopg2 is installed"
)
def test_a_postgresql_store_without_its_driver_says_what_to_install():
    settings = ServerSettings(backend_store_uri="postgresql://me:secret@db.example/mlflow")
    with pytest.raises(LossoptError, match="pip install psycopg2-binary") as error:
        mlflow_server_command(settings)
    assert "secret" not in str(error.value)


def test_the_server_preset_logs_to_mlflow_tracking_uri_or_the_local_server(monkeypatch):
    from lossopt.core.composition import compose

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = compose(["tracking=server"]).tracking
    assert tracking.enabled and tracking.uri == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert compose(["tracking=server"]).tracking.uri == "http://team:5000"
    assert compose(["tracking=server", "tracking.uri=http://h:1"]).tracking.uri == "http://h:1"


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``lossopt server`` on a free loopback port: (its URI, the folder it runs in)."""
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    log = (folder / "server.log").open("w")
    command = [sys.executable, "-m", "lossopt.core.cli", "server", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", "1"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the server and its workers
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{(folder / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri, folder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def sweep_with(server, tmp_path_factory, lossopt_cli):
    """``sweep_with(launcher)``: a 2-job sweep against the server with that launcher, run
    once per module in a folder of its own: (experiment, the folder it ran in)."""
    uri, _ = server
    done: dict[str, tuple[str, Path]] = {}

    def sweep(launcher: str) -> tuple[str, Path]:
        if launcher not in done:
            cwd = tmp_path_factory.mktemp(launcher)
            experiment = f"server_{launcher}"
            result = lossopt_cli(
                "train", "-m", f"hydra/launcher={launcher}", "tracking=server",
                f"tracking.uri={uri}", f"tracking.experiment={experiment}",
                "loss=cross_entropy,focal", *SHORT, cwd=cwd,
            )  # fmt: skip
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            done[launcher] = experiment, cwd
        return done[launcher]

    return sweep


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sweep_against_the_server_is_a_parent_with_its_children(server, sweep_with, launcher):
    uri, folder = server
    experiment, cwd = sweep_with(launcher)
    client = MlflowClient(uri)  # the server's REST API
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("lossopt.sweep") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0].info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {c.data.params["loss.name"] for c in children} == {"cross_entropy", "focal"}
    for child in children:
        run_id = child.info.run_id
        assert 0 < child.data.metrics["best_val/accuracy"] <= 1
        assert len(client.get_metric_history(run_id, "val/accuracy")) == 1  # one epoch
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {"config.yaml", "confusion_matrix.png"} <= artifacts
        config = Path(client.download_artifacts(run_id, "config.yaml", str(cwd)))
        assert f"name: {child.data.params['loss.name']}" in config.read_text()
    assert {"summary.md", "summary.json"} <= {a.path for a in client.list_artifacts(parent)}
    # The artifacts went through the server (proxied) to its own folder, not to a
    # path on the job's machine.
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    stored = folder / "mlflow-server" / "artifacts" / exp.experiment_id
    assert len(list(stored.glob("*/artifacts/confusion_matrix.png"))) == 2
    assert not {"mlruns", "mlartifacts"} & {p.name for p in cwd.iterdir()}


@pytest.mark.slow
def test_a_stacked_sweep_against_the_server_leaves_no_local_store(sweep_with):
    _, cwd = sweep_with("vectorized")
    assert not (cwd / "mlflow.db").exists()


@pytest.mark.slow
def test_report_reads_a_sweep_through_the_server(server, sweep_with, tmp_path, lossopt_cli):
    uri, _ = server
    experiment, _ = sweep_with("vectorized")
    result = lossopt_cli(
        "report", "--uri", uri, "--experiment", experiment, "--out", "report", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "report" / "summary.md").exists()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], "tags.`lossopt.sweep` = 'true'")
    assert any(a.path.startswith("report") for a in client.list_artifacts(parent.info.run_id))
