"""Present the model's output and the dataset's targets in the forms a loss declares.

Datasets give targets in their task's natural form: class indices [N] (multiclass),
multi-hot floats [N, C] (multilabel), values [N, T] (regression). A loss's contract
for the task says which output form (logits, log_probs, probs, sigmoid) and which
target form (index, onehot, value) it consumes; ``adapt`` converts both, so every
loss can be compared on the same task.

A loss with its own output head (``adaptive_log_softmax``) consumes features, not
class scores; it defines ``scores(output) -> Tensor [N, C]`` and metrics use that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossopt.core.errors import LossoptError
from lossopt.core.specs import Contract, LossSpec

__all__ = ["adapt", "contract_for", "scores"]

_OUTPUTS = {
    "logits": lambda out: out,
    "log_probs": lambda out: F.log_softmax(out, dim=1),
    "probs": lambda out: F.softmax(out, dim=1),
    "sigmoid": torch.sigmoid,
}


def contract_for(spec: LossSpec, name: str, task: str, data_name: str = "the dataset") -> Contract:
    """The loss's contract for ``task``, or a clear error before any training."""
    try:
        return spec.contracts[task]
    except KeyError:
        raise LossoptError(
            f"loss '{name}' cannot serve the {task} task of {data_name}: it declares "
            f"{', '.join(spec.tasks)}. Choose a loss for {task} "
            f"('lossopt plugins' lists each loss's tasks) or another dataset."
        ) from None


def _target(target: Tensor, form: str, task: str, num_outputs: int, like: Tensor) -> Tensor:
    if form == "index":
        return target  # only multiclass declares index targets
    if form == "onehot" and task == "multiclass":
        return F.one_hot(target, num_outputs).to(like.dtype)
    return target.to(like.dtype)  # multi-hot or regression values


def adapt(output: Tensor, target: Tensor, contract: Contract, task: str) -> tuple[Tensor, Tensor]:
    """(output, target) in the contract's forms; shapes as in the module docstring."""
    adapted = _OUTPUTS[contract.output](output)
    return adapted, _target(target, contract.target, task, output.shape[1], adapted)


def scores(loss: torch.nn.Module, output: Tensor) -> Tensor:
    """What metrics judge: the loss's own class scores when it has a head, else ``output``."""
    own_scores = getattr(loss, "scores", None)
    if not callable(own_scores):
        return output.detach()
    with torch.no_grad():
        return own_scores(output.detach())
