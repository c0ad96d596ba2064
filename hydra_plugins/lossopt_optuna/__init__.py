"""lossopt's Optuna sweeper, registered with Hydra (``hydra/sweeper=optuna``).

Hydra builds sweepers only from classes in the ``hydra_plugins`` namespace package,
so the class Hydra instantiates lives here; the work is done by
``lossopt.core.sweep.search.OptunaSearch``, imported when a sweep starts (Hydra scans this
module at every start-up: it stays light, Optuna is not imported here).
"""

# No `from __future__ import annotations`: Hydra's scan runs this module before it is
# in sys.modules, where dataclasses would look up string annotations.
from dataclasses import dataclass
from typing import Any, Dict, List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.lossopt_optuna.OptunaSweeper"
    # Trials in the study (a study resumed from `storage` runs up to that many in all).
    n_trials: int = 20
    # Trials per batch handed to the launcher (trained stacked when they can be);
    # null: a third of n_trials.
    n_jobs: Optional[int] = None  # noqa: UP045 (OmegaConf reads typing.Optional)
    # tpe or random; seeded, so the same command proposes the same trials.
    sampler: str = "tpe"
    seed: Optional[int] = 0  # noqa: UP045
    # An Optuna storage URL (sqlite:///optuna.db, postgresql://…); null: in memory.
    storage: Optional[str] = None  # noqa: UP045
    # The study's name in `storage`; null: one name per sweep command.
    study_name: Optional[str] = None  # noqa: UP045
    # The search space as sweep overrides, {key: "interval(1e-4, 1)"}; the command
    # line's sweep overrides add to it.
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="lossopt"
)


class OptunaSweeper(Sweeper):
    """Searches with Optuna (ask and tell), a batch of trials per launch."""

    def __init__(
        self,
        n_trials: int = 20,
        n_jobs: Optional[int] = None,  # noqa: UP045
        sampler: str = "tpe",
        seed: Optional[int] = 0,  # noqa: UP045
        storage: Optional[str] = None,  # noqa: UP045
        study_name: Optional[str] = None,  # noqa: UP045
        params: Optional[Dict[str, str]] = None,  # noqa: UP006, UP045
    ) -> None:
        from lossopt.core.sweep.search import OptunaSearch

        self._search = OptunaSearch(n_trials, n_jobs, sampler, seed, storage, study_name, params)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self._search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006
        return self._search.sweep(arguments)
