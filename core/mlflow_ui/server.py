"""``lossopt server``: an MLflow tracking server for sweeps on several machines or a team.

It runs ``mlflow server`` with the settings lossopt's sweeps need:

- bound to 127.0.0.1 unless ``--host`` says otherwise; on ``0.0.0.0`` the machine's
  own names are added to MLflow's allowed Host headers (its default admits only
  localhost and private IPs, so ``http://HOSTNAME:5000`` would be refused);
- a SQLite store by default (``mlflow-server/mlflow.db``, apart from the local
  ``mlflow.db``: experiments created there point their artifacts at this machine's
  disk), or any database URL (``postgresql://…``), checked for its driver first;
- artifacts served by the server (``--serve-artifacts``, ``--artifacts-destination``):
  jobs upload through HTTP, so a cluster node that does not share this machine's
  disk logs its config, plots and checkpoints like a local job.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lossopt.core.errors import LossoptError

__all__ = ["ServerSettings", "mlflow_server_command", "run_server"]

DEFAULT_FOLDER = "mlflow-server"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str | None = None  # None: sqlite:///<cwd>/mlflow-server/mlflow.db
    artifacts_destination: str | None = None  # None: <cwd>/mlflow-server/artifacts
    workers: int | None = None  # None: MLflow's default

    def backend(self) -> str:
        if self.backend_store_uri:
            return self.backend_store_uri
        return f"sqlite:///{Path.cwd().resolve() / DEFAULT_FOLDER / 'mlflow.db'}"

    def artifacts(self) -> str:
        return self.artifacts_destination or str(
            Path.cwd().resolve() / DEFAULT_FOLDER / "artifacts"
        )

    def uri(self) -> str:
        """The tracking URI jobs use: on a wildcard bind, this machine's name."""
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def mlflow_server_command(settings: ServerSettings) -> list[str]:
    """The ``mlflow server`` command line for ``settings``; checks the backend first."""
    backend = settings.backend()
    _check_backend(backend)
    if backend.startswith("sqlite:///"):
        Path(backend.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--serve-artifacts", "--artifacts-destination", settings.artifacts(),
        "--host", settings.host, "--port", str(settings.port),
    ]  # fmt: skip
    if settings.workers:
        command += ["--workers", str(settings.workers)]
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        command += ["--allowed-hosts", ",".join(_allowed_hosts(settings.port))]
    return command


def _check_backend(uri: str) -> None:
    """A database URL whose driver is missing fails here with what to install, not in
    the server's log."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError) as exc:
        raise LossoptError(
            f"--backend-store-uri {uri}: not a database URL SQLAlchemy knows ({exc}). Give "
            "sqlite:///PATH or postgresql://USER@HOST/DB."
        ) from None
    except ImportError as exc:
        driver = "psycopg2-binary" if uri.startswith("postgresql") else "the database's driver"
        raise LossoptError(
            f"--backend-store-uri {make_url(uri).render_as_string(hide_password=True)}: its "
            f"driver is not installed ({exc}). Install it: pip install {driver}."
        ) from None


def _allowed_hosts(port: int) -> list[str]:
    """MLflow's default Host headers (localhost, private IPs) and this machine's names."""
    try:
        from mlflow.server.security_utils import get_default_allowed_hosts

        hosts = get_default_allowed_hosts()
    except ImportError:  # an MLflow without host validation: nothing to add to
        hosts = ["localhost", "127.0.0.1"]
    for name in {socket.gethostname(), socket.getfqdn()}:
        hosts += [name, f"{name}:{port}"]
    return hosts


def run_server(settings: ServerSettings, console) -> int:
    """Run the server in the foreground until Ctrl+C; its exit status."""
    from rich.markup import escape

    command = mlflow_server_command(settings)
    uri = settings.uri()
    lines = [
        f"MLflow tracking server on [bold]{uri}[/] (Ctrl+C stops it)",
        f"  store      {escape(_shown(settings.backend()))}",
        f"  artifacts  {escape(settings.artifacts())}",
        f"  use it     lossopt train -m tracking=server tracking.uri={uri} …",
    ]
    for line in lines:
        console.print(line, soft_wrap=True)
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:  # the terminal sent it to the server too: let it stop
        return process.wait()


def _shown(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(uri).render_as_string(hide_password=True)
