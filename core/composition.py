"""The config ``lossopt train`` runs: where its files are, the Hydra plugins it names,
and composing it outside the command (the conformance rules, the re-run stage, tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

import lossopt.conf
from lossopt.core.configs import PLUGIN_GROUPS, store_configs
from lossopt.core.errors import LossoptError
from lossopt.core.registry import registry

__all__ = [
    "CONFIG_DIR",
    "CONFIG_NAME",
    "VERSION_BASE",
    "check_plugin_choices",
    "compose",
    "register_hydra_plugins",
]

CONFIG_DIR = str(Path(lossopt.conf.__file__).parent)
CONFIG_NAME = "train"
VERSION_BASE = "1.3"


def register_hydra_plugins() -> None:
    """Make lossopt's Hydra plugins (vectorized launcher, Optuna and grids sweepers)
    known to Hydra.

    Hydra 1.3 finds launchers by walking the ``hydra_plugins`` namespace package, which
    an editable install hides from it (setuptools' import hook cannot be walked; Hydra
    issue 2359, solved by entry points in Hydra 1.4). Importing the module stores its
    config; the class goes into Hydra's plugin table as the scan would have put it.
    """
    from hydra.core.plugins import Plugins

    # The scan first: it re-executes the modules it finds (Hydra's own basic sweeper
    # among them), so a class imported before it would subclass a BasicSweeper that
    # the module no longer holds (super() then fails in its methods).
    plugins = Plugins.instance()
    import hydra_plugins.lossopt_launcher as launcher
    import hydra_plugins.lossopt_optuna as optuna
    import hydra_plugins.lossopt_sweeper as grids

    for plugin in (launcher.VectorizedLauncher, optuna.OptunaSweeper, grids.GridsSweeper):
        plugins.register(plugin)  # replaces a copy the scan may have loaded


def compose(overrides: Sequence[str] = (), with_hydra: bool = False) -> DictConfig:
    """The config ``lossopt train OVERRIDES`` would run, composed without running it
    (``with_hydra``: its ``hydra`` node too, as a sweep's jobs see it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    store_configs()
    register_hydra_plugins()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=VERSION_BASE):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=with_hydra)


def check_plugin_choices(args: Sequence[str]) -> None:
    """Unknown plugin names in ``loss=…`` / ``-m loss=a,b`` fail with close matches,
    before Hydra answers with a bare list of options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    candidates = [a for a in args if "=" in a and a.split("=", 1)[0] in PLUGIN_GROUPS]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except OverrideParseException as exc:
        raise LossoptError(str(exc)) from None
    for override in overrides:
        names = override.sweep_iterator() if override.is_sweep_override() else [override.value()]
        for name in names:
            registry(override.key_or_group).plugin(str(name))  # raises when unknown
