"""The epoch metrics of K stacked jobs at once, equal to what each job's torchmetrics gives.

The vectorized launcher trains K jobs of a sweep as one stacked model, so each update
brings K members' outputs together. Keeping K torchmetrics collections would loop over
the members in Python on every step; this keeps one set of counts and sums with a
leading member axis instead, updated by a few tensor operations on the device, with no
read back to the CPU. The values are those of ``core.module.metrics_for`` and
``MeanLoss`` on each member alone (torchmetrics 1.9): the same reductions in the same
float32 arithmetic, including torchmetrics' special cases, cited where they are matched.
Every count and sum is per member, so a member that diverges (NaN) leaves the others be.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["StackedMetrics"]


def _safe_divide(num: Tensor, denom: Tensor) -> Tensor:
    """torchmetrics.utilities.compute._safe_divide: float32, and 0 where ``denom`` is 0."""
    num, denom = num.float(), denom.float()
    return torch.where(denom != 0, num / denom, torch.zeros((), device=num.device))


def _macro(score: Tensor, weights: Tensor) -> Tensor:
    """[K, C] scores → [K], as torchmetrics' ``_adjust_weights_safe_divide``: each weighted
    score is divided by the weight sum, then summed (the order matters in float32)."""
    return _safe_divide(weights * score, weights.sum(-1, keepdim=True)).sum(-1)


def _f1(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Per class or label, as torchmetrics' ``_fbeta_reduce`` with beta = 1."""
    return _safe_divide(2.0 * tp, 2.0 * tp + 1.0 * fn + fp)


class StackedMetrics:
    """Epoch metrics of ``members`` (K) jobs, each as if measured on its own.

    ``task`` is "multiclass", "multilabel" or "regression"; ``num_outputs`` the number of
    classes, labels or regression targets (C, or T).
    """

    def __init__(self, task: str, num_outputs: int, members: int, device: torch.device | str):
        if task not in ("multiclass", "multilabel", "regression"):
            raise ValueError(f"unknown task {task!r}")
        self.task, self.num_outputs, self.members = task, num_outputs, members
        self.device = torch.device(device)
        self.reset()

    @staticmethod
    def names(task: str) -> tuple[str, ...]:
        """The keys ``compute`` gives for ``task``."""
        if task == "regression":
            return ("loss", "mae", "mse", "r2")
        return ("loss", "accuracy", "f1_macro")

    def reset(self) -> None:
        """Forget every update (a new epoch)."""
        k, c, dev = self.members, self.num_outputs, self.device
        self._loss_total = torch.zeros(k, device=dev)
        self._count = torch.zeros((), dtype=torch.long, device=dev)  # examples, per member
        if self.task == "multiclass":
            self._confusion = torch.zeros(k, c, c, dtype=torch.long, device=dev)
        elif self.task == "multilabel":
            self._stats = torch.zeros(4, k, c, dtype=torch.long, device=dev)  # tp, fp, tn, fn
        else:
            # float32 like torchmetrics' states: float64 would differ from its values.
            self._abs_error = torch.zeros(k, device=dev)
            self._sq_error = torch.zeros(k, device=dev)
            self._sum_y = torch.zeros(k, c, device=dev)
            self._sum_y2 = torch.zeros(k, c, device=dev)
            self._rss = torch.zeros(k, c, device=dev)

    def _per_member(self, target: Tensor, shape: tuple[int, ...]) -> Tensor:
        """[*shape] shared by all members, or [K, *shape] one per member → [K, *shape]."""
        if target.numel() == self.members * math.prod(shape):
            return target.reshape(self.members, *shape)
        return target.reshape(shape).expand(self.members, *shape)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, loss: Tensor) -> None:
        """Add one batch of every member.

        output: [K, B, C] scores (multiclass: argmax taken; multilabel: probabilities or
        logits), or [K, B, T] predictions. target: [B] class indices, [B, C] 0/1 labels,
        [B] or [B, T] values, shared by all members, or the same with a leading K, one per
        member. loss: [K], each member's mean loss over the batch.
        """
        k, b, c = output.shape
        self._loss_total += loss.detach().float() * b  # as MeanLoss
        self._count += b
        if self.task == "multiclass":
            true = self._per_member(target, (b,)).long()
            member = torch.arange(k, device=output.device).unsqueeze(1)
            index = (member * c + true) * c + output.argmax(-1)
            # A bincount without torch.bincount, which reads the largest index back.
            ones = torch.ones(index.numel(), dtype=torch.long, device=index.device)
            self._confusion.view(-1).index_add_(0, index.flatten(), ones)
        elif self.task == "multilabel":
            # _multilabel_stat_scores_format: a member's batch with any value outside
            # [0, 1] is taken as logits and goes through a sigmoid (the whole batch, as
            # normalize_logits_if_needed decides per update), then threshold 0.5.
            logits = ((output < 0) | (output > 1)).flatten(1).any(1).view(k, 1, 1)
            predicted = torch.where(logits, output.sigmoid(), output) > 0.5
            labels = self._per_member(target, (b, c)).long()  # as module's y.long()
            positive, negative = labels == 1, labels == 0
            stats = (
                predicted & positive,  # tp
                predicted & negative,  # fp
                ~predicted & negative,  # tn
                ~predicted & positive,  # fn
            )
            self._stats += torch.stack(stats).sum(2)
        else:
            y = self._per_member(target, (b, c))
            residual = y - output
            self._abs_error += residual.abs().reshape(k, -1).sum(1)
            self._sq_error += (residual * residual).reshape(k, -1).sum(1)
            self._sum_y += y.sum(1)
            self._sum_y2 += (y * y).sum(1)
            self._rss += (residual * residual).sum(1)

    def compute(self) -> dict[str, Tensor]:
        """Each metric as a [K] tensor: "loss" with "accuracy", "f1_macro" (classification)
        or "mae", "mse", "r2" (regression)."""
        values = {"loss": self._loss_total / self._count.float()}
        if self.task == "multiclass":
            confusion = self._confusion
            tp = confusion.diagonal(dim1=1, dim2=2)
            fp, fn = confusion.sum(1) - tp, confusion.sum(2) - tp
            values["accuracy"] = _safe_divide(tp.sum(1), confusion.sum((1, 2)))
            # _adjust_weights_safe_divide: a class absent from targets and predictions
            # (tp + fp + fn == 0) is left out of the macro average.
            weights = (tp + fp + fn != 0).float()
            values["f1_macro"] = _macro(_f1(tp, fp, fn), weights)
        elif self.task == "multilabel":
            tp, fp, tn, fn = self._stats
            correct = (tp + tn).sum(1)
            values["accuracy"] = _safe_divide(correct, correct + (fp + fn).sum(1))
            # Multilabel keeps every label in the macro average: an absent label counts 0.
            values["f1_macro"] = _macro(_f1(tp, fp, fn), torch.ones_like(tp, dtype=torch.float))
        else:
            n = self._count
            values["mae"] = self._abs_error / (n * self.num_outputs)
            values["mse"] = self._sq_error / (n * self.num_outputs)
            values["r2"] = self._r2(n)
        return values

    def _r2(self, n: Tensor) -> Tensor:
        """[K] uniform average over outputs of R², as torchmetrics' ``_r2_score_compute``."""
        tss = self._sum_y2 - self._sum_y * (self._sum_y / n)
        rss = self._rss
        fit = ~torch.isclose(rss, torch.zeros_like(rss), atol=1e-4)  # else a perfect fit: 1
        spread = ~torch.isclose(tss, torch.zeros_like(tss), atol=1e-4)  # else constant y: 0
        raw = torch.where(fit & spread, 1 - rss / tss, torch.where(fit, 0.0, 1.0))
        return raw.mean(-1)

    def confusion(self) -> Tensor:
        """[K, C, C] multiclass counts: rows the true class, columns the predicted one, as
        torchmetrics' MulticlassConfusionMatrix."""
        if self.task != "multiclass":
            raise ValueError(f"a confusion matrix is for multiclass tasks, not {self.task}")
        return self._confusion.clone()
