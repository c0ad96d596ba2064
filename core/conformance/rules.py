"""What a conformance rule is, and the helpers the rules of every kind share.

A rule is a named function of one plugin (its kind, name and parameters). It returns
when the plugin keeps the rule, raises ``AssertionError`` with a message saying what
is wrong when it breaks it, and raises ``NotApplicable`` with the reason when the rule
does not concern the plugin (a loss without a ``reduction`` parameter has no sum/mean
relation to keep) or cannot be judged because a more basic rule fails (a loss that
gives no scalar has no gradient to inspect).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf

from lossopt.core.configs import NAME_FIELD, build, config_class
from lossopt.core.registry import registry
from lossopt.core.specs import PluginSpec

__all__ = [
    "NUM_CLASSES",
    "NotApplicable",
    "Rule",
    "Subject",
    "composed_values",
    "factory_kwargs",
    "max_difference",
    "resolved_params",
    "same",
    "sample_problem",
]

NUM_CLASSES = 5


class NotApplicable(Exception):
    """The rule does not concern this plugin; ``str(self)`` says why."""


@dataclass(frozen=True)
class Subject:
    """The plugin a rule judges: kind, name, spec and the parameters to build it with.

    tasks: the loss tasks to check (all the loss declares when empty).
    """

    kind: str
    name: str
    spec: PluginSpec
    params: Mapping[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()

    def values(self, **overrides: Any) -> dict[str, Any]:
        """Config values: the generated defaults resolved against the sample data, then
        the subject's parameters, then ``overrides``."""
        return resolved_params(self.kind, self.name, {**self.params, **overrides})

    def build(self, **runtime: Any) -> Any:
        return build(self.kind, self.name, self.values(), **runtime)


@dataclass(frozen=True)
class Rule:
    """A named contract check; ``about`` is the promise it checks, in one line."""

    name: str
    about: str
    check: Callable[[Subject], None]


def resolved_params(kind: str, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Config defaults resolved against the sample data (``${data.num_classes}`` …)."""
    node = OmegaConf.structured(config_class(kind, name, registry(kind).spec(name)))
    node.merge_with(params)
    root = OmegaConf.create({"data": {"num_classes": NUM_CLASSES, "num_outputs": NUM_CLASSES}})
    root[kind] = node  # a dataset's own config is the data config
    values = OmegaConf.to_container(root, resolve=True)[kind]
    values.pop(NAME_FIELD)
    return values


def sample_problem(task: str, batch: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw model outputs [batch, NUM_CLASSES] and targets in the task's natural form."""
    gen = torch.Generator().manual_seed(seed)
    output = torch.randn(batch, NUM_CLASSES, generator=gen)
    if task == "multiclass":
        target = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    elif task == "multilabel":
        target = (torch.rand(batch, NUM_CLASSES, generator=gen) > 0.5).float()
    else:  # regression: positive values, as Poisson-type losses need
        target = torch.rand(batch, NUM_CLASSES, generator=gen) * 3 + 0.1
    return output, target


def same(a: Any, b: Any) -> bool:
    """Equal values, with tuples and lists alike (a config turns tuples into lists)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    return a == b


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item()


def composed_values(subject: Subject) -> dict[str, Any]:
    """The plugin's values in the config ``lossopt train KIND=NAME`` composes through
    Hydra (on sample data of NUM_CLASSES classes), with the subject's parameters."""
    from lossopt.core.composition import compose

    overrides = [f"{subject.kind}={subject.name}", "data=synthetic"]
    cfg = compose([*overrides, f"data.n_outputs={NUM_CLASSES}"])
    cfg[subject.kind].merge_with(subject.params)
    values = OmegaConf.to_container(cfg[subject.kind], resolve=True)
    values.pop(NAME_FIELD)
    return values


def factory_kwargs(subject: Subject) -> dict[str, Any]:
    """What calling the factory directly takes: the spec's own defaults (resolved on the
    sample data) and the subject's parameters; the rest are the signature's defaults."""
    data = {"num_classes": NUM_CLASSES, "num_outputs": NUM_CLASSES}
    root = OmegaConf.create({"plugin": dict(subject.spec.defaults), "data": data})
    kwargs = {**OmegaConf.to_container(root, resolve=True)["plugin"], **subject.params}
    return {
        k: torch.tensor(v, dtype=torch.float32)
        if isinstance(v, (list, tuple)) and _tensor_param(subject, k)
        else v
        for k, v in kwargs.items()
    }


def _tensor_param(subject: Subject, key: str) -> bool:
    from lossopt.core.configs import parameters

    return any(p.name == key and p.tensor for p in parameters(subject.spec))
