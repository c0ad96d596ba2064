"""The files ``lossopt new-plugin`` writes. Placeholders: __NAME__ (the plugin's name),
__CLASS__ (its CamelCase), __DIST__ (distribution), __PKG__ (import package), __KIND__,
__KINDREF__ (``KIND/NAME``), __GROUP__ (entry-point group), __MODULE__ (plugin module),
__ABOUT__ (one line). Each plugin template keeps every conformance rule of its kind as
written, and says where to put the author's own code."""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "A lossopt __KIND__ plugin: __NAME__."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["lossopt", "torch>=2.4"]

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.setuptools.packages.find]
where = ["src"]

# All lossopt needs: one entry point in the kind's group. Its name is what users select
# (__KIND__=__NAME__); it points at the spec in the plugin module.
[project.entry-points."__GROUP__"]
__NAME__ = "__PKG__.__MODULE__:__NAME__"

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

INIT = '''\
"""__DIST__: a lossopt __KIND__ plugin.

Nothing is imported here: lossopt lists plugins from entry-point metadata and imports
``__MODULE__`` only when __NAME__ is selected.
"""

__version__ = "0.1.0"
'''

TESTS = '''\
"""lossopt's conformance rules for __NAME__, one test per rule.

``lossopt check __NAME__`` runs the same rules and prints them as a table.
"""

from lossopt.testing import parametrize_with_checks


@parametrize_with_checks(["__KINDREF__"])
def test_lossopt_rules(check):
    check()
'''

README = """\
# __DIST__

A lossopt __KIND__ plugin: `__NAME__`. __ABOUT__ (a template: put your own in).

```bash
pip install -e .   # registers the entry point: __KIND__=__NAME__
lossopt plugins --kind __KIND__   # lists __NAME__, from __DIST__==0.1.0
lossopt check __NAME__   # lossopt's conformance rules, as a table
pytest   # the same rules, one test each
lossopt train __KIND__=__NAME__   # use it like a built-in
```

`lossopt plugins show __NAME__` lists its parameters. The code is in
`src/__PKG__/__MODULE__.py`: the plugin and its spec, which declares what lossopt
needs to know. lossopt's `docs/plugins.md` describes the contract of each kind.
"""

LOSS = '''\
"""The __NAME__ loss (a lossopt loss plugin)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lossopt.core.checks import Range
from lossopt.core.specs import Contract, LossSpec

__all__ = ["__CLASS__", "__NAME__"]


class __CLASS__(nn.Module):
    """Cross-entropy of temperature-scaled logits. Replace ``forward`` with your loss.

    Shapes: logits [N, C], class indices [N] -> a scalar.
    """

    # The signature is the typed config: __KIND__.temperature=2 is checked as a float.
    def __init__(self, temperature: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = temperature
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits / self.temperature, target, reduction=self.reduction)


# What lossopt must know: the forms the loss consumes per task (the training module
# adapts outputs and targets), value checks, and that it is built from tensor
# operations only (no parameters, no data-dependent branches), so that sweeps may
# compute it for many jobs at once.
__NAME__ = LossSpec(
    __CLASS__,
    "__ABOUT__.",
    contracts={"multiclass": Contract("logits", "index")},
    checks={"temperature": Range(0.0, None, low_inclusive=False)},
    stackable=True,
)
'''

OPTIMIZER = '''\
"""The __NAME__ optimizer (a lossopt optimizer plugin)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from lossopt.core.specs import OptimizerSpec

__all__ = ["__CLASS__", "__NAME__"]


class __CLASS__(torch.optim.Optimizer):
    """SGD with heavy-ball momentum. Replace the update in ``step`` with yours.

    For each parameter: m = momentum * m + g, then p = p - lr * m.
    """

    # The first parameter must be ``params``; the others are the typed config.
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        momentum: float = 0.9,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:  # call it, and return its loss
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:  # each group's own lr
            for p in group["params"]:
                if p.grad is None:  # untouched without a gradient
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(p.grad)
                p.add_(buffer, alpha=-group["lr"])
        return loss


# stackable: each element is updated from its own gradient and state alone, so sweeps
# may train many jobs as one stacked model. Remove it if your update looks at a whole
# tensor (norms, factored or orthogonalized updates); add needs_closure=True if step
# must re-evaluate the loss.
__NAME__ = OptimizerSpec(
    __CLASS__,
    "__ABOUT__.",
    stackable=True,
)
'''

MODEL = '''\
"""The __NAME__ model (a lossopt model plugin)."""

from __future__ import annotations

import math

from torch import nn

from lossopt.core.checks import Range
from lossopt.core.specs import ModelSpec

__all__ = ["build___NAME__", "__NAME__"]


def build___NAME__(input_shape: list[int], num_outputs: int, hidden: int = 64) -> nn.Module:
    """A one-hidden-layer perceptron: [N, *input_shape] -> [N, num_outputs] raw outputs.

    input_shape and num_outputs come from the dataset; the rest is the typed config.
    """
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(int(d) for d in input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_outputs),
    )


# stackable: no state shared across a batch (BatchNorm's running statistics), so sweeps
# may stack many jobs' parameters into one model. image_only=True for [C, H, W] inputs.
__NAME__ = ModelSpec(
    build___NAME__,
    "__ABOUT__.",
    checks={"hidden": Range(1, None)},
    stackable=True,
)
'''

DATASET = '''\
"""The __NAME__ dataset (a lossopt dataset plugin)."""

from __future__ import annotations

import itertools

import torch

from lossopt.core.checks import Range
from lossopt.core.data import Split, TensorDataModule
from lossopt.core.specs import DataSpec

__all__ = ["__NAME__", "__NAME___data"]


def __NAME___data(
    n_samples: int = 300,
    n_features: int = 8,
    n_classes: int = 3,
    batch_size: int = 64,
    seed: int = 0,
) -> TensorDataModule:
    """Gaussian blobs, one per class: a multiclass task. Replace with your data.

    Inputs float32 [N, n_features]; targets int64 class indices [N]; 70/15/15 splits.
    """
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, n_features, generator=gen) * 3
    y = torch.randint(0, n_classes, (n_samples,), generator=gen)
    x = centres[y] + torch.randn(n_samples, n_features, generator=gen)
    cuts = [0, int(n_samples * 0.7), int(n_samples * 0.85), n_samples]
    train, val, test = (Split(x[a:b], y[a:b]) for a, b in itertools.pairwise(cuts))
    return TensorDataModule(
        "__NAME__",
        "multiclass",
        train,
        val,
        test,
        num_classes=n_classes,
        batch_size=batch_size,
    )


# info: what the rest of the config interpolates (${data.num_classes} …); relative
# interpolations point at the dataset's own parameters.
__NAME__ = DataSpec(
    __NAME___data,
    "__ABOUT__.",
    info={
        "task": "multiclass",
        "num_classes": "${.n_classes}",
        "num_outputs": "${.n_classes}",
        "input_shape": ["${..n_features}"],  # inside a list: one level deeper
    },
    checks={
        "n_samples": Range(20, None),
        "n_features": Range(1, None),
        "n_classes": Range(2, None),
    },
    stackable=True,
)
'''

SCHEDULER = '''\
"""The __NAME__ learning-rate schedule (a lossopt scheduler plugin)."""

from __future__ import annotations

from torch.optim import Optimizer, lr_scheduler

from lossopt.core.checks import Range
from lossopt.core.specs import SchedulerSpec

__all__ = ["__NAME__", "__NAME___schedule"]


def __NAME___schedule(
    optimizer: Optimizer, total_steps: int, final_factor: float = 0.1
) -> lr_scheduler.LRScheduler:
    """Linear decay from the initial rate to final_factor x it over total_steps.

    optimizer and total_steps are given at run time; the rest is the typed config.
    """

    def factor(step: int) -> float:
        return 1.0 - (1.0 - final_factor) * min(step, total_steps) / max(1, total_steps)

    return lr_scheduler.LambdaLR(optimizer, factor)


# interval="step": advanced every optimizer step, total_steps counts steps ("epoch" to
# advance once per epoch).
__NAME__ = SchedulerSpec(
    __NAME___schedule,
    "__ABOUT__.",
    interval="step",
    checks={"final_factor": Range(0.0, 1.0)},
)
'''

# kind -> (plugin module, its template, one line about the template plugin)
PLUGINS = {
    "loss": ("losses", LOSS, "Cross-entropy of temperature-scaled logits"),
    "optimizer": ("optimizers", OPTIMIZER, "SGD with heavy-ball momentum"),
    "model": ("models", MODEL, "A one-hidden-layer perceptron"),
    "data": ("datasets", DATASET, "Gaussian blobs, one per class"),
    "scheduler": ("schedulers", SCHEDULER, "Linear decay of the learning rate"),
}
