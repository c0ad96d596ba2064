"""The conformance kit: the named rules every plugin of a kind must keep.

lossopt's own tests run these over every registered plugin, ``lossopt check`` prints
them as a table, and plugin authors run the same rules on theirs::

    from lossopt.testing import parametrize_with_checks

    @parametrize_with_checks(["loss/my_loss", "optimizer/my_optimizer"])
    def test_lossopt_rules(check):
        check()

Each rule of each plugin reports ``pass``, ``fail`` (with a message saying what is
wrong) or ``n/a`` (with the reason it does not apply). The rules themselves live next
to each other by kind in ``_loss_rules``, ``_optimizer_rules`` and ``_part_rules``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lossopt.core.conformance.loss_rules import LOSS_RULES
from lossopt.core.conformance.optimizer_rules import OPTIMIZER_RULES
from lossopt.core.conformance.part_rules import DATA_RULES, MODEL_RULES, SCHEDULER_RULES
from lossopt.core.conformance.rules import NotApplicable, Rule, Subject, sample_problem
from lossopt.core.registry import KINDS, Plugin, find, registry
from lossopt.core.specs import KIND_SPECS

__all__ = [
    "Check",
    "Result",
    "Rule",
    "check",
    "check_loss",
    "check_optimizer",
    "parametrize_with_checks",
    "rules",
    "run_rule",
    "sample_problem",
]

Status = Literal["pass", "fail", "n/a"]

_LOADS = Rule("loads", "its entry point loads a spec of its kind", lambda subject: None)
RULES: Mapping[str, tuple[Rule, ...]] = {
    "loss": LOSS_RULES,
    "optimizer": OPTIMIZER_RULES,
    "model": MODEL_RULES,
    "data": DATA_RULES,
    "scheduler": SCHEDULER_RULES,
}


@dataclass(frozen=True)
class Result:
    """One rule's verdict on one plugin."""

    kind: str
    plugin: str
    rule: str
    status: Status
    message: str = ""


def rules(kind: str) -> tuple[Rule, ...]:
    """The rules of a kind, ``loads`` first."""
    return (_LOADS, *RULES[registry(kind).kind])


def _rule(kind: str, name: str) -> Rule:
    by_name = {r.name: r for r in rules(kind)}
    if name not in by_name:
        raise KeyError(f"no {kind} rule '{name}'; rules: {', '.join(by_name)}")
    return by_name[name]


def run_rule(kind: str, name: str, rule: str, tasks: Iterable[str] = (), **params: Any) -> Result:
    """Run one rule on the plugin ``name`` of ``kind``, built with ``params``."""
    chosen = _rule(kind, rule)
    try:
        spec = registry(kind).spec(name)
        if not isinstance(spec, KIND_SPECS[kind]):
            wanted = KIND_SPECS[kind].__name__
            raise TypeError(f"its spec is a {type(spec).__name__}, not a {wanted}")
    except Exception as exc:
        if chosen is _LOADS:
            return Result(kind, name, rule, "fail", str(exc))
        return Result(kind, name, rule, "n/a", "the plugin does not load (see loads)")
    subject = Subject(kind, name, spec, dict(params), tuple(tasks))
    try:
        chosen.check(subject)
    except NotApplicable as exc:
        return Result(kind, name, rule, "n/a", str(exc))
    except AssertionError as exc:
        return Result(kind, name, rule, "fail", str(exc) or "assertion failed")
    except Exception as exc:  # the plugin raised: that breaks the rule too
        return Result(kind, name, rule, "fail", f"raised {type(exc).__name__}: {exc}")
    return Result(kind, name, rule, "pass")


def check(plugin: str | Plugin, tasks: Iterable[str] = (), **params: Any) -> list[Result]:
    """Every rule of a plugin (``NAME`` or ``KIND/NAME``), in order."""
    found = find(plugin) if isinstance(plugin, str) else plugin
    tasks = tuple(tasks)
    return [run_rule(found.kind, found.name, r.name, tasks, **params) for r in rules(found.kind)]


def _raise_failures(results: list[Result]) -> None:
    failed = [r for r in results if r.status == "fail"]
    if failed:
        lines = "\n".join(f"  {r.kind} '{r.plugin}' {r.rule}: {r.message}" for r in failed)
        raise AssertionError(f"{len(failed)} rule(s) failed:\n{lines}")


def check_loss(name: str, task: str | None = None, **params: Any) -> None:
    """Every loss rule on ``name`` (for ``task`` alone when given); AssertionError
    listing the failed rules."""
    _raise_failures(check(f"loss/{name}", [task] if task else [], **params))


def check_optimizer(name: str, **hyper: Any) -> None:
    """Every optimizer rule on ``name``; AssertionError listing the failed rules."""
    _raise_failures(check(f"optimizer/{name}", **hyper))


@dataclass(frozen=True)
class Check:
    """One (plugin, rule) as a pytest test: calling it fails the test when the rule
    fails and skips it when the rule does not apply."""

    kind: str
    plugin: str
    rule: str

    @property
    def id(self) -> str:
        return f"{self.plugin}-{self.rule}"

    def __call__(self) -> None:
        import pytest

        result = run_rule(self.kind, self.plugin, self.rule)
        if result.status == "n/a":
            pytest.skip(f"not applicable: {result.message}")
        if result.status == "fail":
            where = f"{self.kind} '{self.plugin}'"
            raise AssertionError(f"{where} breaks {self.rule}: {result.message}")


def checks(plugins: Iterable[str] | None = None) -> list[Check]:
    """One Check per rule of each plugin (``NAME`` or ``KIND/NAME``); every registered
    plugin of every kind when ``plugins`` is None."""
    if plugins is None:
        found = [p for kind in KINDS for p in registry(kind).plugins()]
    else:
        found = [find(name) for name in plugins]
    return [Check(p.kind, p.name, r.name) for p in found for r in rules(p.kind)]


def parametrize_with_checks(plugins: Iterable[str] | None = None):
    """A pytest decorator giving the test one ``check`` per (plugin, rule), with ids
    like ``focal-gradients-reach-output`` (cf. scikit-learn's ``parametrize_with_checks``).
    Plugins are resolved when the tests are collected; the rules run in the tests."""
    import pytest

    every = checks(plugins)
    return pytest.mark.parametrize("check", every, ids=[c.id for c in every])
