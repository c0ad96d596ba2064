"""Value checks a plugin spec attaches to its parameters.

A check returns ``None`` when the value is acceptable, else a short reason that the
config validator prefixes with the full config key. ``None`` values (an optional
parameter left unset) are always accepted. A list is checked element by element, so
one check serves ``momentum`` and ``betas`` alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Check", "OneOf", "Range"]


class Check(Protocol):
    def __call__(self, value: Any) -> str | None: ...


def _elements(value: Any) -> Sequence[Any]:
    if isinstance(value, (list, tuple)):
        return value
    return (value,)


@dataclass(frozen=True)
class Range:
    """A number between ``low`` and ``high`` (either may be open-ended with None)."""

    low: float | None
    high: float | None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def describe(self) -> str:
        left = "[" if self.low_inclusive else "("
        right = "]" if self.high_inclusive else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def __call__(self, value: Any) -> str | None:
        for item in _elements(value):
            if item is None or isinstance(item, str):
                continue
            too_low = self.low is not None and (
                item < self.low if self.low_inclusive else item <= self.low
            )
            too_high = self.high is not None and (
                item > self.high if self.high_inclusive else item >= self.high
            )
            if too_low or too_high:
                return f"{value!r} is outside {self.describe()}"
        return None


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values; ``why`` explains the restriction."""

    choices: tuple[Any, ...]
    why: str = ""

    def __call__(self, value: Any) -> str | None:
        if value is None or value in self.choices:
            return None
        why = f" ({self.why})" if self.why else ""
        return f"{value!r} is not one of {', '.join(map(repr, self.choices))}{why}"
