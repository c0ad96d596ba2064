"""MLflow tracking of one job: the run, its params, tags, inputs and artifacts.

The run is created here (rank 0, before ``fit``) and handed to Lightning's
MLFlowLogger by id, so metrics flow through Lightning (batched, asynchronous) while
lossopt owns the run's life: whatever happens, it ends FINISHED, FAILED or KILLED.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lossopt.core._kill_points import kill_point
from lossopt.core.job_context import AXES_ENV
from lossopt.core.store import experiment_id, open_client

__all__ = [
    "axis_params",
    "TrackedRun",
    "is_running",
    "process_identity",
    "computed_values",
    "default_uri",
    "fingerprint",
    "flatten",
    "git_commit",
    "is_rank_zero",
    "job_config",
    "run_name",
    "source_tags",
    "tracked_run",
]

# Config sections that do not change what a job computes (where it logs, how much
# it prints), left out of the fingerprint that identifies a job across re-runs.
_NOT_IN_FINGERPRINT = ("tracking", "hydra")
# Settings that only change what is printed or how often progress is saved, likewise
# (dotted keys).
_DISPLAY_ONLY = frozenset(
    {"trainer.enable_progress_bar", "trainer.enable_model_summary", "checkpoint_every_s"}
)
TAG_FINGERPRINT = "lossopt.fingerprint"
TAG_SWEEP = "lossopt.sweep_id"
TAG_PARENT = "mlflow.parentRunId"
# Who is running a job, so that a re-run can tell a live job from one left RUNNING by
# a dead process; and where its checkpoints are, to resume it.
TAG_HOST, TAG_PID, TAG_PID_STARTED = "lossopt.host", "lossopt.pid", "lossopt.pid_started"
TAG_OUTPUT_DIR = "lossopt.output_dir"


def default_uri() -> str:
    """A SQLite store in the directory lossopt was started from."""
    return f"sqlite:///{Path(os.getcwd()).resolve() / 'mlflow.db'}"


def tracking_uri(cfg: DictConfig) -> str:
    return cfg.tracking.uri or default_uri()


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that defines what a job computes."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in container.items() if k not in _NOT_IN_FINGERPRINT}


def computed_values(cfg: DictConfig) -> dict[str, Any]:
    """What a job computes from, by dotted key: its config without where it logs and
    what it only prints."""
    return {k: v for k, v in flatten(job_config(cfg)).items() if k not in _DISPLAY_ONLY}


def fingerprint(cfg: DictConfig) -> str:
    text = json.dumps(computed_values(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → ``{"optimizer.lr": 0.001, …}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def run_name(cfg: DictConfig) -> str:
    """``focal-adamw-lr0.001-s0``: readable in the MLflow UI's run list."""
    return f"{cfg.loss.name}-{cfg.optimizer.name}-lr{cfg.optimizer.get('lr', 0):g}-s{cfg.seed}"


def source_tags(cfg: DictConfig) -> dict[str, str]:
    """``lossopt.source.loss = lossopt==0.1.0`` for each selected plugin."""
    from lossopt.core.configs import PLUGIN_GROUPS
    from lossopt.core.registry import registry

    return {
        f"lossopt.source.{kind}": str(registry(kind).plugin(cfg[kind].name).source)
        for kind in PLUGIN_GROUPS
    }


@functools.cache  # once per process: every job of a sweep runs from the same commit
def git_commit(path: str | os.PathLike = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass
class TrackedRun:
    """A live MLflow run (or none, when tracking is off)."""

    client: Any = None
    run_id: str | None = None
    uri: str | None = None
    experiment: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    # Params and metrics not yet written: they go to the store together, in as few
    # transactions as MLflow's batch limits allow, when the run ends.
    pending_params: list = field(default_factory=list)
    pending_metrics: list = field(default_factory=list)
    # What a continued run holds already (a dead process wrote it), not written again:
    # its params' keys, and each metric value's (key, step).
    recorded_params: set[str] = field(default_factory=set)
    recorded_steps: set[tuple[str, int]] = field(default_factory=set)

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def logger(self):
        """The Lightning logger writing this run's metrics, or False."""
        if not self.enabled:
            return False
        from lightning.pytorch.loggers import MLFlowLogger

        # Asynchronous logging still writes each log call as its own transaction
        # (~4 ms on SQLite, in a thread that competes with training for the GIL).
        # MLflow's buffering merges what a few seconds bring into one write; runs
        # end with a flush, so nothing is lost. A user's own setting wins.
        os.environ.setdefault(_BUFFER_VARIABLE, str(_BUFFER_SECONDS))
        recorded = self.recorded_steps

        class ContinuingLogger(MLFlowLogger):
            """Skips the values the run holds already: an epoch a dead process logged
            after its last resume point is trained again, and logged once."""

            def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
                fresh = {k: v for k, v in metrics.items() if (k, step or 0) not in recorded}
                if fresh:
                    super().log_metrics(fresh, step)

        return (ContinuingLogger if recorded else MLFlowLogger)(
            experiment_name=self.experiment,
            tracking_uri=self.uri,
            run_id=self.run_id,
            synchronous=False,
        )

    def log_dict(self, values: Mapping[str, Any], artifact_file: str) -> None:
        if self.enabled:
            self.client.log_dict(self.run_id, dict(values), artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        if self.enabled:
            self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Final values (step 0), written with the run's end."""
        now = _now_ms()
        self.log_history([(k, v, 0, now) for k, v in metrics.items()])

    def log_history(self, entries: Sequence[tuple[str, float, int, int]]) -> None:
        """Metric values recorded earlier: (key, value, step, timestamp in ms) each;
        written with the run's end."""
        if self.enabled:
            from mlflow.entities import Metric

            self.pending_metrics += [Metric(k, float(v), ms, step) for k, v, step, ms in entries]

    def write_pending(self) -> None:
        """Pending params and metrics in batches of MLflow's limits (100 params, 1000
        values in all): one transaction for a small run's whole record."""
        params = self.pending_params
        metrics = [m for m in self.pending_metrics if (m.key, m.step) not in self.recorded_steps]
        while params or metrics:
            some_params, params = params[:_BATCH_PARAMS], params[_BATCH_PARAMS:]
            room = _BATCH_VALUES - len(some_params)
            some_metrics, metrics = metrics[:room], metrics[room:]
            self.client.log_batch(self.run_id, metrics=some_metrics, params=some_params)
        self.pending_params, self.pending_metrics = [], []

    def load_recorded(self) -> None:
        """Read what this run holds already (``recorded_params``, ``recorded_steps``)."""
        data = self.client.get_run(self.run_id).data
        self.recorded_params = set(data.params)
        self.recorded_steps = {
            (key, m.step)
            for key in data.metrics
            for m in self.client.get_metric_history(self.run_id, key)
        }

    def log_input(self, description: Mapping[str, Any], context: str = "train") -> None:
        """The dataset as a run input (name, digest of its description, profile)."""
        if not self.enabled:
            return
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        text = json.dumps(dict(description), sort_keys=True, default=str)
        dataset = MetaDataset(
            source=HTTPDatasetSource(url=f"lossopt://data/{description['name']}"),
            name=str(description["name"]),
            digest=hashlib.sha256(text.encode()).hexdigest()[:10],
        )
        entity = dataset._to_mlflow_entity()
        tag = InputTag(key="mlflow.data.context", value=context)
        inputs = [DatasetInput(entity, tags=[tag])]
        # The store inserts a dataset it has not seen; parallel jobs logging the same
        # new dataset race on that insert, and the loser finds it present on retry.
        for attempt in range(_INPUT_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except Exception as error:  # MlflowException wrapping the IntegrityError
                if "UNIQUE constraint" not in str(error) or attempt == _INPUT_ATTEMPTS - 1:
                    raise


_INPUT_ATTEMPTS = 3
_BATCH_PARAMS, _BATCH_VALUES = 100, 1000  # MLflow's limits for one log_batch
_BUFFER_VARIABLE, _BUFFER_SECONDS = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", 5


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def is_rank_zero() -> bool:
    """False in the processes Lightning's DDP starts for the other devices."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def process_identity() -> dict[str, str]:
    """This process as run tags: host, pid and the pid's start time (a pid is reused
    by later processes, the pair is not)."""
    import socket

    pid = os.getpid()
    return {
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(pid),
        TAG_PID_STARTED: _process_started(pid) or "",
    }


def is_running(identity: Mapping[str, str]) -> bool | None:
    """Whether the process ``identity`` names (``process_identity()`` tags) still runs;
    None when it ran on another host, where this one cannot look."""
    import socket

    if identity.get(TAG_HOST) != socket.gethostname():
        return None
    try:
        pid = int(identity.get(TAG_PID) or 0)
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    started = _process_started(pid)
    return started != "dead" and (
        not identity.get(TAG_PID_STARTED) or started in (None, identity[TAG_PID_STARTED])
    )


def _process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot ("dead" for a zombie); None
    where /proc does not tell (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return "dead" if fields[0] in ("Z", "X") else fields[19]


AXIS_PREFIX = "axis/"


def axis_params(values: Mapping[str, Any]) -> list:
    """A job's values on its sweep's axes, again as params named ``axis/loss``,
    ``axis/optimizer.lr``…: MLflow's compare page plots the first three differing
    params in name order, and these names sort before every other param."""
    from mlflow.entities import Param

    axes = [key for key in os.environ.get(AXES_ENV, "").split(",") if key in values]
    return [Param(AXIS_PREFIX + key.removesuffix(".name"), str(values[key])) for key in axes]


@contextlib.contextmanager
def tracked_run(
    cfg: DictConfig,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
    started_ms: int | None = None,
    resume_run_id: str | None = None,
) -> Iterator[TrackedRun]:
    """Create the job's run before training and always give it a terminal status.

    FINISHED when the body returns, KILLED on an interrupt, FAILED on an error, with
    the error message as a tag and the traceback as an artifact. ``started_ms``: when
    the job started, if before now (a stacked member is recorded after training, all
    its params and metrics in one batch at the end). ``resume_run_id``: a run of this
    job that a dead process left unfinished, continued instead of a new one: what it
    holds already (params, metric values by step) is not written twice.
    """
    if not cfg.tracking.enabled or not is_rank_zero():
        yield TrackedRun()
        return
    import mlflow
    from mlflow.entities import Param, RunTag

    uri = tracking_uri(cfg)
    client = open_client(uri)
    # MLflow's queue of asynchronous writes belongs to the store of its global URI:
    # flushing it (here and at each resume point) must reach this job's store, and
    # not open a default store in the working directory.
    mlflow.set_tracking_uri(uri)
    exp_id = experiment_id(client, cfg.tracking.experiment)
    all_tags = {TAG_FINGERPRINT: fingerprint(cfg), **tags, **process_identity()}
    if parent_run_id:
        all_tags[TAG_PARENT] = parent_run_id
    if commit := git_commit():
        all_tags["mlflow.source.git.commit"] = commit
    if resume_run_id is not None:
        client.update_run(resume_run_id, status="RUNNING")
        client.log_batch(resume_run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        tracked = TrackedRun(client, resume_run_id, uri, cfg.tracking.experiment)
        tracked.load_recorded()
    else:
        run = client.create_run(exp_id, started_ms, tags=all_tags, run_name=run_name(cfg))
        tracked = TrackedRun(client, run.info.run_id, uri, cfg.tracking.experiment)
    values = flatten(job_config(cfg))
    params = [Param(k, str(v)[:6000]) for k, v in values.items()]
    if parent_run_id:
        params += axis_params(values)
    tracked.pending_params = [p for p in params if p.key not in tracked.recorded_params]
    if started_ms is None:  # a live run shows its params while it trains
        tracked.write_pending()
    client.log_text(tracked.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    status = "FAILED"
    try:
        yield tracked
        tracked.write_pending()
        status = "FINISHED"
        kill_point("run-ending")
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        client.log_batch(tracked.run_id, tags=[RunTag("lossopt.error", message[:5000])])
        client.log_text(tracked.run_id, traceback.format_exc(), "error.txt")
        raise
    finally:
        if status != "FINISHED":  # what was measured before the end, at best effort
            with contextlib.suppress(Exception):
                tracked.write_pending()
        mlflow.flush_async_logging()
        client.set_terminated(tracked.run_id, status)
