"""The experiment module's own pieces, without a Trainer."""

from __future__ import annotations

import math

import pytest
import torch

from lossopt.core.module import MeanLoss


def test_epoch_loss_is_the_mean_per_example_over_unequal_batches():
    mean = MeanLoss()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(4.0), 1)  # a short last batch weighs by its size
    assert mean.compute().item() == pytest.approx((3 * 1.0 + 1 * 4.0) / 4)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_one_nonfinite_batch_makes_the_epoch_loss_nonfinite(bad):
    mean = MeanLoss()
    mean.update(torch.tensor(0.5), 64)
    mean.update(torch.tensor(bad), 64)
    mean.update(torch.tensor(0.4), 64)
    assert not torch.isfinite(mean.compute())


def test_epoch_loss_starts_afresh_after_reset():
    mean = MeanLoss()
    mean.update(torch.tensor(math.nan), 8)
    mean.reset()
    mean.update(torch.tensor(2.0), 8)
    assert mean.compute().item() == pytest.approx(2.0)
