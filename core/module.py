"""The LightningModule every experiment runs: a model, a loss, an optimizer, metrics.

The loss sees the model output and the targets in the forms its contract declares
(``core.adapter``); metrics always see them in the task's natural form, so runs with
different losses are measured alike.

Per step the module only updates torchmetrics states on the device: no ``.item()``,
no input check that reads the data back, and no ``self.log`` call, which costs
Lightning ~0.3 ms of Python each (a third of a small model's step on CPU). (One read
remains on a GPU, inside torchmetrics: multiclass counts use ``torch.bincount``,
which looks up the largest label.) Epoch values are logged once per epoch as metric
objects (Lightning computes them, synced across DDP ranks, and resets them); the
training loss is also logged per step, but only on the steps Lightning writes to the
loggers (every ``trainer.log_every_n_steps``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelF1Score,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from lossopt.core.adapter import adapt, scores
from lossopt.core.errors import diverged
from lossopt.core.recipe import parameter_groups
from lossopt.core.specs import Contract, OptimizerSpec

__all__ = ["ExperimentModule", "MeanLoss", "metrics_for"]


class MeanLoss(Metric):
    """The mean loss per example over an epoch, from each batch's mean loss.

    Not torchmetrics' MeanMetric: its NaN check syncs the GPU on every update, and
    with the check disabled it ignores the weights (torchmetrics 1.9). A NaN or
    infinite loss in any batch makes the mean non-finite, which is how divergence
    is seen once per epoch.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, loss: Tensor, batch_size: int) -> None:
        self.total += loss.detach().float() * batch_size
        self.count += batch_size

    def compute(self) -> Tensor:
        return self.total / self.count


_CLASSIFICATION = {
    "multiclass": (MulticlassAccuracy, MulticlassF1Score),
    "multilabel": (MultilabelAccuracy, MultilabelF1Score),
}


def metrics_for(task: str, num_outputs: int) -> MetricCollection:
    """Classification: accuracy and macro-F1; regression: MAE, MSE, R².

    Updated on every step, so kept cheap: torchmetrics' input checks are off (they
    count the distinct target values, which waits for the GPU on every update; a label
    out of range still fails, in the loss), and so are compute groups (accuracy is
    micro- and F1 macro-averaged: their states differ, so the groups never merge and
    would only cost a check per update).
    """
    if task in _CLASSIFICATION:
        accuracy, f1 = _CLASSIFICATION[task]
        return MetricCollection(
            {
                "accuracy": accuracy(num_outputs, average="micro", validate_args=False),
                "f1_macro": f1(num_outputs, average="macro", validate_args=False),
            },
            compute_groups=False,
        )
    r2 = R2Score(multioutput="uniform_average") if num_outputs > 1 else R2Score()
    return MetricCollection(
        {"mae": MeanAbsoluteError(), "mse": MeanSquaredError(), "r2": r2}, compute_groups=False
    )


class ExperimentModule(L.LightningModule):
    """Trains ``model`` with ``loss``; the optimizer and schedule are built by the
    given callables once Lightning knows the number of steps."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        contract: Contract,
        task: str,
        num_outputs: int,
        optimizer_spec: OptimizerSpec,
        make_optimizer: Callable[[list[dict]], torch.optim.Optimizer],
        make_scheduler: Callable[[torch.optim.Optimizer, int], Any],
        scheduler_interval: str,
        weight_decay: float | None,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss  # a loss with parameters is trained with the model
        self.contract, self.task = contract, task
        self.optimizer_spec = optimizer_spec
        self._make_optimizer, self._make_scheduler = make_optimizer, make_scheduler
        self.scheduler_interval = scheduler_interval
        self.weight_decay = weight_decay
        metrics = metrics_for(task, num_outputs)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanLoss(), MeanLoss(), MeanLoss()
        self.confusion = MulticlassConfusionMatrix(num_outputs) if task == "multiclass" else None
        self._measured: tuple[int, int] | None = None  # (epoch, batch) last measured

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, measure: bool = True) -> Tensor:
        x, y = batch
        output = self.model(x)
        loss = self.loss(*adapt(output, y, self.contract, self.task))
        if not measure:
            return loss
        output = scores(self.loss, output)
        getattr(self, f"{stage}_metrics").update(*self._metric_inputs(output, y))
        getattr(self, f"{stage}_loss").update(loss, len(x))
        if stage == "test" and self.confusion is not None:
            self.confusion.update(output, y)
        return loss

    def _metric_inputs(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.task == "multilabel":
            return output, y.long()
        if self.task == "regression" and output.shape[1] == 1:
            return output.squeeze(1), y.reshape(-1)
        return output, y

    def _log_epoch(self, stage: str) -> None:
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), prog_bar=stage == "val")
        self.log_dict(getattr(self, f"{stage}_metrics"), prog_bar=stage == "val")

    def _logs_this_step(self) -> bool:
        # The condition of Lightning's logger connector: step metrics are written every
        # log_every_n_steps optimizer steps; a value logged on the others is dropped.
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        # An optimizer that re-evaluates the loss (L-BFGS's closure, its line search)
        # calls this several times per batch: the batch is measured at the weights it
        # arrived with, once; the line search's trial points are not training losses.
        first = self._measured != (self.current_epoch, batch_idx)
        self._measured = (self.current_epoch, batch_idx)
        loss = self._step(batch, "train", measure=first)
        if first and self._logs_this_step():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        # Read once per epoch: checking every step would sync the GPU every step.
        if not torch.isfinite(self.train_loss.compute()):
            raise diverged(self.current_epoch)
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The random state goes with the weights (dropout masks, random augmentations):
        # a job resumed from this checkpoint draws what the uninterrupted job would have.
        checkpoint["lossopt_rng"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["lossopt_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("lossopt_rng", {})
        if "cpu" in states:
            torch.set_rng_state(states["cpu"])
        if "cuda" in states and torch.cuda.device_count() == len(states["cuda"]):
            torch.cuda.set_rng_state_all(states["cuda"])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Optimizers for sparse gradients (SparseAdam) get the same gradient in sparse
        # form; for dense models this gives a lazy, element-wise update.
        if self.optimizer_spec.sparse_gradients:
            for p in self.parameters():
                if p.grad is not None and not p.grad.is_sparse:
                    p.grad = p.grad.to_sparse()

    def configure_optimizers(self) -> dict[str, Any]:
        trainable = [p for m in (self.model, self.loss) for p in m.parameters() if p.requires_grad]
        groups = parameter_groups(trainable, self.weight_decay)
        optimizer = self._make_optimizer(groups)
        trainer = self.trainer
        steps = (
            trainer.max_epochs
            if self.scheduler_interval == "epoch"
            else trainer.estimated_stepping_batches
        )
        scheduler = self._make_scheduler(optimizer, int(steps))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }
