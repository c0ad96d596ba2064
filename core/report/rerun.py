"""``lossopt report --rerun-best N``: the DeepOBS protocol as a second stage of a sweep.

Stage one is the sweep over the learning-rate grid (few seeds). Stage two re-runs each
(task, loss, optimizer) at its best learning rate of stage one with seeds 0 … N-1, as a
sweep of its own (``lossopt train -m`` with the ``grids`` sweeper, one grid per pair,
everything else as in stage one), whose parent run becomes a child of stage one's
parent (tag ``lossopt.stage=rerun_best``), so the MLflow UI nests it. The report is
then made from stage two.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from lossopt.core.errors import LossoptError

__all__ = ["rerun_best"]

TAG_STAGE = "lossopt.stage"
TAG_RERUN = "lossopt.rerun_best"
# Overrides of stage one that stage two sets per pair (or per job): left out.
_SET_PER_PAIR = ("data", "loss", "optimizer", "optimizer.lr", "seed", "hydra/sweeper")


def rerun_best(report, uri: str, seeds: int, out: str | None = None, **options):
    """Train stage two of the sweep ``report`` describes and return its report, written
    to ``out/rerun_best`` (default ``reports/<its name>/``); ``options`` go to
    ``write_report``."""
    from lossopt.core.report.comparison import write_report

    client_experiment, stage_two = _train_stage_two(report, uri, seeds)
    folder = Path(out) / "rerun_best" if out is not None else None
    return write_report(uri, client_experiment, stage_two, folder, **options)


def _train_stage_two(report, uri: str, seeds: int) -> tuple[str, str]:
    """(experiment name, stage two's parent run id)."""
    from lossopt.core.store import open_client
    from lossopt.core.tracking import TAG_PARENT

    if seeds < 1:
        raise LossoptError(f"--rerun-best {seeds}: give the number of seeds, at least 1")
    client = open_client(uri)
    parent = client.get_run(report.parent_run_id)
    experiment = client.get_experiment(parent.info.experiment_id).name
    kept = [
        o
        for o in parent.data.tags.get("lossopt.overrides", "").split()
        if o.split("=", 1)[0].lstrip("+~") not in _SET_PER_PAIR
    ]
    first = _stage_one_grids(kept)
    grids = [
        {
            **_settings(first, t.name, r.loss),
            "data": t.name,
            "loss": r.loss,
            "optimizer": r.optimizer,
            "optimizer.lr": repr(r.best.lr),
        }  # fmt: skip
        for t in report.tasks
        for r in t.rows
        if r.best is not None and r.best.lr is not None
    ]
    if not grids:
        raise LossoptError(f"sweep {report.parent_run_id} has no finished job to re-run")
    folder = Path(tempfile.mkdtemp(prefix="lossopt-rerun-"))
    (folder / "rerun_best").mkdir()
    stage = {
        "hydra": {"sweeper": {"params": {"seed": ",".join(map(str, range(seeds)))}, "grids": grids}}
    }
    text = "# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.create(stage))
    (folder / "rerun_best" / "stage.yaml").write_text(text)
    command = [
        sys.executable, "-m", "lossopt.core.cli", "train", "-m", *kept,
        "hydra/sweeper=grids", f"hydra.searchpath=[pkg://lossopt.experiments,file://{folder}]",
        "+rerun_best=stage", f"tracking.experiment={experiment}", f"tracking.uri={uri}",
    ]  # fmt: skip
    before = {r.info.run_id for r in _sweeps(client, parent.info.experiment_id)}
    done = subprocess.run(command)
    new = [r for r in _sweeps(client, parent.info.experiment_id) if r.info.run_id not in before]
    if not new:
        raise LossoptError(
            f"the second stage did not start (exit status {done.returncode}): {' '.join(command)}"
        )
    stage_two = max(new, key=lambda r: r.info.start_time).info.run_id
    client.set_tag(stage_two, TAG_PARENT, report.parent_run_id)
    client.set_tag(stage_two, TAG_STAGE, "rerun_best")
    client.set_tag(report.parent_run_id, TAG_RERUN, stage_two)
    return experiment, stage_two


def _stage_one_grids(overrides: list[str]) -> list[dict[str, str]]:
    """The ``grids`` of stage one's sweeper (a study preset's), composed from its
    command-line overrides; [] for a sweep without them."""
    from lossopt.core.composition import compose

    cfg = compose(overrides, with_hydra=True)
    grids = cfg.hydra.sweeper.get("grids") or []
    return [{str(k): str(v) for k, v in grid.items()} for grid in grids]


def _settings(grids: list[dict[str, str]], task: str, loss: str) -> dict[str, str]:
    """What the stage-one grid that ran ``loss`` on ``task`` set besides the pair and the
    seed (e.g. ``data.batch_size``), where it set one value."""
    for grid in grids:
        tasks, losses = grid.get("data", task).split(","), grid.get("loss", loss).split(",")
        if task in tasks and loss in losses:
            return {k: v for k, v in grid.items() if k not in _SET_PER_PAIR and "," not in v}
    return {}


def _sweeps(client, experiment_id: str) -> list:
    return client.search_runs([experiment_id], "tags.`lossopt.sweep` = 'true'", max_results=1000)
