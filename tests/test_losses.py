"""The built-in losses compute exactly what the underlying library loss computes (the
conformance rules every loss keeps are checked in test_conformance)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

import lossopt
from lossopt.core.adapter import adapt
from lossopt.core.registry import registry
from lossopt.testing import sample_problem


def test_cross_entropy_is_torch_cross_entropy():
    output, target = sample_problem("multiclass")
    weight = [1.0, 2.0, 0.5, 1.0, 3.0]
    loss = lossopt.create_loss("cross_entropy", weight=weight, label_smoothing=0.1)
    assert isinstance(loss, torch.nn.CrossEntropyLoss)
    expected = F.cross_entropy(output, target, torch.tensor(weight), label_smoothing=0.1)
    assert torch.allclose(loss(output, target), expected)


@pytest.mark.parametrize("weight", [None, [1.0, 2.0, 0.5, 1.0, 3.0]])
def test_focal_with_gamma_zero_is_cross_entropy(weight):
    output, target = sample_problem("multiclass")
    focal = lossopt.create_loss("focal", gamma=0.0, weight=weight)
    expected = F.cross_entropy(output, target, None if weight is None else torch.tensor(weight))
    assert torch.allclose(focal(output, target), expected, atol=1e-6)


def test_focal_down_weights_easy_examples():
    output = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(output, target, reduction="none")
    focal = lossopt.create_loss("focal", gamma=2.0, reduction="sum")
    easy, hard = (focal(output[i : i + 1], target[i : i + 1]) for i in range(2))
    assert easy / ce[0] < hard / ce[1]


def test_sigmoid_focal_is_torchvision():
    output, target = sample_problem("multilabel")
    loss = lossopt.create_loss("sigmoid_focal", alpha=0.5, gamma=1.5)
    expected = sigmoid_focal_loss(output, target, 0.5, 1.5, "mean")
    assert torch.allclose(loss(output, target), expected)


def test_nll_gets_log_probabilities_and_matches_cross_entropy():
    output, target = sample_problem("multiclass")
    spec = registry("loss").spec("nll")
    nll = lossopt.create_loss("nll")
    adapted = nll(*adapt(output, target, spec.contracts["multiclass"], "multiclass"))
    assert torch.allclose(adapted, F.cross_entropy(output, target))


def test_mse_on_classification_compares_probabilities_with_one_hot():
    output, target = sample_problem("multiclass")
    spec = registry("loss").spec("mse")
    value = lossopt.create_loss("mse")(
        *adapt(output, target, spec.contracts["multiclass"], "multiclass")
    )
    expected = F.mse_loss(output.softmax(1), F.one_hot(target, 5).float())
    assert torch.allclose(value, expected)


def test_adaptive_log_softmax_has_trainable_parameters():
    loss = lossopt.create_loss("adaptive_log_softmax", in_features=5, n_classes=5)
    assert sum(p.numel() for p in loss.parameters()) > 0
