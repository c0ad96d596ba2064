"""Learning-rate schedule plugins follow the curves they describe."""

from __future__ import annotations

import pytest
import torch

from lossopt.core.configs import build
from lossopt.core.registry import registry

TOTAL = 40


def _rates(name: str, **params) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = build("scheduler", name, params, optimizer=optimizer, total_steps=TOTAL)
    rates = []
    for _ in range(TOTAL):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_none_is_constant():
    assert set(_rates("none")) == {0.1}


def test_cosine_anneals_to_eta_min():
    rates = _rates("cosine", eta_min=0.001)
    assert rates[0] == pytest.approx(0.1) and rates[-1] < 0.01
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_warmup_cosine_rises_then_falls():
    rates = _rates("warmup_cosine", warmup_fraction=0.25)
    peak = rates.index(max(rates))
    assert rates[0] < 0.01 and 8 <= peak <= 12 and rates[-1] < rates[peak]


def test_onecycle_peaks_at_factor_times_lr():
    assert max(_rates("onecycle", max_lr_factor=5.0)) == pytest.approx(0.5, rel=0.05)


def test_step_and_multistep_decay_by_gamma():
    assert _rates("step", step_size=10, gamma=0.5)[10] == pytest.approx(0.05)
    assert _rates("multistep", milestones=[5], gamma=0.1)[5] == pytest.approx(0.01)
    assert _rates("exponential", gamma=0.9)[2] == pytest.approx(0.1 * 0.81)


def test_intervals_are_declared():
    assert registry("scheduler").spec("step").interval == "epoch"
    assert registry("scheduler").spec("cosine").interval == "step"
