"""Rich rendering of plugins for ``lossopt plugins`` and ``lossopt plugins show``."""

from __future__ import annotations

from omegaconf import MISSING
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lossopt.core.checks import OneOf, Range
from lossopt.core.configs import parameters
from lossopt.core.registry import KINDS, Plugin, find, registry
from lossopt.core.specs import DataSpec, LossSpec, OptimizerSpec, PluginSpec, SchedulerSpec

_STATUS_STYLE = {"ok": "green", "broken": "red", "conflict": "yellow"}


def _capabilities(spec: PluginSpec) -> str:
    if isinstance(spec, LossSpec):
        return "; ".join(f"{t}: {c.output}→{c.target}" for t, c in spec.contracts.items())
    if isinstance(spec, OptimizerSpec):
        flags = ("needs_closure", "sparse_gradients", "matrix_params_only")
        return ", ".join(flag for flag in flags if getattr(spec, flag))
    if isinstance(spec, SchedulerSpec):
        return f"per {spec.interval}"
    if isinstance(spec, DataSpec):
        return str(spec.info.get("task", ""))
    return ""


def show_plugins(console: Console, kind: str | None = None) -> None:
    kinds = [registry(kind).kind] if kind else list(KINDS)
    table = Table(title="lossopt plugins")
    for column in ("kind", "name", "status", "source"):
        table.add_column(column, no_wrap=True)
    table.add_column("what it is", overflow="fold", ratio=1)
    problems = 0
    for each in kinds:
        for plugin in registry(each).plugins():
            status = plugin.status
            problems += status != "ok"
            about = plugin.error if status != "ok" else plugin.load().summary()
            style = _STATUS_STYLE[status]
            table.add_row(
                each, plugin.name, f"[{style}]{status}[/]", plugin.sources_text, escape(about)
            )
    console.print(table)
    if problems:
        console.print(f"[yellow]{problems} plugin(s) cannot be used; see the status column.[/]")


def _allowed(check: object, choices: tuple) -> str:
    if isinstance(check, Range):
        return check.describe()
    if isinstance(check, OneOf):
        return ", ".join(map(str, check.choices))
    return ", ".join(map(str, choices))


def _default_text(value: object) -> str:
    return "(required)" if value is MISSING else repr(value)


def show_plugin(console: Console, name: str) -> None:
    plugin: Plugin = find(name)
    spec = plugin.load()
    console.print(f"[bold]{plugin.kind}/{plugin.name}[/] — {spec.summary()}")
    console.print(f"source: {plugin.source}   factory: {plugin.providers[0].target}")
    if extra := _capabilities(spec):
        labels = {LossSpec: "tasks", DataSpec: "task", SchedulerSpec: "steps"}
        label = labels.get(type(spec), "flags")
        console.print(f"{label}: {extra}")
    checks = spec.all_checks()
    table = Table(show_header=True)
    for column in ("parameter", "type", "default", "allowed"):
        table.add_column(column)
    for param in parameters(spec):
        allowed = _allowed(checks.get(param.name), param.choices)
        if isinstance(spec, LossSpec) and param.name == spec.class_weights:
            allowed = "a list per class, or 'balanced'"
        cells = (param.name, param.type_name, _default_text(param.default), allowed)
        if isinstance(spec, LossSpec) and param.name == spec.class_weights:
            cells = (param.name, "list[float] | None", *cells[2:])
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)
    console.print(
        f"Select with '{plugin.kind}={plugin.name}', set with '{plugin.kind}.PARAM=VALUE'."
    )
