"""Poly-1 cross-entropy (Leng et al. 2022, "PolyLoss", arXiv:2204.12511)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lossopt.core.checks import Range
from lossopt.core.specs import Contract, LossSpec

__all__ = ["Poly1CrossEntropy", "poly1"]


class Poly1CrossEntropy(nn.Module):
    """Poly-1 cross-entropy: CE + epsilon * (1 - p_t), the first polynomial correction.

    p_t is the predicted probability of the target class. epsilon > 0 adds weight to
    the leading polynomial term (helps on easy data), epsilon < 0 removes some; with
    epsilon = 0 it is plain cross-entropy. Shapes: logits [N, C], class indices [N].
    """

    def __init__(self, epsilon: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.epsilon = epsilon
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, target, reduction="none")  # -log p_t, shape [N]
        loss = ce + self.epsilon * (1.0 - (-ce).exp())
        return loss.sum() if self.reduction == "sum" else loss.mean()


# The spec declares what the loss consumes (logits and class indices on multiclass
# tasks); LossSpec itself checks that ``reduction`` yields a scalar (mean or sum).
# For epsilon < -1 the loss is no longer minimised at p_t = 1, so it is refused.
poly1 = LossSpec(
    Poly1CrossEntropy,
    "Poly-1 cross-entropy (Leng et al. 2022): CE + epsilon * (1 - p_t).",
    contracts={"multiclass": Contract("logits", "index")},
    checks={"epsilon": Range(-1.0, None)},
)
