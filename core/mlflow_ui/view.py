"""What a researcher sees of a sweep in the MLflow UI (3.x).

- The experiment is marked as model training (experiment tag ``mlflow.experimentKind``
  = ``custom_model_development``), not GenAI: its page lists training runs, not traces.
- The sweep's parent run is named after the experiment and its axes
  (``digits_loss_optimizer: loss×optimizer×lr×seed (72)``) and holds the axes as params
  (the children's keys, so the parent's row shows each axis's values).
- A shared view per sweep, MLflow's own mechanism (an experiment tag
  ``mlflow.sharedViewState.<key>`` opened by ``?viewStateShareKey=<key>``): the runs
  table starts with the axes and the objective as columns (a click on the parent's
  "+" lists its jobs: MLflow keeps no expanded rows in a shared view). A chart of the
  axes cannot be preset this way: MLflow 3.17 drops the charts of a shared view.
- Each job records its values on the sweep's axes again as ``axis/…`` params
  (``tracking.axis_params``): the compare page plots the first three differing params
  in name order, and these sort first.
  ``lossopt ui`` opens the latest sweep's view, in the UI's "Model training" mode.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = [
    "ensure_training_view",
    "grid_size",
    "landing",
    "runs_url",
    "sweep_axes",
    "sweep_name",
    "sweep_view",
]

KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
VIEW_TAG = "mlflow.sharedViewState."


def sweep_axes(config: DictConfig) -> list[tuple[str, str, int | None]]:
    """The swept keys in order, as ``(run param key, values, number of values)``:
    the sweeper's ``params`` and ``grids``, then the command line's sweeps.
    ``loss=a,b`` is the param ``loss.name``; the count is None for a search range."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lossopt.core.configs import PLUGIN_GROUPS

    sweeper = config.hydra.sweeper
    texts = [f"{k}={v}" for k, v in (OmegaConf.select(sweeper, "params") or {}).items()]
    for grid in OmegaConf.select(sweeper, "grids") or []:
        texts += [f"{k}={v}" for k, v in grid.items()]
    texts += list(config.hydra.overrides.task)
    axes: dict[str, tuple[str, int | None]] = {}
    parser = OverridesParser.create()
    for text in texts:
        override = parser.parse_override(text)
        if not override.is_sweep_override():
            continue
        key = override.key_or_group
        key = f"{key}.name" if key in PLUGIN_GROUPS else key
        try:
            values = [str(v) for v in override.sweep_iterator()]
        except Exception:  # an interval (Optuna): no list of values, its text instead
            axes[key] = (text.split("=", 1)[1], None)
            continue
        if key in axes and axes[key][1] is not None:  # grids: a union
            values = list(dict.fromkeys(axes[key][0].split(",") + values))
        axes[key] = (",".join(values), len(values))
    return [(key, text, count) for key, (text, count) in axes.items()]


def _short(key: str) -> str:
    """``optimizer.lr`` → ``lr``, ``loss.name`` → ``loss``."""
    parts = key.removesuffix(".name").split(".")
    return parts[-1]


def sweep_name(experiment: str, axes: Iterable[tuple[str, str, int | None]], jobs: int | None):
    """``digits_loss_optimizer: loss×optimizer×lr×seed (72)``."""
    names = "×".join(_short(key) for key, _, _ in axes) or "sweep"
    return f"{experiment}: {names}" + (f" ({jobs})" if jobs else "")


def grid_size(axes: Iterable[tuple[str, str, int | None]]) -> int | None:
    counts = [count for _, _, count in axes]
    return math.prod(counts) if counts and None not in counts else None


def sweep_view(axes: list[tuple[str, str, int | None]], objective: str) -> str:
    """The shared view state (JSON) of a sweep: see the module docstring."""
    params = [key for key, _, _ in axes]
    columns = [f"params.`{p}`" for p in params] + [f"metrics.`{objective}`"]
    return json.dumps({"selectedColumns": columns})


def ensure_training_view(client: Any, experiment_id: str) -> None:
    """Mark the experiment as model training, unless someone chose a kind already."""
    experiment = client.get_experiment(experiment_id)
    if KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, KIND_TAG, TRAINING_KIND)


def runs_url(base: str, experiment_id: str | None, view_key: str | None = None) -> str:
    """The UI's page of an experiment's runs, in the sweep's shared view when given."""
    if experiment_id is None:
        return f"{base}/#/experiments"
    query = "?workflowType=machine_learning"  # the UI's "Model training" mode, not GenAI
    query += f"&viewStateShareKey={view_key}" if view_key else ""
    return f"{base}/#/experiments/{experiment_id}/runs{query}"


def landing(client: Any, experiment: str | None = None) -> tuple[str | None, str | None]:
    """(experiment id, shared view key) ``lossopt ui`` opens: the latest sweep's, in
    ``experiment`` when named; else the experiment of the latest run."""
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found is not None else []
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None, None
    for query in ("tags.`lossopt.sweep` = 'true'", ""):
        runs = client.search_runs(
            ids, query, order_by=["attributes.start_time DESC"], max_results=1
        )
        if runs:
            run = runs[0]
            exp_id = run.info.experiment_id
            key = run.data.tags.get("lossopt.sweep_id") if query else None
            tags = client.get_experiment(exp_id).tags
            return exp_id, key if key and VIEW_TAG + key in tags else None
    return ids[0], None
