"""Built-in learning-rate schedule plugins.

Each factory takes the optimizer and the number of scheduler steps (``total_steps``,
counted in the spec's interval) at build time; the rest is config. torch's schedulers
do the work.
"""

from __future__ import annotations

from typing import Literal

from torch.optim import Optimizer, lr_scheduler

from lossopt.core.checks import Range
from lossopt.core.specs import SchedulerSpec

_FRACTION = Range(0.0, 1.0)
_POSITIVE = Range(0.0, None, low_inclusive=False)


def constant(optimizer: Optimizer, total_steps: int) -> lr_scheduler.LRScheduler:
    """Constant learning rate (no schedule)."""
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def step(
    optimizer: Optimizer, total_steps: int, step_size: int = 10, gamma: float = 0.1
) -> lr_scheduler.LRScheduler:
    """Multiply the rate by gamma every step_size epochs."""
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def multistep(
    optimizer: Optimizer, total_steps: int, milestones: list[int] | None = None, gamma: float = 0.1
) -> lr_scheduler.LRScheduler:
    """Multiply the rate by gamma at each milestone epoch (default: 50% and 75%)."""
    milestones = milestones or [total_steps // 2, (3 * total_steps) // 4]
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


def exponential(
    optimizer: Optimizer, total_steps: int, gamma: float = 0.95
) -> lr_scheduler.LRScheduler:
    """Multiply the rate by gamma every epoch."""
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def cosine(
    optimizer: Optimizer, total_steps: int, eta_min: float = 0.0
) -> lr_scheduler.LRScheduler:
    """Cosine annealing from the initial rate to eta_min over the whole run."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=eta_min)


def onecycle(
    optimizer: Optimizer,
    total_steps: int,
    max_lr_factor: float = 10.0,
    pct_start: float = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
) -> lr_scheduler.LRScheduler:
    """One-cycle policy: warm up to max_lr_factor × lr, then anneal (Smith 2018)."""
    max_lr = [group["lr"] * max_lr_factor for group in optimizer.param_groups]
    return lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=max(2, total_steps),
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
    )


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.1, eta_min: float = 0.0
) -> lr_scheduler.LRScheduler:
    """Linear warm-up over warmup_fraction of the run, then cosine annealing."""
    warmup = max(1, int(total_steps * warmup_fraction))
    return lr_scheduler.SequentialLR(
        optimizer,
        [
            lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup),
            lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, total_steps - warmup), eta_min=eta_min
            ),
        ],
        milestones=[warmup],
    )


# A constant rate is the same whatever the interval; per epoch it costs nothing per step.
none = SchedulerSpec(constant, "Constant learning rate (no schedule).", interval="epoch")
step_lr = SchedulerSpec(
    step, interval="epoch", checks={"step_size": Range(1, None), "gamma": _POSITIVE}
)
multistep_lr = SchedulerSpec(multistep, interval="epoch", checks={"gamma": _POSITIVE})
exponential_lr = SchedulerSpec(exponential, interval="epoch", checks={"gamma": _POSITIVE})
cosine_lr = SchedulerSpec(cosine, checks={"eta_min": Range(0.0, None)})
onecycle_lr = SchedulerSpec(
    onecycle,
    checks={"max_lr_factor": _POSITIVE, "pct_start": _FRACTION},
)
warmup_cosine_lr = SchedulerSpec(
    warmup_cosine, checks={"warmup_fraction": _FRACTION, "eta_min": Range(0.0, None)}
)
