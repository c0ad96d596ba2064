"""Typed configs generated from plugin signatures, and the one path that builds plugins.

For every plugin a dataclass is made from its factory's signature (minus the
parameters the kind passes at run time and deprecated ones) and stored in Hydra's
ConfigStore under the kind's group, with a ``name`` field naming the plugin. OmegaConf
then type-checks every override; ``check_values`` adds the value checks of the spec
and of the kind, and ``build`` is the only place a plugin object is created — from a
registered name, never from an import path found in a config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Optional, Union

from omegaconf import MISSING

from lossopt.core.checks import OneOf
from lossopt.core.errors import ConfigError
from lossopt.core.registry import KINDS, close_matches, registry
from lossopt.core.specs import DataSpec, LossSpec, PluginSpec

__all__ = ["Param", "build", "check_values", "config_class", "parameters", "store_configs"]

NAME_FIELD = "name"
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One configurable parameter of a plugin."""

    name: str
    type: Any  # an annotation OmegaConf understands
    default: Any  # MISSING when required
    tensor: bool = False  # a torch.Tensor argument, given as a list in config
    choices: tuple[Any, ...] = ()  # from a Literal annotation

    @property
    def type_name(self) -> str:
        text = _type_text(self.type)
        return f"{text} (tensor)" if self.tensor else text


def _type_text(annotation: Any) -> str:
    """``float | None``, ``list[float]``: what a user may write, in Python's notation."""
    if annotation is Any:
        return "any"
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        inner = [_type_text(a) for a in args if a is not type(None)]
        return " | ".join([*inner, "None"])
    if typing.get_origin(annotation) is list:
        return f"list[{_type_text(args[0]) if args else 'any'}]"
    return getattr(annotation, "__name__", str(annotation))


def _is_tensor(annotation: Any) -> bool:
    return getattr(annotation, "__name__", None) == "Tensor" and "torch" in getattr(
        annotation, "__module__", ""
    )


def _config_type(annotation: Any, default: Any) -> tuple[Any, bool, tuple[Any, ...]]:
    """Map a signature annotation to (OmegaConf type, is-tensor, Literal choices)."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        if isinstance(default, _SCALARS):
            return type(default), False, ()
        if isinstance(default, (list, tuple)):
            return list[Any], False, ()
        return Any, False, ()
    if _is_tensor(annotation):
        return Optional[list[float]], True, ()
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return str, False, args
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        scalars = [a for a in options if not _is_tensor(a)]
        if len(scalars) == 1:  # Optional[X], or Union[float, Tensor] (lr) -> float
            inner, tensor, choices = _config_type(scalars[0], default)
            optional = len(options) < len(args) or default is None
            return (Optional[inner] if optional else inner), tensor, choices
        if not scalars:  # Optional[Tensor]
            return Optional[list[float]], True, ()
        return Any, False, ()
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        element = args[0] if args else Any
        optional = False
        if typing.get_origin(element) in (Union, types.UnionType):
            options = typing.get_args(element)
            optional = type(None) in options
            element = next((a for a in options if a in _SCALARS), Any)
        element = element if element in _SCALARS else Any
        if optional and element is not Any:
            element = Optional[element]
        return list[element], False, ()
    if annotation in _SCALARS:
        return (Optional[annotation] if default is None else annotation), False, ()
    return Any, False, ()


def _signature(factory: Any) -> inspect.Signature:
    try:
        return inspect.signature(factory, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # unresolvable annotations: fall back to defaults
        return inspect.signature(factory)


@cache
def parameters(spec: PluginSpec) -> tuple[Param, ...]:
    """The configurable parameters of a plugin, in signature order."""
    hidden = set(spec.all_hidden())
    params = []
    for p in _signature(spec.factory).parameters.values():
        if p.name in hidden or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        if p.name == NAME_FIELD:
            raise TypeError(f"parameter '{NAME_FIELD}' is reserved for the plugin's name")
        default = spec.defaults.get(p.name, p.default)
        default = MISSING if default is inspect.Parameter.empty else default
        kind, tensor, choices = _config_type(p.annotation, p.default)
        if isinstance(default, str) and default.startswith("${"):
            kind = Any  # an interpolation resolves to whatever it points at
        if isinstance(spec, LossSpec) and p.name == spec.class_weights:
            kind = Any  # a list or 'balanced'; check_values checks which
        params.append(Param(p.name, kind, default, tensor, choices))
    return tuple(params)


def _field(value: Any) -> dataclasses.Field:
    if isinstance(value, (list, tuple, dict)):
        frozen = list(value) if not isinstance(value, dict) else dict(value)
        return dataclasses.field(default_factory=lambda: frozen.copy())
    return dataclasses.field(default=value)


@cache
def config_class(kind: str, name: str, spec: PluginSpec) -> type:
    """The typed config dataclass of one plugin."""
    fields: list[tuple[str, Any, dataclasses.Field]] = [(NAME_FIELD, str, _field(name))]
    fields += [(p.name, p.type, _field(p.default)) for p in parameters(spec)]
    if isinstance(spec, DataSpec):
        fields += [(key, Any, _field(value)) for key, value in spec.info.items()]
    cls = dataclasses.make_dataclass(_class_name(kind, name), fields)
    # Importable by name, so configs pickle into other processes (joblib, submitit),
    # where the module's __getattr__ generates the class again.
    cls.__module__ = __name__
    return cls


_CLASS_PREFIX = "Config__"


def _class_name(kind: str, name: str) -> str:
    label = name if name.isidentifier() else "hex_" + name.encode().hex()
    return f"{_CLASS_PREFIX}{kind}__{label}"


def __getattr__(attribute: str) -> type:
    if attribute.startswith(_CLASS_PREFIX):
        kind, _, label = attribute[len(_CLASS_PREFIX) :].partition("__")
        names = [label]
        if label.startswith("hex_"):
            with contextlib.suppress(ValueError):
                names.insert(0, bytes.fromhex(label[4:]).decode())
        for name in names:
            if _class_name(kind, name) == attribute:
                return config_class(kind, name, registry(kind).spec(name))
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


def store_configs() -> None:
    """Store every plugin's config in Hydra's ConfigStore (group = kind)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for kind in KINDS:
        for plugin in registry(kind).plugins():
            if plugin.error is None:
                try:
                    node: Any = config_class(kind, plugin.name, plugin.load())
                except TypeError:
                    node = {NAME_FIELD: plugin.name}
            else:
                # Selecting it must reach validation, which reports the plugin's own
                # error (its distribution and why) instead of "config not found".
                node = {NAME_FIELD: plugin.name}
            store.store(group=kind, name=plugin.name, node=node, provider="lossopt")


def _type_problem(param: Param, value: Any) -> str | None:
    """Types for values that did not come through a typed OmegaConf node (the API)."""
    if value is None or param.type is Any or param.tensor:
        return None
    kind = param.type
    if typing.get_origin(kind) in (Union, types.UnionType):  # Optional[X] -> X
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if typing.get_origin(kind) is list:
        if not isinstance(value, (list, tuple)):
            return f"expected a list, got {type(value).__name__} {value!r}"
        return None
    expected = typing.get_args(param.type) or (param.type,)
    scalars = tuple(t for t in expected if t in _SCALARS)
    if scalars and not isinstance(value, scalars):
        if float in scalars and isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"expected {param.type_name}, got {type(value).__name__} {value!r}"
    return None


def check_values(kind: str, name: str, spec: PluginSpec, values: Mapping[str, Any]) -> list[str]:
    """Every problem with a plugin's parameter values; keys are reported as ``kind.param``."""
    problems: list[str] = []
    try:
        params = {p.name: p for p in parameters(spec)}
    except TypeError as exc:
        return [f"{kind} '{name}': {exc}"]
    checks = spec.all_checks()
    info = spec.info if isinstance(spec, DataSpec) else {}
    for key in values:
        if key not in params and key != NAME_FIELD and key not in info:
            problems.append(
                f"{kind}.{key}: {kind} '{name}' has no parameter '{key}'."
                f"{close_matches(key, list(params)).replace('Available', 'Parameters')}"
            )
    for key, param in params.items():
        value = values.get(key, param.default)
        if value is MISSING or (isinstance(value, str) and value.startswith("${")):
            problems.append(f"{kind}.{key}: required, no value given; set {kind}.{key}=…")
            continue
        reasons = [_type_problem(param, value)]
        if param.choices:
            reasons.append(OneOf(param.choices)(value))
        if isinstance(spec, LossSpec) and key == spec.class_weights:
            if value is not None and value != "balanced" and not isinstance(value, list):
                reasons.append(f"expected a list of class weights or 'balanced', got {value!r}")
        elif param.tensor and value is not None and not isinstance(value, (list, tuple)):
            reasons.append(f"expected a list of numbers, got {value!r}")
        if key in checks:
            reasons.append(checks[key](value))
        problems += [f"{kind}.{key}: {reason}" for reason in reasons if reason]
    return problems


def _kwargs(spec: PluginSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments: defaults filled in, lists turned into tensors."""
    import torch

    kwargs = {}
    for param in parameters(spec):
        value = values.get(param.name, param.default)
        if param.tensor and isinstance(value, (list, tuple)):
            value = torch.tensor(value, dtype=torch.float32)
        kwargs[param.name] = value
    return kwargs


def build(kind: str, name: str, values: Mapping[str, Any], **runtime: Any) -> Any:
    """Validate ``values`` and build the plugin ``name`` of ``kind``.

    ``runtime`` holds what exists only at run time (an optimizer's params, a
    scheduler's optimizer and step count); it is passed as keyword arguments.
    """
    spec = registry(kind).spec(name)
    values = {k: v for k, v in values.items() if k != NAME_FIELD}
    if problems := check_values(kind, name, spec, values):
        raise ConfigError(problems)
    try:
        return spec.factory(**_kwargs(spec, values), **runtime)
    except (ValueError, TypeError) as exc:
        # The library's own checks (e.g. torch.optim's) are reported like ours.
        raise ConfigError([f"{kind} '{name}': {exc}"]) from exc


PLUGIN_GROUPS: tuple[str, ...] = ("data", "model", "loss", "optimizer", "scheduler")


def plugin_values(cfg: Any, kind: str) -> dict[str, Any]:
    """A plugin group of a composed config as plain, resolved values."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg[kind], resolve=True, throw_on_missing=False)


def validate_plugins(cfg: Any) -> list[str]:
    """Problems with every plugin group of a composed config, all collected."""
    from lossopt.core.errors import PluginError

    problems: list[str] = []
    for kind in PLUGIN_GROUPS:
        name = cfg[kind][NAME_FIELD]
        try:
            spec = registry(kind).spec(name)
            values = plugin_values(cfg, kind)
        except PluginError as exc:
            problems.append(f"{kind}={name}: {exc}")
            continue
        except Exception as exc:  # an interpolation that does not resolve
            problems.append(f"{kind}: {exc}")
            continue
        problems += check_values(kind, name, spec, values)
    return problems
