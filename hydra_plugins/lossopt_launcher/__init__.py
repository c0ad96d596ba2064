"""lossopt's vectorized launcher, registered with Hydra.

Hydra discovers launchers only inside the ``hydra_plugins`` namespace package, so this
is where the class Hydra instantiates lives; the work is done by
``lossopt.core.sweep.launcher.StackingLauncher``, imported when a sweep starts (Hydra scans
this module at every start-up: it stays light).
"""

# No `from __future__ import annotations`: Hydra's scan runs this module before it is
# in sys.modules, where dataclasses would look up string annotations.
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.lossopt_launcher.VectorizedLauncher"
    # The most jobs one stacked model holds; null sizes stacks by free device memory.
    max_members: Optional[int] = None  # noqa: UP045 (OmegaConf reads typing.Optional)
    # torch's threads while a stack trains on the CPU; null takes half the cores.
    cpu_threads: Optional[int] = None  # noqa: UP045
    # On the CPU, a group of 16 jobs or more trains as two stacks at once (two processes).
    parallel_stacks: bool = True


ConfigStore.instance().store(
    group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf, provider="lossopt"
)


class VectorizedLauncher(Launcher):
    """Trains the jobs of a batch that can share one stacked model at once."""

    def __init__(
        self,
        max_members: Optional[int] = None,  # noqa: UP045
        cpu_threads: Optional[int] = None,  # noqa: UP045
        parallel_stacks: bool = True,
    ) -> None:
        from lossopt.core.sweep.launcher import StackingLauncher

        self._launcher = StackingLauncher(max_members, cpu_threads, parallel_stacks)

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self._launcher.setup(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        return self._launcher.launch(job_overrides, initial_job_idx)
