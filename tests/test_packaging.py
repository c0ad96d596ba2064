"""A normal (wheel) install carries the code, the configs and the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_works_outside_the_checkout(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("lossopt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "lossopt/__init__.py",
        "lossopt/testing.py",
        "lossopt/core/registry.py",
        "lossopt/plugins/losses.py",
        "lossopt/conf/train.yaml",
        "lossopt/conf/trainer/cpu.yaml",
        "hydra_plugins/lossopt_launcher/__init__.py",  # where Hydra looks for launchers
        "hydra_plugins/lossopt_optuna/__init__.py",  # … and sweepers
    ):
        assert expected in names, expected
    assert not any(n.startswith(("lossopt/tests/", "lossopt/examples/")) for n in names)

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    probe = (
        "import lossopt, lossopt.core.composition as composition\n"
        "print(lossopt.__file__); print(composition.CONFIG_DIR)\n"
        "print(','.join(lossopt.available('loss')))\n"
        "print(lossopt.create_loss('focal', gamma=1.0))\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.launcher import Launcher\n"
        "print(','.join(p.__name__ for p in Plugins.instance().discover(Launcher)))\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "print(','.join(p.__name__ for p in Plugins.instance().discover(Sweeper)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    module_file, config_dir, losses, focal, launchers, sweepers = out.stdout.splitlines()[:6]
    assert module_file.startswith(str(target)) and config_dir.startswith(str(target))
    assert "focal" in losses.split(",") and "FocalLoss" in focal
    # Installed from a wheel, Hydra's own plugin scan finds the vectorized launcher.
    assert "VectorizedLauncher" in launchers.split(",")
    assert "OptunaSweeper" in sweepers.split(",")
