"""lossopt's ``grids`` sweeper: Hydra's basic sweeper over a union of grids.

Hydra's basic sweeper crosses every axis with every other. A study across tasks needs
per-task axes (the losses that serve a classification task are not those of a
regression task), so ``hydra.sweeper.grids`` adds a list of grids to the shared
``hydra.sweeper.params``; the jobs are the union, over the grids, of the cartesian
product of the shared axes and the grid's own (a key a grid sets wins over a shared
one), in grid order, each job once. scikit-learn's ``ParameterGrid`` given a list of
dicts does the same::

    hydra:
      sweeper:
        params: {optimizer: sgd,adam, seed: 0,1}
        grids:
          - {data: iris,wine, loss: cross_entropy,focal}
          - {data: linnerud, loss: mse,l1}

Everything else is the basic sweeper's (batches, ``max_batch_size``, the configs it
composes to check a batch), so every launcher works as with it. Without ``grids`` it
is the basic sweeper. Selected with ``override hydra/sweeper: grids``.

Why a sweeper: Hydra's own ways to per-task lists are one command per task, or one
config group option per (task, loss) pair swept with ``glob`` (a file per pair, kept
in step by hand); the defaults list's interpolations can combine group choices but
not look a list up by task.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before
# it is in sys.modules.
from typing import Any, Dict, List, Optional  # noqa: UP035

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

# The config (`hydra/sweeper/grids`) is a YAML file in lossopt.experiments, on Hydra's
# search path: found whether or not Hydra's scan walks this package.


class GridsSweeper(BasicSweeper):
    """The basic sweeper, with ``grids``: see the module docstring."""

    def __init__(
        self,
        max_batch_size: Optional[int] = None,  # noqa: UP045
        params: Optional[Dict[str, str]] = None,  # noqa: UP006, UP045
        grids: Optional[List[Dict[str, str]]] = None,  # noqa: UP006, UP045
    ) -> None:
        super().__init__(max_batch_size, params)
        self.grids = [dict(grid) for grid in grids or []]

    def split_arguments(self, overrides: List[Any], max_batch_size: Optional[int]) -> List[Any]:  # noqa: UP006, UP045
        """Batches of jobs (lists of ``key=value``); ``overrides``: the shared axes and
        the command line's, parsed."""
        if not self.grids:
            return BasicSweeper.split_arguments(overrides, max_batch_size)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs: dict[tuple[str, ...], None] = {}  # ordered, each job once
        for grid in self.grids:
            own = parser.parse_overrides([f"{key}={value}" for key, value in grid.items()])
            keys = {o.get_key_element() for o in own}
            shared = [o for o in overrides if o.get_key_element() not in keys]
            for job in BasicSweeper.split_arguments([*shared, *own], None)[0]:
                jobs[tuple(job)] = None
        listed = [list(job) for job in jobs]
        size = max_batch_size if max_batch_size and max_batch_size > 0 else len(listed) or 1
        return [listed[i : i + size] for i in range(0, len(listed), size)]
