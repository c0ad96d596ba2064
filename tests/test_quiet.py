"""A calm terminal: `lossopt train` and sweeps, run as a user runs them in an 80-column
terminal, print no third-party line the user cannot act on; `-v` brings them back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Each line a user cannot act on, as the library prints it.
NOISE = {
    "mlflow schema": "Creating initial MLflow database tables",
    "litlogger tip": "try installing [litlogger]",
    "LeafSpec deprecation": "isinstance(treespec, LeafSpec)",
    "test restore": "Restoring states from the checkpoint path",
    "no TPU": "TPU available: False",
}
SWEEP_NOISE = {**NOISE, "device lines": "GPU available:", "fit stopped": "`Trainer.fit` stopped"}
SWEEP = ["-m", "loss=cross_entropy,focal", "optimizer=sgd,lbfgs", "trainer.max_epochs=1"]


def _lossopt(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LOSSOPT_VERBOSE"}
    result = subprocess.run(
        [sys.executable, "-m", "lossopt.core.cli", "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _noise_in(output: str, noise: dict[str, str]) -> list[str]:
    return [name for name, text in noise.items() if text in output]


@pytest.mark.slow
def test_a_run_prints_no_third_party_noise_and_v_brings_it_back(tmp_path):
    output = _lossopt("trainer.max_epochs=1", cwd=tmp_path)  # a fresh store: schema created
    assert _noise_in(output, NOISE) == [], output
    assert "best val/accuracy" in output and "lossopt ui" in output
    # Lightning's lines once each (its own console and Hydra's printed them both).
    for line in ("GPU available: False, used: False", "`Trainer.fit` stopped: `max_epochs=1`"):
        assert output.count(line) == 1, output
    assert "INFO: GPU available" in output  # the terminal's short form; the log file has it all
    assert "GPU available" in next(tmp_path.glob("outputs/*/*/lossopt.log")).read_text()

    verbose = _lossopt("-v", "trainer.max_epochs=1", cwd=tmp_path)
    shown = _noise_in(verbose, NOISE)  # the store exists now: no schema to create
    assert shown == ["litlogger tip", "LeafSpec deprecation", "test restore", "no TPU"]


@pytest.mark.slow
def test_a_sweep_prints_one_line_a_job_and_a_summary_that_fits_80_columns(tmp_path):
    output = _lossopt(*SWEEP, cwd=tmp_path)
    assert _noise_in(output, SWEEP_NOISE) == [], output
    lines = output.splitlines()
    finished = sorted(line.split()[1] for line in lines if line.startswith("job "))
    assert finished == ["0", "1", "2", "3"], output  # one line each, stacked or alone
    assert "config" not in output and "Best checkpoint" not in output
    table = lines[next(i for i, line in enumerate(lines) if "sweep summary" in line) :]
    assert max(map(len, table)) <= 80, "\n".join(table)
    header = table[1].split()
    assert header == ["#", "loss", "optimizer", "lr", "seed", "val/accuracy", "status", "run"]
    rows = [line.split() for line in table[3:] if line.strip()]
    assert len(rows) == 4 and all(row[6] == "finished" for row in rows), "\n".join(table)
    assert "…" not in "\n".join(table)


@pytest.mark.slow
def test_a_verbose_sweep_shows_each_jobs_config_and_lightnings_lines(tmp_path):
    output = _lossopt("-v", *SWEEP[:2], "optimizer=lbfgs", "trainer.max_epochs=1", cwd=tmp_path)
    assert "config" in output and "Best checkpoint" in output
    assert {"device lines", "fit stopped", "litlogger tip"} <= set(_noise_in(output, SWEEP_NOISE))


def test_filters_are_precise_a_fit_resumed_and_other_warnings_still_show():
    """The filters drop exactly the lines named in lossopt.core._quiet, nothing else."""
    script = """
import logging, sys, warnings
from lossopt.core._quiet import calm
logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
calm(sweep=True)
log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
log.info("Restoring states from the checkpoint path at /x/best.ckpt")
log.info("Restored all states from the checkpoint at /x/last.ckpt")
log.info("GPU available: True (cuda), used: True")
logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
logging.getLogger("mlflow.store.db.utils").warning("the store is read-only")
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    calm()
    warnings.warn("There is a performance drop because we have not yet implemented the "
                  "batching rule for aten::foo", UserWarning)
    warnings.warn("The AccumulateGrad node's stream does not match ... you can use "
                  "torch.autograd.graph.set_warn_on_accumulate_grad_stream_mismatch(False) "
                  "to suppress this warning.", UserWarning)
    warnings.warn("The 'val_dataloader' does not have many workers which may be a "
                  "bottleneck. Consider increasing the value of the `num_workers` argument")
    warnings.warn("lr is too high", UserWarning)
for w in caught:
    print(w.message)
"""
    env = {k: v for k, v in os.environ.items() if k != "LOSSOPT_VERBOSE"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Restored all states from the checkpoint at /x/last.ckpt",
        "the store is read-only",
        "lr is too high",
    ]
