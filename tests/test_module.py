"""The experiment module's own pieces, without a Trainer."""

from __future__ import annotations

import math

import pytest
import torch

from lossopt.core.module import MeanLoss, metrics_for


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


@pytest.mark.parametrize(
    ("task", "output", "target", "expected"),
    [
        # argmax 0, 1, 1, 2 against 0, 1, 2, 2: 3 of 4 right.
        (
            "multiclass",
            torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 3, 0], [0, 0, 3]]),
            torch.tensor([0, 1, 2, 2]),
            {"accuracy": 0.75},
        ),
        # thresholded at 0.5: 5 of 6 labels right.
        (
            "multilabel",
            torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.6]]),
            torch.tensor([[1, 0, 1], [0, 1, 0]]),
            {"accuracy": 5 / 6},
        ),
        (
            "regression",
            torch.tensor([1.0, 2.0, 4.0]),
            torch.tensor([1.0, 3.0, 3.0]),
            {"mae": 2 / 3},
        ),
    ],
    ids=["multiclass", "multilabel", "regression"],
)
def test_per_step_metric_updates_use_no_data_dependent_op(
    monkeypatch, task, output, target, expected
):
    # torch.unique's result size depends on the data, so on a GPU it waits for the device:
    # one such wait per training step would stall the GPU pipeline.
    def unique(*args, **kwargs):
        raise AssertionError("a per-step metric update called torch.unique")

    metrics = metrics_for(task, 1 if task == "regression" else output.shape[1])
    monkeypatch.setattr(torch, "unique", unique)
    metrics.update(output, target)
    values = metrics.compute()
    for name, value in expected.items():
        assert values[name].item() == pytest.approx(value)
