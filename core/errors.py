"""Errors meant for users: one message saying what is wrong, why, and what to do.

The CLI prints these without a traceback and exits non-zero; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DivergedError", "LossoptError", "PluginError", "diverged", "print_error"]


class LossoptError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole message."""


class PluginError(LossoptError):
    """A plugin name that is unknown, broken or provided twice."""


class DivergedError(LossoptError):
    """The loss became NaN or infinite."""


def diverged(epoch: int) -> DivergedError:
    """The error of a job whose training loss stopped being finite in ``epoch``."""
    return DivergedError(
        f"training diverged: the training loss became NaN or infinite in epoch {epoch}. "
        "Try a smaller optimizer.lr."
    )


class ConfigError(LossoptError):
    """Every problem found in a config, reported at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"invalid configuration ({len(self.problems)} {noun}):\n{lines}")

    def __reduce__(self) -> tuple:  # the same error after pickling (a helper process's)
        return (ConfigError, (self.problems,))


def print_error(message: object, prefix: str = "error") -> None:
    """One error on stderr, red prefix; the message is printed literally (it may hold
    brackets, paths, library text), never read as rich markup."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]{escape(prefix)}:[/] {escape(str(message))}")
