"""The conformance kit: the checks every loss and optimizer plugin must pass.

lossopt's own tests run these over every registered plugin, and plugin authors run
the same checks on theirs (``from lossopt.testing import check_loss``). Each check
raises AssertionError with a message saying what failed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import OmegaConf

from lossopt.core.adapter import adapt, scores
from lossopt.core.configs import NAME_FIELD, build, config_class
from lossopt.core.registry import registry
from lossopt.core.specs import LossSpec, OptimizerSpec

__all__ = ["check_loss", "check_optimizer", "sample_problem"]

NUM_CLASSES = 5


def sample_problem(task: str, batch: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw model outputs [batch, NUM_CLASSES] and targets in the task's natural form."""
    gen = torch.Generator().manual_seed(seed)
    output = torch.randn(batch, NUM_CLASSES, generator=gen)
    if task == "multiclass":
        target = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    elif task == "multilabel":
        target = (torch.rand(batch, NUM_CLASSES, generator=gen) > 0.5).float()
    else:  # regression: positive values, as Poisson-type losses need
        target = torch.rand(batch, NUM_CLASSES, generator=gen) * 3 + 0.1
    return output, target


def _resolved_params(kind: str, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Config defaults resolved against the sample data (``${data.num_classes}`` …)."""
    node = OmegaConf.structured(config_class(kind, name, registry(kind).spec(name)))
    node.merge_with(params)
    data = {"num_classes": NUM_CLASSES, "num_outputs": NUM_CLASSES}
    root = OmegaConf.create({kind: node, "data": data})
    values = OmegaConf.to_container(root, resolve=True)[kind]
    values.pop(NAME_FIELD)
    return values


def check_loss(name: str, task: str | None = None, **params: Any) -> None:
    """A finite scalar whose gradient reaches the output (and the loss's own parameters)
    for every task the loss declares, or for ``task`` alone."""
    spec = registry("loss").spec(name)
    assert isinstance(spec, LossSpec), f"loss '{name}' is not described by a LossSpec"
    assert spec.contracts, f"loss '{name}' declares no task"
    for each in [task] if task else spec.tasks:
        loss_fn = build("loss", name, _resolved_params("loss", name, params))
        output, target = sample_problem(each)
        output.requires_grad_(True)
        value = loss_fn(*adapt(output, target, spec.contracts[each], each))
        where = f"loss '{name}' on {each}"
        assert value.dim() == 0, f"{where}: expected a scalar, got shape {tuple(value.shape)}"
        assert torch.isfinite(value), f"{where}: not finite ({value.item()})"
        value.backward()
        assert output.grad is not None and torch.isfinite(output.grad).all(), f"{where}: bad grad"
        assert output.grad.abs().sum() > 0, f"{where}: the gradient does not reach the output"
        for pname, param in loss_fn.named_parameters():
            assert param.grad is not None, f"{where}: its parameter '{pname}' gets no gradient"
        judged = scores(loss_fn, output)
        assert judged.shape[0] == output.shape[0] and judged.dim() == 2, (
            f"{where}: scores(output) must give one row of class scores per sample, "
            f"got shape {tuple(judged.shape)}"
        )


def _problem(spec: OptimizerSpec, seed: int = 0):
    """A convex least-squares problem over a 2-D table (so matrix-only optimizers fit),
    with sparse gradients when the optimizer needs them. Returns (param, loss_fn)."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.nn.Parameter(torch.randn(16, 4, generator=gen))
    goal = torch.randn(16, 4, generator=gen)
    rows = torch.arange(16)

    def loss_fn() -> torch.Tensor:
        picked = torch.nn.functional.embedding(rows, table, sparse=spec.sparse_gradients)
        return ((picked - goal) ** 2).mean()

    return table, loss_fn


def _step(optimizer: torch.optim.Optimizer, loss_fn, spec: OptimizerSpec) -> float:
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    if spec.needs_closure:
        return float(optimizer.step(closure).detach())
    loss = closure()
    optimizer.step()
    return float(loss.detach())


def check_optimizer(name: str, steps: int = 30, **hyper: Any) -> None:
    """The loss falls on a small convex problem, and a ``state_dict`` round trip into a
    fresh optimizer gives exactly the same next step."""
    spec = registry("optimizer").spec(name)
    assert isinstance(spec, OptimizerSpec), f"optimizer '{name}' is not an OptimizerSpec"
    param, loss_fn = _problem(spec)
    optimizer = build("optimizer", name, hyper, params=[param])
    with torch.no_grad():
        first = float(loss_fn())
    for _ in range(steps):
        _step(optimizer, loss_fn, spec)
    with torch.no_grad():
        last = float(loss_fn())
    assert last < first, f"optimizer '{name}': loss did not fall ({first:.4g} -> {last:.4g})"

    twin, twin_loss_fn = _problem(spec)
    with torch.no_grad():
        twin.copy_(param)
    restored = build("optimizer", name, hyper, params=[twin])
    # load_state_dict keeps the given tensors: without a copy both would share state.
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    _step(optimizer, loss_fn, spec)
    _step(restored, twin_loss_fn, spec)
    assert torch.allclose(param, twin, rtol=1e-6, atol=1e-7), (
        f"optimizer '{name}': the step after a state_dict round trip differs "
        f"(max difference {(param - twin).abs().max().item():.3g})"
    )
