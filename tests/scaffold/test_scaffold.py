"""`lossopt new-plugin`: the package it writes keeps every rule of its kind as generated,
installs with pip, and passes its own tests and `lossopt check`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lossopt.core.cli import main
from lossopt.core.conformance.kit import check
from lossopt.core.errors import LossoptError, PluginError
from lossopt.core.registry import GROUPS
from lossopt.core.scaffold.package import write_package

# `new-plugin --kind` -> the registry's kind
KINDS = {"loss": "loss", "optimizer": "optimizer", "model": "model", "dataset": "data"}
KINDS |= {"scheduler": "scheduler"}


def _entry_points(folder: Path) -> dict[str, dict[str, str]]:
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]["entry-points"]


@pytest.mark.parametrize("cli_kind", list(KINDS))
def test_generated_plugin_keeps_every_rule(tmp_path, fake_dist, cli_kind):
    """The generated module, registered through the generated entry point."""
    folder = tmp_path / "my-plugins"
    assert main(["new-plugin", str(folder), "--kind", cli_kind, "--name", "mine"]) == 0
    kind = KINDS[cli_kind]
    entry_points = _entry_points(folder)
    assert entry_points == {GROUPS[kind]: {"mine": entry_points[GROUPS[kind]]["mine"]}}
    module = entry_points[GROUPS[kind]]["mine"].partition(":")[0]
    source = folder / "src" / Path(*module.split(".")).with_suffix(".py")
    fake_dist("my-plugins", entry_points, {module: source.read_text()})
    results = check(f"{kind}/mine")
    assert [r for r in results if r.status == "fail"] == []
    assert "tests/test_lossopt_rules.py" in [
        p.relative_to(folder).as_posix() for p in folder.rglob("*.py")
    ]


def test_refuses_a_name_taken_a_bad_name_and_a_used_folder(tmp_path):
    with pytest.raises(PluginError, match="already registered by lossopt==0.1.0"):
        write_package(tmp_path / "a", "loss", "focal")
    with pytest.raises(LossoptError, match="lower-case letters"):
        write_package(tmp_path / "b", "loss", "My-Loss")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(LossoptError, match="not an empty folder"):
        write_package(tmp_path / "c", "loss", "fresh")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _run(*args: str, cwd: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["loss", "optimizer"])
def test_generated_package_installs_and_passes_its_tests_and_check(tmp_path, kind):
    """pip installs it into a folder of its own (the venv is left as it was); its own
    tests and `lossopt check` pass there, and `lossopt plugins` shows its source."""
    folder, site = tmp_path / f"lossopt-my-{kind}", tmp_path / "site"
    name = f"my_{kind}"
    write_package(folder, kind, name)
    pip = ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    installed = _run(*pip, "--target", str(site), str(folder), cwd=tmp_path, site=site)
    assert installed.returncode == 0, installed.stderr
    assert (site / f"lossopt_my_{kind}-0.1.0.dist-info").is_dir()

    tests = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=folder, site=site)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    checked = _run("-m", "lossopt.core.cli", "check", name, cwd=tmp_path, site=site)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    assert "0 failed" in checked.stdout

    listed = _run("-m", "lossopt.core.cli", "plugins", "--kind", kind, cwd=tmp_path, site=site)
    assert name in listed.stdout and f"lossopt-my-{kind}==0.1.0" in listed.stdout
