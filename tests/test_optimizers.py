"""torch.optim is covered; parameter groups and capability flags (the conformance rules
every optimizer keeps are checked in test_conformance)."""

from __future__ import annotations

import inspect

import torch

import lossopt
from lossopt.core.registry import registry


def test_every_torch_optimizer_is_registered():
    torch_classes = {
        cls
        for cls in vars(torch.optim).values()
        if inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)
    } - {torch.optim.Optimizer}
    registered = {registry("optimizer").spec(n).factory for n in registry("optimizer").names()}
    missing = sorted(cls.__name__ for cls in torch_classes - registered)
    assert not missing, f"torch.optim optimizers without a plugin: {missing}"


def test_create_optimizer_accepts_parameter_groups():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = lossopt.create_optimizer(
        "sgd", [{"params": [a], "weight_decay": 0.0}, {"params": [b]}], lr=0.1, weight_decay=0.01
    )
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.01]
    assert opt.param_groups[0]["lr"] == 0.1


def test_capability_flags_are_declared():
    assert registry("optimizer").spec("lbfgs").needs_closure
    assert registry("optimizer").spec("sparse_adam").sparse_gradients
    assert registry("optimizer").spec("muon").matrix_params_only
