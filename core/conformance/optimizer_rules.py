"""The conformance rules of an optimizer plugin.

The problems are built to fit every capability an optimizer may declare: parameters
are 2-D tables (matrix-only optimizers take them), their gradients are sparse when the
optimizer needs sparse gradients, and a closure is passed when it needs one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from lossopt.core.configs import NAME_FIELD, build, parameters
from lossopt.core.conformance.rules import (
    NotApplicable,
    Rule,
    Subject,
    composed_values,
    factory_kwargs,
    max_difference,
    same,
)
from lossopt.core.errors import ConfigError
from lossopt.core.specs import OptimizerSpec

__all__ = ["OPTIMIZER_RULES", "make_step"]

LossFn = Callable[[], Tensor]


def _spec(subject: Subject) -> OptimizerSpec:
    spec = subject.spec
    assert isinstance(spec, OptimizerSpec), f"optimizer '{subject.name}' is not an OptimizerSpec"
    return spec


def _table(rows: int, cols: int, seed: int) -> nn.Parameter:
    gen = torch.Generator().manual_seed(seed)
    return nn.Parameter(torch.randn(rows, cols, generator=gen))


def _least_squares(spec: OptimizerSpec, table: Tensor, seed: int) -> LossFn:
    """A convex least-squares loss of ``table`` (sparse gradients when the optimizer
    needs them: the rows are picked through a sparse embedding)."""
    gen = torch.Generator().manual_seed(seed + 100)
    goal = torch.randn(table.shape, generator=gen)
    rows = torch.arange(table.shape[0])

    def loss_fn() -> Tensor:
        picked = nn.functional.embedding(rows, table, sparse=spec.sparse_gradients)
        return ((picked - goal) ** 2).mean()

    return loss_fn


def _rosenbrock(spec: OptimizerSpec, table: Tensor) -> LossFn:
    """Rosenbrock's function of the two entries of a [2, 1] table (x, y)."""
    rows = torch.arange(2)

    def loss_fn() -> Tensor:
        x, y = nn.functional.embedding(rows, table, sparse=spec.sparse_gradients)[:, 0]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    return loss_fn


def make_step(optimizer: torch.optim.Optimizer, loss_fn: LossFn, spec: OptimizerSpec) -> float:
    """One training step as lossopt takes it: with a closure when the optimizer needs
    one, else backward then ``step()``. Returns the loss before the step."""

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    if spec.needs_closure:
        return float(optimizer.step(closure).detach())
    loss = closure()
    optimizer.step()
    return float(loss.detach())


def _optimizer(subject: Subject, params, **hyper) -> torch.optim.Optimizer:
    optimizer = build("optimizer", subject.name, subject.values(**hyper), params=params)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise NotApplicable("needs a torch.optim.Optimizer (see is-optimizer)")
    return optimizer


def is_optimizer(subject: Subject) -> None:
    built = build("optimizer", subject.name, subject.values(), params=[_table(4, 3, 0)])
    assert isinstance(built, torch.optim.Optimizer), (
        f"the factory returned a {type(built).__name__}, not a torch.optim.Optimizer"
    )


def per_group_lr(subject: Subject) -> None:
    """Each parameter group steps with its own learning rate, exactly as an optimizer
    built with that rate for its parameters alone."""
    spec = _spec(subject)
    if "lr" not in {p.name for p in parameters(spec)}:
        raise NotApplicable("it has no 'lr' parameter")
    lrs = (subject.values()["lr"], subject.values()["lr"] * 0.1)
    grouped = [_table(8, 4, seed) for seed in (0, 1)]
    alone = [_table(8, 4, seed) for seed in (0, 1)]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(grouped, lrs, strict=True)]
    try:
        optimizer = _optimizer(subject, groups)
    except ConfigError as exc:
        raise NotApplicable(f"it takes one parameter group only ({exc.problems[0]})") from None
    losses = [_least_squares(spec, p, seed) for seed, p in enumerate(grouped)]
    lone = [
        (_optimizer(subject, [p], lr=lr), _least_squares(spec, p, seed))
        for seed, (p, lr) in enumerate(zip(alone, lrs, strict=True))
    ]
    for _ in range(3):
        make_step(optimizer, lambda: losses[0]() + losses[1](), spec)
        for each, loss_fn in lone:
            make_step(each, loss_fn, spec)
    for index, (a, b) in enumerate(zip(grouped, alone, strict=True)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), (
            f"group {index} (lr={lrs[index]:g}) did not step as an optimizer with that lr "
            f"alone (max difference {max_difference(a, b):.3g})"
        )


def closure_is_called(subject: Subject) -> None:
    spec = _spec(subject)
    table = _table(8, 4, 0)
    loss_fn = _least_squares(spec, table, 0)
    optimizer = _optimizer(subject, [table])
    values: list[Tensor] = []

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        values.append(loss)
        return loss

    returned = optimizer.step(closure)
    assert values, "step(closure) did not call the closure"
    assert isinstance(returned, Tensor) and float(returned.detach()) == float(values[0].detach()), (
        f"step(closure) returned {returned!r}, not the closure's loss {float(values[0]):.6g}"
    )


def untouched_without_grad(subject: Subject) -> None:
    spec = _spec(subject)
    table, idle = _table(8, 4, 0), _table(8, 4, 1)
    before = idle.detach().clone()
    optimizer = _optimizer(subject, [table, idle])
    loss_fn = _least_squares(spec, table, 0)
    for _ in range(3):
        make_step(optimizer, loss_fn, spec)
    assert idle.grad is None and torch.equal(idle, before), (
        f"a parameter without a gradient moved (max change {max_difference(idle, before):.3g})"
    )


def state_dict_round_trip(subject: Subject) -> None:
    spec = _spec(subject)
    table = _table(16, 4, 0)
    optimizer = _optimizer(subject, [table])
    loss_fn = _least_squares(spec, table, 0)
    for _ in range(5):
        make_step(optimizer, loss_fn, spec)
    twin = _table(16, 4, 0)
    with torch.no_grad():
        twin.copy_(table)
    restored = _optimizer(subject, [twin])
    # load_state_dict keeps the given tensors: without a copy both would share state.
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    make_step(optimizer, loss_fn, spec)
    make_step(restored, _least_squares(spec, twin, 0), spec)
    assert torch.allclose(table, twin, rtol=1e-6, atol=1e-7), (
        f"the step after a state_dict round trip differs "
        f"(max difference {max_difference(table, twin):.3g})"
    )


def _lowers(
    subject: Subject, table: Tensor, loss_fn: LossFn, steps: int, what: str, **hyper
) -> None:
    spec = _spec(subject)
    optimizer = _optimizer(subject, [table], **hyper)
    with torch.no_grad():
        first = float(loss_fn())
    for _ in range(steps):
        make_step(optimizer, loss_fn, spec)
    with torch.no_grad():
        last = float(loss_fn())
    assert last < first, (
        f"{what}: the loss did not fall in {steps} steps ({first:.4g} -> {last:.4g})"
    )


def lowers_convex_loss(subject: Subject) -> None:
    table = _table(16, 4, 0)
    _lowers(subject, table, _least_squares(_spec(subject), table, 0), 30, "least squares")


def lowers_rosenbrock(subject: Subject) -> None:
    """From the classic start (-1.2, 1), where the gradient is ~200: at most lr 1e-3
    (unless the subject sets lr), as larger default rates (asgd's 1e-2) diverge for any
    first-order method on this curvature."""
    table = nn.Parameter(torch.tensor([[-1.2], [1.0]]))
    lr = subject.values().get("lr")
    hyper = {"lr": min(lr, 1e-3)} if lr is not None and "lr" not in subject.params else {}
    _lowers(subject, table, _rosenbrock(_spec(subject), table), 100, "Rosenbrock", **hyper)


def stacked_equals_members(subject: Subject) -> None:
    """Stepping a stack's views (the vectorized launcher's optimizers, one set of
    members per setting) equals stepping each member's own parameters alone."""
    from lossopt.core.sweep.stack import Stack, optimizers_for

    spec = _spec(subject)
    if not spec.stackable:
        raise NotApplicable("it does not declare stackable")
    assert not spec.needs_closure, "it declares stackable, but stacked steps take no closure"
    values = subject.values()
    # Two members share the settings (and so one optimizer over a view of both), the
    # third has its own learning rate when there is one.
    settings = [values, values, {**values, "lr": values["lr"] * 0.5} if "lr" in values else values]
    members = []
    for k, hyper in enumerate(settings):
        torch.manual_seed(k)
        cfg = OmegaConf.create(
            {
                "optimizer": {NAME_FIELD: subject.name, **hyper},
                "scheduler": {NAME_FIELD: "none"},
                "trainer": {"max_epochs": 1},
                "no_decay_bias_and_norm": False,
            }
        )
        members.append(SimpleNamespace(cfg=cfg, model=nn.Linear(4, 3)))
    stack = Stack(members, torch.device("cpu"))
    stacked, failed = optimizers_for(members, stack, steps_per_epoch=1)
    assert not failed, f"the vectorized launcher cannot build it: {next(iter(failed.values()))}"
    alone = [copy.deepcopy(m.model) for m in members]
    optimizers = [
        _optimizer(subject, list(m.parameters()), **hyper)
        for m, hyper in zip(alone, settings, strict=True)
    ]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for name, param in stack.params.items():
            param.grad.copy_(torch.randn(param.shape, generator=gen))
            for k, model in enumerate(alone):
                model.get_parameter(name).grad = param.grad[k].clone()
        for optimizer, _, _ in stacked:
            optimizer.step()
        for optimizer in optimizers:
            optimizer.step()
    for name, param in stack.params.items():
        for k, model in enumerate(alone):
            mine = model.get_parameter(name)
            assert torch.allclose(param[k], mine, rtol=1e-5, atol=1e-6), (
                f"member {k}'s '{name}' stepped in the stack differs from the member stepped "
                f"alone (max difference {max_difference(param[k], mine):.3g}): the update "
                f"mixes members; do not declare stackable"
            )


def config_round_trip(subject: Subject) -> None:
    """The config Hydra composes for ``optimizer=NAME`` builds the optimizer its factory
    builds when called directly with the spec's defaults."""
    values = composed_values(subject)
    from_config = build("optimizer", subject.name, values, params=[_table(4, 3, 0)])
    direct = subject.spec.factory([_table(4, 3, 0)], **factory_kwargs(subject))
    assert type(from_config) is type(direct), (
        f"the config builds a {type(from_config).__name__}, the factory a {type(direct).__name__}"
    )
    a = {k: v for k, v in from_config.param_groups[0].items() if k != "params"}
    b = {k: v for k, v in direct.param_groups[0].items() if k != "params"}
    differ = sorted(k for k in a.keys() | b.keys() if not same(a.get(k), b.get(k)))
    assert not differ, (
        f"built from its config {values} it differs from the factory's own defaults in "
        f"{ {k: (a.get(k), b.get(k)) for k in differ} }"
    )


OPTIMIZER_RULES: tuple[Rule, ...] = (
    Rule("is-optimizer", "a torch.optim.Optimizer", is_optimizer),
    Rule("per-group-lr", "honours each group's lr", per_group_lr),
    Rule("closure-is-called", "step(closure) calls it and returns its loss", closure_is_called),
    Rule(
        "untouched-without-grad",
        "leaves parameters without gradients untouched",
        untouched_without_grad,
    ),
    Rule(
        "state-dict-round-trip",
        "a state_dict round trip gives the same next step",
        state_dict_round_trip,
    ),
    Rule("lowers-convex-loss", "lowers a small least-squares loss", lowers_convex_loss),
    Rule("lowers-rosenbrock", "lowers the Rosenbrock function", lowers_rosenbrock),
    Rule("config-round-trip", "its Hydra config builds an equal optimizer", config_round_trip),
    Rule(
        "stacked-equals-members",
        "stepping stacked members equals stepping each alone",
        stacked_equals_members,
    ),
)
