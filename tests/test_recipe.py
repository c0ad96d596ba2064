"""What a job does alike alone and in a stack: seeding as Lightning does it."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from lightning import seed_everything

from lossopt.core.recipe import seed_job


def _state() -> tuple:
    return (
        random.random(),
        float(np.random.random()),
        float(torch.rand(1)),
        os.environ.get("PL_GLOBAL_SEED"),
        os.environ.get("PL_SEED_WORKERS"),
    )


def test_seed_job_leaves_what_lightnings_seed_everything_leaves(monkeypatch):
    for seed in (0, 7, 2**31):
        monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
        monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
        seed_everything(seed, workers=True, verbose=False)
        lightnings = _state()
        monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
        monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
        seed_job(seed)
        assert _state() == lightnings
        assert lightnings[3] == str(seed) and lightnings[4] == "1"
