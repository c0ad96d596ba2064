"""One registry mechanism for every plugin kind, backed by Python entry points.

Discovery reads entry-point metadata only; a plugin's module is imported the first
time the plugin itself is needed. The built-ins are registered through the same
entry points a third-party package uses, so they have no privilege it lacks.

Rules (see DESIGN.md, "Rules of the registry"):
- a plugin whose import fails is reported as broken with its error and distribution;
  only selecting it fails;
- one name from two distributions with different targets is a conflict, reported and
  never resolved silently; the same (name, target) seen twice is one plugin;
- an unknown name is answered with the closest matches and every available name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from lossopt.core.errors import PluginError
from lossopt.core.specs import KIND_SPECS, PluginSpec

__all__ = ["GROUPS", "KINDS", "Plugin", "Registry", "Source", "refresh", "registry"]

GROUPS: Mapping[str, str] = {
    "loss": "lossopt.losses",
    "optimizer": "lossopt.optimizers",
    "scheduler": "lossopt.schedulers",
    "model": "lossopt.models",
    "data": "lossopt.datasets",
}
KINDS: tuple[str, ...] = tuple(GROUPS)

Status = Literal["ok", "broken", "conflict"]


@dataclass(frozen=True, order=True)
class Source:
    """The installed distribution that ships a plugin."""

    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class Provider:
    """One entry point: where a plugin's object lives and who ships it."""

    target: str  # "module:attribute"
    source: Source
    entry_point: metadata.EntryPoint = field(compare=False, repr=False)


def close_matches(name: str, choices: list[str]) -> str:
    """'Did you mean …? Available: …' for an unknown name."""
    matches = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
    return f"{hint} Available: {', '.join(sorted(choices)) or '(none)'}."


class Plugin:
    """A registered name of one kind, with every provider seen for it."""

    def __init__(self, kind: str, name: str, providers: tuple[Provider, ...]) -> None:
        self.kind = kind
        self.name = name
        self.providers = providers

    def __repr__(self) -> str:
        return f"Plugin({self.kind}/{self.name}, {self.sources_text})"

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(p.source for p in self.providers)

    @property
    def source(self) -> Source:
        """The single source of a plugin that is not in conflict."""
        return self.providers[0].source

    @property
    def sources_text(self) -> str:
        return ", ".join(str(s) for s in self.sources)

    @property
    def status(self) -> Status:
        if len(self.providers) > 1:
            return "conflict"
        return "ok" if self._loaded[1] is None else "broken"

    @property
    def error(self) -> str | None:
        """Why the plugin cannot be used, or None."""
        if self.status == "conflict":
            listing = "; ".join(f"{p.source} ({p.target})" for p in self.providers)
            return (
                f"{self.kind} '{self.name}' is provided by {len(self.providers)} "
                f"distributions: {listing}. lossopt does not pick one silently: "
                f"uninstall all but one of them."
            )
        return self._loaded[1]

    def load(self) -> PluginSpec:
        """The plugin's spec; imports its module on first use."""
        if (problem := self.error) is not None:
            raise PluginError(problem)
        spec = self._loaded[0]
        assert spec is not None
        return spec

    @cached_property
    def _loaded(self) -> tuple[PluginSpec | None, str | None]:
        provider = self.providers[0]
        try:
            obj = provider.entry_point.load()
        except Exception as exc:  # a broken plugin must never break the host
            return None, (
                f"{self.kind} '{self.name}' from {provider.source} failed to load "
                f"({provider.target}): {type(exc).__name__}: {exc}. Fix or reinstall "
                f"{provider.source.distribution}, or choose another {self.kind}."
            )
        try:
            return as_spec(self.kind, obj), None
        except TypeError as exc:
            return None, f"{self.kind} '{self.name}' from {provider.source}: {exc}"


def as_spec(kind: str, obj: Any) -> PluginSpec:
    """Accept a spec of the right kind, or wrap a bare class/factory in one."""
    spec_type = KIND_SPECS[kind]
    if isinstance(obj, spec_type):
        return obj
    if isinstance(obj, PluginSpec):
        raise TypeError(
            f"the entry point names a {type(obj).__name__}, but the {kind} group "
            f"needs a {spec_type.__name__} (or a bare class/factory)"
        )
    if callable(obj):
        return spec_type(factory=obj)
    raise TypeError(f"the entry point names {obj!r}, which is neither a spec nor callable")


def _source(entry_point: metadata.EntryPoint) -> Source:
    dist = entry_point.dist
    if dist is None:
        return Source("unknown", "unknown")
    return Source(dist.metadata["Name"] or "unknown", dist.version or "unknown")


class Registry:
    """Every plugin of one kind, discovered from one entry-point group."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group

    @cached_property
    def _plugins(self) -> dict[str, Plugin]:
        providers: dict[str, dict[str, Provider]] = {}
        for ep in metadata.entry_points(group=self.group):
            provider = Provider(ep.value, _source(ep), ep)
            # Keyed by target: the same (name, target) twice, e.g. an editable
            # install seen through two paths, is one plugin.
            providers.setdefault(ep.name, {}).setdefault(provider.target, provider)
        return {
            name: Plugin(self.kind, name, tuple(by_target.values()))
            for name, by_target in sorted(providers.items())
        }

    def names(self) -> list[str]:
        """Registered names, read from metadata without importing any plugin."""
        return list(self._plugins)

    def plugins(self) -> list[Plugin]:
        return list(self._plugins.values())

    def plugin(self, name: str) -> Plugin:
        try:
            return self._plugins[name]
        except KeyError:
            raise PluginError(
                f"unknown {self.kind} '{name}'.{close_matches(name, self.names())}"
                f" Run 'lossopt plugins' to see every plugin with its source."
            ) from None

    def spec(self, name: str) -> PluginSpec:
        """The spec of a usable plugin; fails with the plugin's own error otherwise."""
        return self.plugin(name).load()

    def refresh(self) -> None:
        self.__dict__.pop("_plugins", None)


_REGISTRIES = {kind: Registry(kind, group) for kind, group in GROUPS.items()}


def registry(kind: str) -> Registry:
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise PluginError(
            f"unknown plugin kind '{kind}'.{close_matches(kind, list(KINDS))}"
        ) from None


def find(name: str) -> Plugin:
    """A plugin by ``NAME`` or ``KIND/NAME``; a bare name must be unique across kinds."""
    kind, _, bare = name.rpartition("/")
    if kind:
        return registry(kind).plugin(bare)
    hits = [r.plugin(name) for r in _REGISTRIES.values() if name in r.names()]
    if len(hits) == 1:
        return hits[0]
    if hits:
        kinds = ", ".join(f"{p.kind}/{name}" for p in hits)
        raise PluginError(f"'{name}' names plugins of several kinds; choose one of: {kinds}.")
    every = [n for r in _REGISTRIES.values() for n in r.names()]
    raise PluginError(f"no plugin named '{name}'.{close_matches(name, every)}")


def refresh() -> None:
    """Forget what was discovered (after installing a plugin in this process)."""
    importlib.invalidate_caches()
    for reg in _REGISTRIES.values():
        reg.refresh()
