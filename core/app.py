"""Where the Hydra configs live, and composing them outside ``lossopt train``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lossopt.conf
from omegaconf import DictConfig

CONFIG_DIR = str(Path(lossopt.conf.__file__).parent)
CONFIG_NAME = "train"
VERSION_BASE = "1.3"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``lossopt train OVERRIDES`` would run, composed without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from lossopt.core.configs import store_configs

    store_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=VERSION_BASE):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=False)
