"""The parts of a stacked model: stacked parameters with one vectorized forward, each
member's loss, and optimizers whose parameters are views into the stacked tensors.

Members are ordered so that those sharing a loss (then optimizer settings) sit next to
each other: a loss is computed once per run of members (``vmap`` over them), and an
optimizer steps views of whole runs.
"""

from __future__ import annotations

import copy
import json
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from lossopt.core.adapter import adapt, contract_for, scores
from lossopt.core.configs import build, plugin_values
from lossopt.core.recipe import parameter_groups
from lossopt.core.registry import registry

__all__ = [
    "Losses",
    "Member",
    "Stack",
    "clip_per_member",
    "config_key",
    "optimizers_for",
    "runs_of",
]


@dataclass
class Member:
    """One job of the stack, built as it would be alone (``stacked.build_members``)."""

    cfg: DictConfig
    model: nn.Module
    loss: nn.Module
    batches: Any  # the job's own index loader: one iteration is one epoch


def config_key(cfg: DictConfig, *kinds: str) -> str:
    """The names and resolved parameters of a config's plugins of ``kinds``, as text."""
    return json.dumps([[cfg[k].name, plugin_values(cfg, k)] for k in kinds], sort_keys=True)


def runs_of(keys: Sequence[str]) -> list[tuple[slice, int]]:
    """Contiguous runs of equal keys: (members, index of the run's first member)."""
    runs, start = [], 0
    for end in range(1, len(keys) + 1):
        if end == len(keys) or keys[end] != keys[start]:
            runs.append((slice(start, end), start))
            start = end
    return runs


class _StackedLinear(torch.autograd.Function):
    """Every member's ``F.linear`` at once: x [K, B, in], weight [K, out, in], bias
    [K, out] or None. The weight gradient is each member's own matrix product, the
    one autograd computes for the job alone (``grad.t().mm(x)``): the batched product
    that vmap makes of it rounds differently on the CPU (MKL), by one unit in the last
    place in ~14% of the output layer's entries, which rmsprop at a large rate
    amplifies into a different result."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.stack([grad[k].t().mm(x[k]) for k in range(len(weight))])
        grad_bias = grad.sum(1) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias


class _MemberLinear(torch.autograd.Function):
    """``F.linear`` for one member; under the stack's vmap, ``_StackedLinear``."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        pass  # differentiated through its vmap rule only

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: Tensor, weight: Tensor, bias: Tensor | None):
        k = info.batch_size

        def members_first(t: Tensor | None, dim: int | None) -> Tensor | None:
            if t is None:
                return None
            return t.movedim(dim, 0) if dim is not None else t.expand(k, *t.shape)

        x, weight = members_first(x, in_dims[0]), members_first(weight, in_dims[1])
        bias = members_first(bias, in_dims[2])
        if x.dim() != 3:  # not a batch of vectors per member: vmap's own products
            return vmap(F.linear, in_dims=(0, 0, None if bias is None else 0))(x, weight, bias), 0
        return _StackedLinear.apply(x, weight, bias), 0


def _linear_forward(module: nn.Linear, x: Tensor) -> Tensor:
    return _MemberLinear.apply(x, module.weight, module.bias)


def member_gradients(model: nn.Module) -> None:
    """Make the linear layers of a stack's ``model`` (its meta copy) compute each
    member's weight gradient as the job alone does (see ``_StackedLinear``)."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.forward = types.MethodType(_linear_forward, module)


class Stack:
    """The members' parameters stacked, and one vectorized forward over them.

    ``exact``: linear layers compute each member's weight gradient on its own (the
    job alone's rounding, bit for bit, on the CPU; no cost measurable on the study:
    4.58 s vs 4.75 s for 72 jobs × 15 epochs, medians of 3)."""

    def __init__(self, members: Sequence[Member], device: torch.device, exact: bool = False):
        params, buffers = stack_module_state([m.model for m in members])
        self.params = {n: p.detach().to(device).requires_grad_() for n, p in params.items()}
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.base = copy.deepcopy(members[0].model).to("meta")
        if exact:
            member_gradients(self.base)
        for p in self.params.values():
            p.grad = torch.zeros_like(p)  # kept and zeroed in place: views alias it
        self.frozen: dict[int, dict[str, Tensor]] = {}

        def call(params: dict, buffers: dict, x: Tensor) -> Tensor:
            return functional_call(self.base, (params, buffers), (x,))

        # Dropout draws its own mask for every member.
        self._own_inputs = vmap(call, in_dims=(0, 0, 0), randomness="different")
        self._shared_inputs = vmap(call, in_dims=(0, 0, None), randomness="different")

    def __call__(self, x: Tensor, shared: bool) -> Tensor:
        """x: [K, B, ...] (each member its own batch) or [B, ...] (shared) → [K, B, C]."""
        forward = self._shared_inputs if shared else self._own_inputs
        return forward(self.params, self.buffers, x)

    def views(self, members: slice) -> list[Tensor]:
        """The parameters of a run of members as views into the stacked tensors, with
        gradients that are views into the stacked gradients: what optimizers step."""
        views = []
        for p in self.params.values():
            view = p.detach()[members]
            view.grad = p.grad[members]
            views.append(view)
        return views

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad.zero_()

    def freeze(self, k: int) -> None:
        """Member k keeps its current weights from now on."""
        self.frozen[k] = {n: p.detach()[k].clone() for n, p in self.params.items()}

    def restore_frozen(self) -> None:
        with torch.no_grad():
            for k, weights in self.frozen.items():
                for name, p in self.params.items():
                    p[k] = weights[name]


class Losses:
    """Each member's loss, computed per run of members that share a loss config."""

    def __init__(self, members: Sequence[Member], task: str) -> None:
        self.runs: list[tuple[slice, nn.Module, Callable]] = []
        for run, first in runs_of([config_key(m.cfg, "loss") for m in members]):
            cfg, loss = members[first].cfg, members[first].loss
            contract = contract_for(registry("loss").spec(cfg.loss.name), cfg.loss.name, task)

            def value(output: Tensor, target: Tensor, loss=loss, contract=contract) -> Tensor:
                return loss(*adapt(output, target, contract, task))

            self.runs.append((run, loss, value))

    def __call__(self, output: Tensor, target: Tensor, shared: bool) -> tuple[Tensor, Tensor]:
        """([K] losses, [K, B, C] scores the metrics judge)."""
        values, judged = [], []
        for members, loss, value in self.runs:
            target_of = target if shared else target[members]
            per_member = vmap(value, in_dims=(0, None if shared else 0))
            values.append(per_member(output[members], target_of))
            judged.append(scores(loss, output[members]))
        return torch.cat(values), torch.cat(judged)


def optimizers_for(
    members: Sequence[Member], stack: Stack, steps_per_epoch: int
) -> tuple[list[tuple[torch.optim.Optimizer, Any, str]], dict[int, Exception]]:
    """One optimizer (and schedule) per set of members with identical settings; its
    parameters are the views of the runs of members in the set. Also the members
    whose optimizer or schedule could not be built, with the error."""
    sets: dict[str, list[tuple[slice, int]]] = {}
    keys = [config_key(m.cfg, "optimizer", "scheduler") for m in members]
    for run, first in runs_of(keys):
        sets.setdefault(keys[first], []).append((run, first))
    result, failed = [], {}
    for runs in sets.values():
        try:
            result.append(_optimizer(members[runs[0][1]].cfg, stack, runs, steps_per_epoch))
        except Exception as exc:  # e.g. torch refuses a combination of settings
            failed.update({k: exc for run, _ in runs for k in range(run.start, run.stop)})
    return result, failed


def _optimizer(
    cfg: DictConfig, stack: Stack, runs: list[tuple[slice, int]], steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, Any, str]:
    values = plugin_values(cfg, "optimizer")
    if "foreach" in values and values["foreach"] is None:
        values["foreach"] = True  # one kernel per op for all views, not one per view
    decay = values.get("weight_decay") if cfg.no_decay_bias_and_norm else None
    views = [view for run, _ in runs for view in stack.views(run)]
    optimizer = build(
        "optimizer", cfg.optimizer.name, values, params=parameter_groups(views, decay, leading=1)
    )
    interval = registry("scheduler").spec(cfg.scheduler.name).interval
    total = cfg.trainer.max_epochs * (1 if interval == "epoch" else steps_per_epoch)
    schedule = build(
        "scheduler",
        cfg.scheduler.name,
        plugin_values(cfg, "scheduler"),
        optimizer=optimizer,
        total_steps=int(total),
    )
    return optimizer, schedule, interval


def clip_per_member(stack: Stack, max_norm: float) -> None:
    """Lightning's gradient_clip_val (clip_grad_norm_), for each member's own norm."""
    grads = [p.grad for p in stack.params.values()]
    k = grads[0].shape[0]
    norms = torch.stack([g.reshape(k, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(k, *[1] * (g.dim() - 1)))
