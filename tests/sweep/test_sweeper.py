"""The ``grids`` sweeper and the study presets that use it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins

import lossopt.experiments
from lossopt.core.composition import compose
from lossopt.core.registry import registry

# Hydra's plugin scan executes the basic sweeper's module again: the subclass must be
# imported after it, as in `lossopt train` (where the scan runs first).
Plugins.instance()
from hydra_plugins.lossopt_sweeper import GridsSweeper  # noqa: E402

PRESETS = sorted(
    p.stem for p in (Path(lossopt.experiments.__file__).parent / "experiment").glob("*.yaml")
)


def _jobs(params: dict, grids: list | None, arguments=(), max_batch_size=None) -> list:
    sweeper = GridsSweeper(max_batch_size, params, grids)
    sweeper.hydra_context = SimpleNamespace(config_loader=None)
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(arguments))
    return sweeper.split_arguments(overrides, max_batch_size)


def test_jobs_are_the_union_of_the_shared_axes_times_each_grid():
    grids = [
        {"data": "iris,wine", "loss": "cross_entropy,focal"},
        {"data": "linnerud", "loss": "mse", "data.batch_size": "4"},
        {"data": "iris", "loss": "focal"},  # already in the first grid: once
    ]
    (batch,) = _jobs({"optimizer": "sgd,adam", "seed": "0"}, grids)
    jobs = [sorted(job) for job in batch]
    assert len(jobs) == 2 * 2 * 2 + 2
    assert (
        sorted(["optimizer=adam", "seed=0", "data=linnerud", "loss=mse", "data.batch_size=4"])
        in jobs
    )
    assert not any("data=linnerud" in job and "loss=focal" in job for job in jobs)
    assert not any("data=iris" in job and "data.batch_size=4" in job for job in jobs)


def test_a_grid_key_wins_over_a_shared_one_and_batches_are_kept():
    batches = _jobs({"optimizer": "sgd,adam"}, [{"optimizer": "rmsprop", "loss": "mse,l1"}], (), 1)
    assert [job for batch in batches for job in batch] == [
        ["optimizer=rmsprop", "loss=mse"],
        ["optimizer=rmsprop", "loss=l1"],
    ]
    (batch,) = _jobs({"optimizer": "sgd,adam"}, None)  # no grids: the basic sweeper
    assert batch == [["optimizer=sgd"], ["optimizer=adam"]]


def _compose(preset: str):
    return compose([f"+experiment={preset}"], with_hydra=True)


@pytest.mark.parametrize("preset", PRESETS)
def test_study_presets_compose(preset):
    cfg = _compose(preset)
    assert cfg.tracking.experiment == preset and cfg.hydra.sweeper.params


def test_suite_crosses_each_task_with_the_losses_that_serve_it():
    cfg = _compose("suite_loss_optimizer")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.lossopt_sweeper.GridsSweeper"
    params = {str(k): str(v) for k, v in sweeper.params.items()}
    grids = [{str(k): str(v) for k, v in g.items()} for g in sweeper.grids]
    (jobs,) = _jobs(params, grids)
    by = [dict(o.split("=", 1) for o in job) for job in jobs]
    tasks = {job["data"] for job in by}
    losses = {job["loss"] for job in by}
    lrs = sorted({float(job["optimizer.lr"]) for job in by})
    assert len(tasks) >= 5 and len(losses) >= 6 and len({job["optimizer"] for job in by}) >= 5
    assert len(lrs) == 5 and {job["seed"] for job in by} == {"0", "1", "2"}
    ratios = [b / a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.2  # a log grid
    data = {name: registry("data").plugin(name).load() for name in tasks}
    for job in by:
        spec = registry("loss").plugin(job["loss"]).load()
        assert data[job["data"]].info["task"] in spec.tasks, job
    assert len(jobs) == len({tuple(sorted(job)) for job in jobs}) == 2100
