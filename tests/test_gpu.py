"""The GPU paths: stacks on a CUDA device train as their jobs run alone there, in
float32 and in bf16-mixed, for an MLP and a convolutional model; a single run in the
`trainer=gpu` preset and one under DDP finish. Skipped without a CUDA device (CI has
none); run on a GPU machine with `pytest tests/test_gpu.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_stacked import MEMBERS, _alone, _configs, _series

from lossopt.core.sweep.launcher import stack_key
from lossopt.core.sweep.stacked import train_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

GPU = ["trainer.accelerator=gpu"]
LENET = ["data=synthetic_images", "data.n_samples=2000", "model=lenet5"]


@pytest.mark.parametrize(
    ("extra", "rtol"),
    [
        (GPU, 2e-3),  # as on the CPU
        # cuDNN's convolutions may use TF32 and pick other algorithms for a batch of
        # members than for one model: the stack and the job round further apart.
        ([*GPU, *LENET], 2e-2),
        ([*GPU, "trainer.precision=bf16-mixed"], 2e-2),
    ],
    ids=["mlp-float32", "lenet5-float32", "mlp-bf16-mixed"],
)
def test_stacked_members_on_the_gpu_train_as_their_jobs_alone(extra, rtol, tmp_path):
    members = [MEMBERS[0], MEMBERS[2], MEMBERS[5]]
    configs = _configs(members, *extra)
    assert len({stack_key(cfg)[0] for cfg in configs}) == 1
    outcomes = train_stack(configs, [tmp_path / f"m{i}" for i in range(len(configs))])
    for i, (overrides, outcome) in enumerate(zip(members, outcomes, strict=True)):
        assert outcome.error is None, outcome.error
        _, recorded = _alone([*overrides, *extra], tmp_path / str(i))
        stacked = torch.tensor(_series(outcome.history, "val/loss"))
        assert len(stacked) == len(recorded["val/loss"]) == 3
        assert torch.allclose(stacked, torch.tensor(recorded["val/loss"]), rtol=rtol), overrides


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer=gpu"],  # bf16-mixed on one GPU
        ["trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=1"],
    ],
    ids=["gpu-preset", "ddp"],
)
def test_a_run_on_the_gpu_finishes_and_is_recorded(overrides, tmp_path: Path):
    lossopt = Path(sys.executable).with_name("lossopt")
    command = [str(lossopt) if lossopt.exists() else "lossopt", "train", *overrides]
    result = subprocess.run(
        [*command, "trainer.max_epochs=2", "trainer.enable_progress_bar=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.metrics["best_val/accuracy"] > 0.5
    assert runs[0].data.params["trainer.accelerator"] in ("gpu", "auto")
