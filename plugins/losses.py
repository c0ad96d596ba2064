"""Built-in loss plugins.

Most are torch's own loss classes, wrapped in a spec that declares what they consume
per task; the training module adapts the model output and the targets to that
contract, so every loss can be compared on the same task. Two losses have no torch
class of that exact form and are defined here: multiclass ``focal`` and
``adaptive_log_softmax`` (whose module returns an output/loss pair).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossopt.core.checks import OneOf, Range
from lossopt.core.specs import Contract, LossSpec

_INDEX = {"multiclass": Contract("logits", "index")}
_ONEHOT_LOGITS = {
    "multiclass": Contract("logits", "onehot"),
    "multilabel": Contract("logits", "onehot"),
}
# Distance losses compare values on regression, and probabilities with one-hot
# targets on classification.
_DISTANCE = {
    "regression": Contract("logits", "value"),
    "multiclass": Contract("probs", "onehot"),
    "multilabel": Contract("sigmoid", "onehot"),
}
_POSITIVE = Range(0.0, None, low_inclusive=False)


class FocalLoss(nn.Module):
    """Multiclass focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)^gamma.

    Down-weights well-classified examples. With gamma=0 it equals cross-entropy,
    including class weights and the weighted mean torch uses for them.
    Shapes: logits [N, C], target class indices [N].
    """

    def __init__(
        self, gamma: float = 2.0, weight: Tensor | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_pt = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
        scale = self.weight[target] if self.weight is not None else torch.ones_like(loss)
        loss = loss * scale
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / scale.sum()


class SigmoidFocalLoss(nn.Module):
    """Binary / multi-label focal loss: torchvision's ``sigmoid_focal_loss`` per label.

    Shapes: logits [N, C], multi-hot float targets [N, C].
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        # Imported here: torchvision brings torch._dynamo (0.8 s) into every process.
        from torchvision.ops import sigmoid_focal_loss

        return sigmoid_focal_loss(logits, target, self.alpha, self.gamma, self.reduction)


class AdaptiveLogSoftmaxLoss(nn.Module):
    """Adaptive softmax (Grave et al. 2017) as a loss: a head with its own parameters.

    The model's raw output [N, in_features] is the head's input; the loss is the mean
    negative log-likelihood of the target classes [N]. Its parameters are optimized
    with the model's.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        cutoffs: list[int] | None = None,
        div_value: float = 4.0,
        head_bias: bool = False,
    ) -> None:
        super().__init__()
        # One tail cluster holding the rarer half of the classes by default.
        cutoffs = cutoffs if cutoffs is not None else [max(1, n_classes // 2)]
        self.head = nn.AdaptiveLogSoftmaxWithLoss(
            in_features, n_classes, cutoffs, div_value=div_value, head_bias=head_bias
        )

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return self.head(output, target).loss

    def scores(self, output: Tensor) -> Tensor:
        """Log-probabilities of every class [N, n_classes]: what metrics judge."""
        return self.head.log_prob(output)


l1 = LossSpec(nn.L1Loss, "Mean absolute error.", contracts=_DISTANCE, stackable=True)
mse = LossSpec(nn.MSELoss, "Mean squared error.", contracts=_DISTANCE, stackable=True)
smooth_l1 = LossSpec(
    nn.SmoothL1Loss,
    "Squared error below beta, absolute error above.",
    contracts=_DISTANCE,
    checks={"beta": Range(0.0, None)},
    stackable=True,
)
huber = LossSpec(
    nn.HuberLoss,
    "Huber loss: squared error below delta, linear above.",
    contracts=_DISTANCE,
    checks={"delta": _POSITIVE},
    stackable=True,
)
cross_entropy = LossSpec(
    nn.CrossEntropyLoss,
    "Cross-entropy of softmax logits against class indices.",
    contracts=_INDEX,
    class_weights="weight",
    checks={"label_smoothing": Range(0.0, 1.0)},
    stackable=True,
)
nll = LossSpec(
    nn.NLLLoss,
    "Negative log-likelihood of log-softmax outputs.",
    contracts={"multiclass": Contract("log_probs", "index")},
    class_weights="weight",
    stackable=True,
)
bce = LossSpec(
    nn.BCELoss,
    "Binary cross-entropy of sigmoid probabilities against one-hot targets.",
    contracts={
        "multiclass": Contract("sigmoid", "onehot"),
        "multilabel": Contract("sigmoid", "onehot"),
    },
    stackable=True,
)
bce_with_logits = LossSpec(
    nn.BCEWithLogitsLoss,
    "Binary cross-entropy on logits (numerically stable); pos_weight per class.",
    contracts=_ONEHOT_LOGITS,
    stackable=True,
)
multilabel_soft_margin = LossSpec(
    nn.MultiLabelSoftMarginLoss,
    "One-versus-all logistic loss over labels.",
    contracts=_ONEHOT_LOGITS,
    stackable=True,
)
multi_margin = LossSpec(
    nn.MultiMarginLoss,
    "Multiclass hinge (margin) loss.",
    contracts=_INDEX,
    class_weights="weight",
    checks={"p": OneOf((1, 2), "torch implements p=1 and p=2"), "margin": _POSITIVE},
    stackable=True,
)
kl_div = LossSpec(
    nn.KLDivLoss,
    "Kullback-Leibler divergence of the target distribution from the predicted one.",
    contracts={"multiclass": Contract("log_probs", "onehot")},
    # 'mean' averages over classes too, which is not the KL divergence; torch warns.
    defaults={"reduction": "batchmean"},
    checks={"reduction": OneOf(("batchmean", "mean", "sum"), "training minimises a scalar")},
    stackable=True,
)
poisson_nll = LossSpec(
    nn.PoissonNLLLoss,
    "Poisson negative log-likelihood; the output is the log of the rate.",
    contracts={"regression": Contract("logits", "value")},
    checks={"eps": _POSITIVE},
    stackable=True,
)
focal = LossSpec(
    FocalLoss,
    contracts=_INDEX,
    class_weights="weight",
    checks={"gamma": Range(0.0, None)},
    stackable=True,
)
sigmoid_focal = LossSpec(
    SigmoidFocalLoss,
    contracts=_ONEHOT_LOGITS,
    checks={"gamma": Range(0.0, None)},
    stackable=True,
)
adaptive_log_softmax = LossSpec(
    AdaptiveLogSoftmaxLoss,
    contracts=_INDEX,
    defaults={"in_features": "${data.num_outputs}", "n_classes": "${data.num_classes}"},
)
