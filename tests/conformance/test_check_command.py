"""`lossopt check` as a user runs it: a table of rules per plugin, exit 1 with the
failing rule's message, one clear error for unknown names."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lossopt.core.cli import main

BAD_LOSS = """
import torch.nn.functional as F
from torch import nn


class PerSample(nn.Module):
    def forward(self, logits, target):
        return F.cross_entropy(logits, target, reduction="none")
"""


def test_named_plugins_pass_with_a_table(capsys):
    assert main(["check", "focal", "optimizer/sgd", "cosine"]) == 0
    out = capsys.readouterr().out
    for expected in ("loss rules", "optimizer rules", "scheduler rules", "focal", "sgd"):
        assert expected in out
    assert "gradients-reach-output" in out and "stacked-equals-members" in out
    assert "0 failed" in out and "FAIL" not in out


def test_a_failing_rule_exits_1_with_its_message(fake_dist, capsys):
    fake_dist(
        "bad-losses",
        {"lossopt.losses": {"per_sample": "bad_losses:PerSample"}},
        {"bad_losses": BAD_LOSS},
    )
    assert main(["check", "per_sample", "-v"]) == 1
    out = " ".join(capsys.readouterr().out.split())  # undo rich's line wrapping
    assert "FAIL loss/per_sample finite-scalar: on multiclass: expected a scalar" in out
    assert "1 failed" in out
    # -v says why the rules that need a scalar were not applied
    assert "n/a loss/per_sample gradients-reach-output: needs a scalar loss value" in out


def test_unknown_names_are_one_error_listing_the_available(capsys):
    assert main(["check", "focall", "optimizer/adamm"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no plugin named 'focall'. Did you mean 'focal'?" in err
    assert "unknown optimizer 'adamm'" in err and "Available: adadelta" in err
    assert "Traceback" not in err


def test_no_name_asks_for_names_or_all(capsys):
    assert main(["check"]) == 2
    assert "--all" in capsys.readouterr().err


@pytest.mark.slow
def test_check_all_passes_for_every_installed_plugin():
    result = subprocess.run(
        [sys.executable, "-m", "lossopt.core.cli", "check", "--all"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " 0 failed" in result.stdout
