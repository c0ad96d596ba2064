"""`lossopt train` starts up with the garbage collector off, and trains with it on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the real command in a fresh process (the collector's state is per process) and
# records the collector's state when the job validates its config, i.e. after settle().
SCRIPT = """
import gc, json, sys
import lossopt.core.train as train
from lossopt.core.cli import main

seen = {}
validate = train.validate
def spy(cfg):
    seen.update(in_job_enabled=gc.isenabled(), in_job_frozen=gc.get_freeze_count())
    return validate(cfg)
train.validate = spy
status = main(sys.argv[1:])
print(json.dumps({**seen, "status": status, "after_enabled": gc.isenabled()}))
"""


def _train(tmp_path: Path, *overrides: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, "train", *overrides],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.slow
def test_a_job_trains_with_the_collector_on_and_start_up_objects_frozen(tmp_path: Path):
    seen, stderr = _train(
        tmp_path, "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "tracking=none"
    )
    assert seen["status"] == 0
    assert seen["in_job_enabled"] is True
    assert seen["in_job_frozen"] > 100_000  # torch, Lightning, Hydra… out of its passes
    assert seen["after_enabled"] is True
    # Frozen objects are released at exit: no leak report from extension modules.
    assert "leaked" not in stderr, stderr[-3000:]


def test_a_command_that_stops_before_any_job_leaves_the_collector_on(tmp_path: Path):
    seen, _ = _train(tmp_path, "--cfg", "job")
    assert "in_job_enabled" not in seen  # no job ran
    assert seen["after_enabled"] is True
