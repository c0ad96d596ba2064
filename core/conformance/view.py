"""``lossopt check``: the conformance rules of some plugins (or all), as rich tables.

One table per kind: a row per rule, a column per plugin (split into several tables when
the plugins do not fit the terminal's width), then every failure with its message.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lossopt.core.conformance.kit import Result, check, rules
from lossopt.core.errors import LossoptError, PluginError
from lossopt.core.registry import KINDS, Plugin, find, registry

__all__ = ["run_checks"]

_CELL = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "n/a": "[dim]n/a[/]"}


def _plugins(names: Sequence[str], every: bool) -> list[Plugin]:
    if every:
        return [p for kind in KINDS for p in registry(kind).plugins()]
    if not names:
        raise LossoptError("'lossopt check' needs plugin names (NAME or KIND/NAME) or --all.")
    found, unknown = [], []
    for name in names:
        try:
            found.append(find(name))
        except PluginError as exc:
            unknown.append(str(exc))
    if unknown:
        raise PluginError("\n".join(unknown))
    return found


def _chunks(plugins: list[Plugin], kind: str, width: int) -> list[list[Plugin]]:
    """Plugins per table so that a table fits ``width`` columns."""
    first = max(len(r.name) for r in rules(kind)) + 4
    chunks: list[list[Plugin]] = [[]]
    used = first
    for plugin in plugins:
        need = max(len(plugin.name), 4) + 3
        if chunks[-1] and used + need > width:
            chunks.append([])
            used = first
        chunks[-1].append(plugin)
        used += need
    return chunks


def _table(
    kind: str, plugins: list[Plugin], results: dict[tuple[str, str], Result], title: str
) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("rule", no_wrap=True)
    for plugin in plugins:
        table.add_column(escape(plugin.name), no_wrap=True, justify="center")
    for rule in rules(kind):
        cells = [_CELL[results[plugin.name, rule.name].status] for plugin in plugins]
        table.add_row(rule.name, *cells)
    return table


def run_checks(console: Console, names: Sequence[str], every: bool, verbose: bool) -> int:
    """Run and print the rules; 1 when any rule fails, else 0."""
    plugins = _plugins(names, every)
    everything: list[Result] = []
    for kind in KINDS:
        mine = [p for p in plugins if p.kind == kind]
        if not mine:
            continue
        results: dict[tuple[str, str], Result] = {}
        for plugin in mine:
            with console.status(f"checking {kind} '{plugin.name}'"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # library warnings would break the table
                for result in check(plugin):
                    results[plugin.name, result.rule] = result
        chunks = _chunks(mine, kind, console.width)
        for number, chunk in enumerate(chunks, 1):
            part = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
            console.print(_table(kind, chunk, results, f"{kind} rules{part}"))
        everything += results.values()
    shown = ("fail", "n/a") if verbose else ("fail",)
    for result in everything:
        if result.status in shown:
            label = _CELL[result.status]
            where = escape(f"{result.kind}/{result.plugin} {result.rule}")
            console.print(f"{label} {where}: {escape(result.message)}")
    counts = {s: sum(r.status == s for r in everything) for s in _CELL}
    console.print(
        f"{len(plugins)} plugin(s): {counts['pass']} rules passed, {counts['fail']} failed, "
        f"{counts['n/a']} not applicable" + ("" if verbose else " (-v says why)")
    )
    return 1 if counts["fail"] else 0
