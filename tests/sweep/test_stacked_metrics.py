"""StackedMetrics against torchmetrics, measured member by member on the same outputs.

The reference is what the single-run path computes: ``metrics_for`` and ``MeanLoss`` fed
through ``ExperimentModule._metric_inputs``, and MulticlassConfusionMatrix for the test
confusion matrix.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from lossopt.core.module import ExperimentModule, MeanLoss, metrics_for
from lossopt.core.sweep.metrics import StackedMetrics

K = 4
SIZES = (32, 17, 32, 5)  # unequal batches, a short last one

Batch = tuple[Tensor, Tensor, Tensor]  # output [K, B, C], target (shared or per member), loss [K]


def _multiclass(gen: torch.Generator, shared: bool, case: str) -> list[Batch]:
    batches = []
    for b in SIZES:
        output = torch.randn(K, b, 10, generator=gen)
        target = torch.randint(0, 10, (b,) if shared else (K, b), generator=gen)
        if case == "absent":  # classes 6..9 are neither true nor predicted
            target = target % 6
            output[..., 6:] = -100.0
        elif case == "constant":  # member 0: ties everywhere; member 1: always class 3
            output[0] = 0.0
            output[1, :, 3] = 100.0
        batches.append((output, target, torch.rand(K, generator=gen)))
    return batches


def _multilabel(gen: torch.Generator, shared: bool) -> list[Batch]:
    batches = []
    for b in SIZES:
        output = torch.randn(K, b, 5, generator=gen) * 2
        output[1] = torch.rand(b, 5, generator=gen)  # probabilities: no sigmoid for member 1
        target = torch.randint(0, 2, (b, 5) if shared else (K, b, 5), generator=gen).float()
        target[..., 4] = 0.0  # label 4 never occurs...
        output[[0, 2, 3], :, 4] = -5.0  # ...and is never predicted, except by member 1
        batches.append((output, target, torch.rand(K, generator=gen)))
    return batches


def _regression(gen: torch.Generator, shared: bool, outputs: int) -> list[Batch]:
    batches = []
    for b in SIZES:
        target = torch.randn((b, outputs) if shared else (K, b, outputs), generator=gen)
        if outputs > 1:
            target[..., 2] = 1.5  # a constant output: R² counts it 0
        output = target + 0.5 * torch.randn(K, b, outputs, generator=gen)
        output[0] = target if shared else target[0]  # a perfect fit: R² 1
        if outputs == 1:
            target = target.squeeze(-1)  # [B] or [K, B], as regression datasets give it
        batches.append((output, target, torch.rand(K, generator=gen)))
    return batches


def _reference(task: str, c: int, batches: list[Batch], shared: bool) -> dict[str, Tensor]:
    """Each member measured alone by the single-run path's torchmetrics, stacked → [K]."""
    module = SimpleNamespace(task=task)
    per_member = []
    for k in range(K):
        metrics, mean_loss = metrics_for(task, c), MeanLoss()
        for output, target, loss in batches:
            y = target if shared else target[k]
            metrics.update(*ExperimentModule._metric_inputs(module, output[k], y))
            mean_loss.update(loss[k], output.shape[1])
        per_member.append({"loss": mean_loss.compute(), **metrics.compute()})
    return {key: torch.stack([m[key].reshape(()) for m in per_member]) for key in per_member[0]}


def _stacked(task: str, c: int, batches: list[Batch]) -> StackedMetrics:
    stacked = StackedMetrics(task, c, K, "cpu")
    for batch in batches:
        stacked.update(*batch)
    return stacked


def _assert_equal(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0, msg=key)


CASES = [  # task, number of outputs, multiclass case
    *[("multiclass", 10, case) for case in ("random", "absent", "constant")],
    ("multilabel", 5, None),
    ("regression", 1, None),
    ("regression", 3, None),
]


def _batches(task: str, c: int, case: object, shared: bool, seed: int = 0) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    if task == "multiclass":
        return _multiclass(gen, shared, str(case))
    if task == "multilabel":
        return _multilabel(gen, shared)
    return _regression(gen, shared, c)


@pytest.mark.parametrize("shared", [False, True], ids=["per_member", "shared"])
@pytest.mark.parametrize(("task", "c", "case"), CASES, ids=lambda v: str(v))
def test_every_member_equals_torchmetrics(task: str, c: int, case: object, shared: bool):
    batches = _batches(task, c, case, shared)
    stacked = _stacked(task, c, batches)
    _assert_equal(stacked.compute(), _reference(task, c, batches, shared))
    assert tuple(stacked.compute()) == StackedMetrics.names(task)
    if task == "multiclass":
        for k in range(K):
            confusion = MulticlassConfusionMatrix(c)
            for output, target, _ in batches:
                confusion.update(output[k], target if shared else target[k])
            assert torch.equal(stacked.confusion()[k], confusion.compute())


def test_absent_classes_are_left_out_of_multiclass_macro_f1():
    # Averaging over all 10 classes (as multilabel does over labels) would give 0.6 of this.
    stacked = _stacked("multiclass", 10, _batches("multiclass", 10, "absent", True))
    confusion = stacked.confusion()
    tp = confusion.diagonal(dim1=1, dim2=2).float()
    f1 = 2 * tp / (confusion.sum(1) + confusion.sum(2))
    torch.testing.assert_close(stacked.compute()["f1_macro"], f1[:, :6].mean(1))


@pytest.mark.parametrize(("task", "c", "case"), CASES, ids=lambda v: str(v))
def test_a_nan_member_leaves_the_others_alone(task: str, c: int, case: object):
    batches = _batches(task, c, case, shared=True)
    diverged = [(output.clone(), target, loss.clone()) for output, target, loss in batches]
    for output, _, loss in diverged[1:]:
        output[2] = torch.nan
        loss[2] = torch.nan
    clean, nan = _stacked(task, c, batches), _stacked(task, c, diverged)
    others = [0, 1, 3]
    expected = {key: value[others] for key, value in clean.compute().items()}
    _assert_equal({key: value[others] for key, value in nan.compute().items()}, expected)
    assert nan.compute()["loss"][2].isnan()
    if task == "multiclass":
        assert torch.equal(nan.confusion()[others], clean.confusion()[others])


@pytest.mark.parametrize(
    ("task", "c", "case"), [CASES[0], CASES[3], CASES[5]], ids=lambda v: str(v)
)
def test_reset_starts_a_new_epoch(task: str, c: int, case: object):
    first, second = (_batches(task, c, case, False, seed) for seed in (1, 2))
    stacked = _stacked(task, c, first)
    stacked.reset()
    for batch in second:
        stacked.update(*batch)
    _assert_equal(stacked.compute(), _stacked(task, c, second).compute())
    _assert_equal(stacked.compute(), _reference(task, c, second, shared=False))
