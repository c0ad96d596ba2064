"""What a plugin declares about itself: small frozen dataclasses, one per kind.

An entry point names either a spec or a bare class/factory; a bare one is wrapped in
its kind's spec with the defaults below, so third-party authors need nothing from
lossopt for the simple case and a spec when they want to declare more.

The generic code (registry, config generation, the training module) reads these
fields; it never special-cases a plugin by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from lossopt.core.checks import Check, OneOf, Range

Task = Literal["multiclass", "multilabel", "regression"]
# How the model's raw output is presented to a loss. "logits" is the raw output itself
# (for regression: the predicted values).
OutputForm = Literal["logits", "log_probs", "probs", "sigmoid"]
# How targets are presented: class index (int64, shape [N]), one-hot / multi-hot
# floats (shape [N, C]) or regression values (float, shape [N, T]).
TargetForm = Literal["index", "onehot", "value"]

TASKS: tuple[str, ...] = ("multiclass", "multilabel", "regression")


@dataclass(frozen=True)
class Contract:
    """The forms a loss consumes for one task."""

    output: OutputForm
    target: TargetForm


@dataclass(frozen=True, eq=False)
class PluginSpec:
    """Fields every plugin kind shares.

    factory: the class or function that builds the plugin; its signature is the
        source of the plugin's typed config.
    description: one line; defaults to the first line of the factory's docstring.
    defaults: config defaults that replace the signature's (values may be Hydra
        interpolations such as ``${data.num_classes}``).
    hidden: signature parameters not exposed in config (deprecated or internal).
    checks: value checks per parameter, on top of the kind's own ``kind_checks``.

    Specs compare and hash by identity (``eq=False``): each is one plugin, and the
    generated configs are cached per spec.
    """

    factory: Callable[..., Any]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()
    checks: Mapping[str, Check] = field(default_factory=dict)

    # Parameters the caller passes at build time (they exist only at run time) and so
    # never appear in config.
    runtime: ClassVar[tuple[str, ...]] = ()
    # Parameters never exposed for any plugin of the kind.
    kind_hidden: ClassVar[tuple[str, ...]] = ("size_average", "reduce")
    kind_checks: ClassVar[Mapping[str, Check]] = {}

    def summary(self) -> str:
        if self.description:
            return self.description
        doc = (getattr(self.factory, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""

    def all_checks(self) -> dict[str, Check]:
        return {**self.kind_checks, **self.checks}

    def all_hidden(self) -> tuple[str, ...]:
        return (*self.runtime, *self.kind_hidden, *self.hidden)


_CLASS_INDEX = Contract("logits", "index")


@dataclass(frozen=True, eq=False)
class LossSpec(PluginSpec):
    """A loss: an ``nn.Module`` called as ``loss(output, target)`` giving a scalar.

    contracts: for each task the loss serves, the forms of output and target it
        consumes; the training module adapts the model's output and the targets.
    class_weights: the parameter holding per-class weights, which also accepts
        ``balanced`` (weights from the training set's class frequencies).
    stackable: the loss has no parameters of its own and is built from tensor
        operations without data-dependent Python control flow, so the vectorized
        launcher may compute it for many members at once with ``torch.func.vmap``
        (one value per member, each equal to the loss of that member alone).
    """

    contracts: Mapping[str, Contract] = field(default_factory=lambda: {"multiclass": _CLASS_INDEX})
    class_weights: str | None = None
    stackable: bool = False

    kind_checks: ClassVar[Mapping[str, Check]] = {
        "reduction": OneOf(("mean", "sum"), "training minimises a scalar loss"),
    }

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.contracts)


# torch.optim validates some values itself, but not all (momentum >= 1 diverges
# silently), and its messages do not name the config key; these apply to every
# optimizer that has the parameter.
_OPTIMIZER_CHECKS: Mapping[str, Check] = {
    "lr": Range(0.0, None),
    "momentum": Range(0.0, 1.0, high_inclusive=False),
    "dampening": Range(0.0, 1.0),
    "weight_decay": Range(0.0, None),
    "eps": Range(0.0, None),
    "betas": Range(0.0, 1.0, high_inclusive=False),
    "alpha": Range(0.0, None),
    "rho": Range(0.0, 1.0),
    "lr_decay": Range(0.0, None),
}


@dataclass(frozen=True, eq=False)
class OptimizerSpec(PluginSpec):
    """An optimizer: ``factory(params, **hyper)`` returning a ``torch.optim.Optimizer``.

    Capability flags tell the trainer and the tests what the optimizer needs.
    needs_closure: ``step`` must be given a closure that re-evaluates the loss (lbfgs).
    sparse_gradients: works only with sparse gradients (SparseAdam).
    matrix_params_only: accepts only 2-D parameters (Muon).
    stackable: updates each element from its own gradient and state alone (SGD, Adam,
        …), so the vectorized launcher may give each member of a stacked model its own
        parameter group of views into the stacked tensors. Optimizers that look at a
        whole tensor (norms, factored or orthogonalized updates) or re-evaluate the
        loss must not declare it.
    """

    needs_closure: bool = False
    sparse_gradients: bool = False
    matrix_params_only: bool = False
    stackable: bool = False

    runtime: ClassVar[tuple[str, ...]] = ("params",)
    kind_hidden: ClassVar[tuple[str, ...]] = ("differentiable", "capturable")
    kind_checks: ClassVar[Mapping[str, Check]] = _OPTIMIZER_CHECKS


@dataclass(frozen=True, eq=False)
class SchedulerSpec(PluginSpec):
    """A learning-rate schedule: ``factory(optimizer, total_steps, **params)``.

    interval: "step" schedules advance every optimizer step and get ``total_steps``
        in steps; "epoch" schedules advance once per epoch and count in epochs.
    """

    interval: Literal["step", "epoch"] = "step"

    runtime: ClassVar[tuple[str, ...]] = ("optimizer", "total_steps")


@dataclass(frozen=True, eq=False)
class ModelSpec(PluginSpec):
    """A model: ``factory(input_shape, num_outputs, **params)`` returning an ``nn.Module``
    that maps a batch of inputs to raw outputs of shape [N, num_outputs].

    image_only: needs image inputs shaped [C, H, W] (convolutional models); checked
        against the dataset before anything is built.
    stackable: the module has no state shared across a batch (BatchNorm's running
        statistics) and runs under ``torch.func.vmap(functional_call)``, so the
        vectorized launcher may stack the parameters of many members into one model.
    """

    image_only: bool = False
    stackable: bool = False

    defaults: Mapping[str, Any] = field(
        default_factory=lambda: {
            "input_shape": "${data.input_shape}",
            "num_outputs": "${data.num_outputs}",
        }
    )


@dataclass(frozen=True, eq=False)
class DataSpec(PluginSpec):
    """A dataset: ``factory(**params)`` returning a LightningDataModule, or a
    ``TensorDataModule`` (in-memory splits; see ``core.data``).

    info: fields added to the data config so the rest of the config can interpolate
        them (``task``, ``num_classes``, ``num_outputs``, ``input_shape``); values may
        be interpolations of the plugin's own parameters (``${.n_classes}``).
    stackable: the factory returns a ``TensorDataModule`` (in-memory splits), which the
        vectorized launcher indexes directly to give each member its own batches.
    """

    info: Mapping[str, Any] = field(default_factory=dict)
    stackable: bool = False


KIND_SPECS: Mapping[str, type[PluginSpec]] = {
    "loss": LossSpec,
    "optimizer": OptimizerSpec,
    "scheduler": SchedulerSpec,
    "model": ModelSpec,
    "data": DataSpec,
}
