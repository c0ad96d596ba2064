"""What a job does the same way whether it trains alone (``core.train``, Lightning's
``Trainer``) or as a member of a stack (``core.sweep.stacked``): seeding and the optimizer's
parameter groups.

Lightning-free on purpose: a sweep whose jobs all train stacked never imports
Lightning, torchmetrics or torchvision (with ``torch._dynamo``, which they pull in,
1.2 s of each sweep's start-up on the 2-core development machine).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import Tensor

__all__ = ["parameter_groups", "seed_job"]


def seed_job(seed: int) -> None:
    """Lightning's ``seed_everything(seed, workers=True)``: Python's, NumPy's and
    torch's generators, and the variables that tell Lightning's worker and DDP
    processes to seed themselves (a test compares both with Lightning's own)."""
    seed = int(seed)
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"


def parameter_groups(
    params: list[Tensor], weight_decay: float | None, leading: int = 0
) -> list[dict]:
    """The parameters to optimize; with weight decay, biases and normalization weights
    (the 1-D parameters) go to a group without it, as is standard practice.

    leading: dimensions in front of each parameter's own (a stack's member dimension).
    """
    if not weight_decay:
        return [{"params": params}]
    decay = [p for p in params if p.ndim - leading > 1]
    no_decay = [p for p in params if p.ndim - leading <= 1]
    return [
        g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]
    ]
