"""One GPU per parallel sweep worker (core/sweep/gpu_slots.py), checked without GPUs: the
slot locks between real processes, and which device a worker is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossopt.core.sweep import gpu_slots

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
ONE_GPU = {"accelerator": "gpu", "devices": 1}

_HOLDER = """
import sys
from pathlib import Path
from lossopt.core.sweep.gpu_slots import claim_slot
print(claim_slot(Path(sys.argv[1]), int(sys.argv[2])), flush=True)
sys.stdin.readline()  # hold the slot until the test lets go
"""


@pytest.fixture
def fresh_process(monkeypatch):
    """This test process has claimed no slot yet, and gets its environment back."""
    monkeypatch.setattr(gpu_slots, "_claimed", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # recorded, so the undo restores it
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")


def _holder(folder: Path, count: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


def test_live_workers_get_different_slots_and_a_finished_one_frees_its_slot(tmp_path):
    first, slot_a = _holder(tmp_path, 2)
    second, slot_b = _holder(tmp_path, 2)
    third, slot_c = _holder(tmp_path, 2)
    assert {slot_a, slot_b} == {"0", "1"}
    assert slot_c == "None"  # more workers than slots
    for process in (first, third):
        process.communicate("\n")
    fourth, slot_d = _holder(tmp_path, 2)
    assert slot_d == slot_a  # the slot of the worker that ended
    for process in (second, fourth):
        process.communicate("\n")


def test_a_worker_keeps_its_slot_for_its_next_jobs(tmp_path, fresh_process):
    assert gpu_slots.claim_slot(tmp_path, 4) == 0
    assert gpu_slots.claim_slot(tmp_path, 4) == 0


def test_a_joblib_worker_sees_only_its_own_gpu(tmp_path, fresh_process, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    holder, taken = _holder(tmp_path, 4)
    try:
        assert gpu_slots.pin_worker_gpu(ONE_GPU, JOBLIB, tmp_path) == "1"
        assert taken == "0"
    finally:
        holder.communicate("\n")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_the_slot_maps_into_the_gpus_already_made_visible(tmp_path, fresh_process, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    assert gpu_slots.pin_worker_gpu(ONE_GPU, JOBLIB, tmp_path) == "6"


@pytest.mark.parametrize(
    ("trainer", "launcher", "gpus"),
    [
        (ONE_GPU, BASIC, 4),  # jobs one after another: nothing to share
        ({"accelerator": "gpu", "devices": 2}, JOBLIB, 4),  # DDP spreads by itself
        ({"accelerator": "cpu", "devices": 1}, JOBLIB, 4),
        (ONE_GPU, JOBLIB, 1),
    ],
    ids=["basic-launcher", "ddp-job", "cpu-job", "one-gpu-machine"],
)
def test_devices_are_left_alone_where_no_job_would_share_a_gpu(
    tmp_path, fresh_process, monkeypatch, trainer, launcher, gpus
):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert gpu_slots.pin_worker_gpu(trainer, launcher, tmp_path) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
