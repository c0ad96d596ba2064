"""Optuna search as a Hydra sweeper: ask a batch of trials, train them through the
launcher, tell Optuna the results.

Hydra's own Optuna sweeper (hydra-optuna-sweeper 1.3) pins ``optuna<3``; this one uses
Optuna's ask-and-tell interface on a current release. The search space is written as
Hydra sweep overrides, on the command line or in ``hydra.sweeper.params``::

    lossopt train -m hydra/sweeper=optuna hydra.sweeper.n_trials=12 \\
        'optimizer.lr=tag(log, interval(1e-4, 1))' loss=cross_entropy,focal

``a,b`` / ``choice(a,b)`` is a categorical choice (plugin names included),
``interval(lo, hi)`` a continuous range (``tag(log, …)``: on a log scale; two ints: an
integer range), ``range(start, stop, step)`` a stepped one; overrides that are not
sweeps are the same for every trial.

Each batch of trials is one ``launch`` of the configured launcher, so the vectorized
launcher trains a batch's trials as one stacked model. Every trial is a job of the
sweep: a child run of the sweep's parent run (``core.sweep.callback``), skipped when already
FINISHED with the same config. A job that failed (its objective NaN) is told to Optuna
as a FAILED trial, not as a value. The direction is the monitor's mode (``max`` for
accuracy, ``min`` for a loss or MSE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from lossopt.core.errors import LossoptError

__all__ = ["SAMPLERS", "OptunaSearch", "SearchSpace", "search_space"]

SAMPLERS = ("tpe", "random")
TAG_TRIAL = "lossopt.optuna.trial"
console = Console()


@dataclass
class SearchSpace:
    """The searched keys (``optimizer.lr``, ``loss``) with their Optuna distributions,
    and the overrides every trial gets as they were written."""

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's job: ``key=value`` for each searched key, then the fixed ones."""
        return [f"{k}={_text(params[k])}" for k in self.distributions] + list(self.fixed.values())


def search_space(arguments: Sequence[str], config_loader: Any = None) -> SearchSpace:
    """Parse sweep overrides into a search space; a later override of a key wins.
    ``config_loader`` (Hydra's) lists a group's options for ``glob(…)``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create(config_loader).parse_overrides(list(arguments))
    except OverrideParseException as exc:
        raise LossoptError(str(exc)) from None
    space = SearchSpace()
    for override in parsed:
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP and config_loader is None:
            raise LossoptError(f"{override.input_line}: glob() needs Hydra's config loader.")
        if override.is_sweep_override():
            space.distributions[key] = _distribution(override)
        else:
            space.fixed[key] = str(override.input_line)
    return space


def _distribution(override) -> Any:
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key, sweep = override.get_key_element(), override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and sweep.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():  # Hydra's range excludes stop: the last value is the high
        values = list(override.sweep_iterator())
        if not values:
            raise LossoptError(f"{override.input_line}: the range is empty.")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(sweep.step))
        return FloatDistribution(values[0], values[-1], step=float(sweep.step))
    if override.is_interval_sweep():
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise LossoptError(
        f"{override.input_line}: the Optuna sweeper searches choices (a,b, glob(…)), "
        f"interval(lo, hi) and range(start, stop, step); give {key} one of those."
    )


def _text(value: Any) -> str:
    """A value as a Hydra override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class OptunaSearch:
    """The sweeper's work; see the module docstring.

    n_trials: trials in the study (a study resumed from ``storage`` runs up to that
    many in all). n_jobs: trials per batch handed to the launcher; None: a third of
    ``n_trials``, so the sampler learns from two batches before the last.
    storage: an Optuna storage URL (``sqlite:///optuna.db``); None keeps the study in
    memory. study_name: the study's name in ``storage``; None: one per sweep command.
    """

    def __init__(
        self,
        n_trials: int = 20,
        n_jobs: int | None = None,
        sampler: str = "tpe",
        seed: int | None = 0,
        storage: str | None = None,
        study_name: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        problems = [
            f"hydra.sweeper.{key}={value}: give a positive number"
            for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs))
            if value is not None and value < 1
        ]
        if sampler not in SAMPLERS:
            problems.append(f"hydra.sweeper.sampler={sampler}: choose one of {', '.join(SAMPLERS)}")
        if problems:
            raise LossoptError("; ".join(problems) + ".")
        self.n_trials, self.sampler, self.seed = n_trials, sampler, seed
        self.batch = n_jobs or math.ceil(n_trials / 3)
        self.storage, self.study_name = storage, study_name
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: Sequence[str]) -> list:
        import optuna

        from lossopt.core.train import monitor_of

        assert self.config is not None
        space = search_space(
            [f"{k}={v}" for k, v in self.params.items()] + list(arguments),
            self.hydra_context.config_loader,
        )
        if not space.distributions:
            raise LossoptError(
                "the Optuna sweeper has nothing to search: give an axis, e.g. "
                "'optimizer.lr=tag(log, interval(1e-4, 1))' or loss=cross_entropy,focal."
            )
        monitor, mode = monitor_of(self.config)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print what matters
        study = self._study("maximize" if mode == "max" else "minimize")
        done = len(study.get_trials(deepcopy=False, states=_ended_states()))
        if done:
            console.print(f"Resuming study {study.study_name}: {done} trials ended earlier")
        returns: list = []
        job = 0
        while (left := self.n_trials - done) > 0:
            trials = [study.ask(space.distributions) for _ in range(min(self.batch, left))]
            batch = [space.overrides(trial.params) for trial in trials]
            console.print(
                f"Optuna: trials {trials[0].number}-{trials[-1].number} of {self.n_trials}"
            )
            for overrides in batch:  # fails early on a config that does not compose
                self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            results = self.launcher.launch(batch, initial_job_idx=job)
            for trial, result, num in zip(
                trials, results, range(job, job + len(batch)), strict=True
            ):
                self._tell(study, trial, result, num)
            returns += results
            job += len(batch)
            done += len(batch)
        _print_best(study, monitor)
        self._record(study, monitor)
        return returns

    def _study(self, direction: str):
        import optuna

        from lossopt.core.sweep.callback import sweep_id

        sampler = (
            optuna.samplers.TPESampler(seed=self.seed)
            if self.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=self.seed)
        )
        name = self.study_name or f"lossopt-{sweep_id(self.config)}"
        study = optuna.create_study(
            storage=self.storage, sampler=sampler, study_name=name, load_if_exists=True,
            direction=direction,
        )  # fmt: skip
        if study.direction.name.lower() != direction:
            raise LossoptError(
                f"study {name} in {_safe(self.storage)} is set to "
                f"{study.direction.name.lower()}, but the monitor ({self.config.monitor}) "
                f"asks to {direction}. Give another hydra.sweeper.study_name."
            )
        return study

    def _tell(self, study, trial, result, job: int) -> None:
        """Optuna learns the job's objective; a failed job is a FAILED trial."""
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        from lossopt.core.job_context import job_context
        from lossopt.core.sweep.job import read_result

        value = result._return_value if result.status == JobStatus.COMPLETED else None
        row = read_result(job_context()[1], job) or {}
        if run_id := row.get("run_id"):
            trial.set_user_attr("mlflow_run_id", run_id)
            self._tag_run(run_id, trial.number)
        if isinstance(value, int | float) and math.isfinite(value):
            study.tell(trial, float(value))
        else:
            study.tell(trial, state=TrialState.FAIL)

    def _tag_run(self, run_id: str, number: int) -> None:
        """The trial's number on its MLflow run."""
        assert self.config is not None
        if self.config.tracking.enabled:
            from lossopt.core.store import open_client
            from lossopt.core.tracking import tracking_uri

            open_client(tracking_uri(self.config)).set_tag(run_id, TAG_TRIAL, str(number))

    def _record(self, study, monitor: str) -> None:
        """The study in the sweep folder (``optimization_results.yaml``, as Hydra's
        sweeper writes it) and on the sweep's parent run (``optuna.json``)."""
        from lossopt.core.job_context import job_context

        assert self.config is not None
        record = _study_record(study, monitor, _safe(self.storage))
        folder = Path(str(self.config.hydra.sweep.dir))
        folder.mkdir(parents=True, exist_ok=True)
        best = {k: record[k] for k in ("name", "best_params", "best_value") if k in record}
        OmegaConf.save(OmegaConf.create(best), folder / "optimization_results.yaml")
        parent = job_context()[0]
        if parent and self.config.tracking.enabled:
            from lossopt.core.store import open_client
            from lossopt.core.tracking import tracking_uri

            client = open_client(tracking_uri(self.config))
            client.log_dict(parent, record, "optuna.json")
            client.set_tag(parent, "lossopt.search", "optuna")


def _ended_states():
    """The states of trials that count toward ``n_trials``."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def _study_record(study, monitor: str, storage: str) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "run_id": t.user_attrs.get("mlflow_run_id"),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    record: dict[str, Any] = {
        "name": "optuna",
        "study": study.study_name,
        "storage": storage,
        "direction": study.direction.name.lower(),
        "monitor": monitor,
        "trials": trials,
    }
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        best = study.best_trial
        record.update(best_trial=best.number, best_params=best.params, best_value=best.value)
    return record


def _print_best(study, monitor: str) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    note = f", {failed} failed" if failed else ""
    if not any(t.state == TrialState.COMPLETE for t in trials):
        console.print(f"[bold red]Optuna: no trial completed[/] ({len(trials)} trials{note})")
        return
    best = study.best_trial
    params = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={_text(v)}"
        for k, v in best.params.items()
    )
    run = best.user_attrs.get("mlflow_run_id")
    console.print(
        f"[bold]Best trial {best.number}[/] of {len(trials)}{note}: {monitor} "
        f"[bold]{best.value:.4f}[/], {params}" + (f" (run {run[:8]})" if run else "")
    )


def _safe(storage: str | None) -> str:
    """A storage URL without its password, for printing and recording."""
    if not storage:
        return "memory"
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # not a database URL: shown as given
        return storage
