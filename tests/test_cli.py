"""The `lossopt plugins` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from lossopt.core.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lossopt.core.cli", *args],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_plugins_lists_every_kind_with_source_and_status():
    result = _run("plugins")
    assert result.returncode == 0, result.stderr
    for expected in ("loss", "optimizer", "scheduler", "focal", "sgd", "lossopt==0.1.0", "ok"):
        assert expected in result.stdout


def test_show_focal_prints_parameters_types_defaults():
    result = _run("plugins", "show", "focal")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "loss/focal" in out and "gamma" in out and "float" in out and "2.0" in out
    assert "multiclass" in out


def test_show_sgd_with_kind_prefix():
    result = _run("plugins", "show", "optimizer/sgd")
    assert result.returncode == 0, result.stderr
    for expected in ("momentum", "nesterov", "weight_decay", "[0, 1)"):
        assert expected in result.stdout


def test_unknown_name_is_one_clear_error_with_a_suggestion():
    result = _run("plugins", "show", "focall")
    assert result.returncode != 0
    assert "Did you mean 'focal'" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_returns_non_zero_for_unknown_kind(capsys):
    assert main(["plugins", "--kind", "losses"]) != 0
    assert "Did you mean 'loss'" in capsys.readouterr().err
