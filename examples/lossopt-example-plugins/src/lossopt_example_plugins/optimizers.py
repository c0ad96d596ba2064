"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
arXiv:2302.06675): a sign-based optimizer with one momentum buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from lossopt.core.specs import OptimizerSpec

__all__ = ["Lion", "lion"]


class Lion(torch.optim.Optimizer):
    """Lion: steps by the sign of interpolated momentum, with decoupled weight decay.

    Every coordinate moves by exactly ``lr`` per step, so Lion usually wants a learning
    rate 3-10x smaller than AdamW and a weight decay 3-10x larger. For each parameter:

    1. p = p * (1 - lr * weight_decay)             (decoupled weight decay)
    2. p = p - lr * sign(beta1 * m + (1 - beta1) * g)
    3. m = beta2 * m + (1 - beta2) * g             (momentum tracked with beta2)
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]
                p.mul_(1.0 - lr * weight_decay)
                update = exp_avg.mul(beta1).add_(p.grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)
        return loss


lion = OptimizerSpec(Lion, "Lion (Chen et al. 2023): sign of interpolated momentum.")
