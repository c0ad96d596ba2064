"""A calm terminal: the lines of third-party libraries a lossopt user cannot act on are
filtered out, each by its logger and message (or warning category and message), never
by silencing a whole library or every warning. ``lossopt train -v`` (or
``LOSSOPT_VERBOSE=1``, which every worker process inherits) keeps them all.

What goes, and why:
- MLflow's "Creating initial MLflow database tables" / "Updating database tables" and
  alembic's migration lines: MLflow sets its store up by itself.
- Lightning's tips to install litlogger / litmodels: advertisements.
- "Restoring states from the checkpoint path" / "Loaded model weights from the
  checkpoint": the test pass on the best checkpoint, which the summary names. A fit
  resumed from a checkpoint still says "Restored all states from the checkpoint".
- torch's ``LeafSpec`` deprecation, raised inside Lightning's ``_pytree``.
- torch's vmap "performance drop … batching rule" warnings in stacked training.
- torch's "AccumulateGrad node's stream" mismatch warning under DDP on GPUs (it names
  a torch switch to silence it; nothing in lossopt's config changes it).
- Lightning's "does not have many workers" advice: lossopt's data are tensors in
  memory, which worker processes would only copy.
- "TPU available: False" (no TPU, nothing to do); in a sweep, where they would come
  once per job, "GPU available / TPU available" and "`Trainer.fit` stopped:
  `max_epochs=N` reached" (the sweep's config says both).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = [
    "VERBOSE_ENV",
    "calm",
    "job_progress_bar",
    "one_console_for_lightning",
    "take_verbose_flag",
    "verbose",
]

VERBOSE_ENV = "LOSSOPT_VERBOSE"
VERBOSE_FLAGS = ("-v", "--verbose")

# Lightning's rank_zero_info logs through whichever of these its modules set last.
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)
_ALWAYS = (
    "💡 Tip: For seamless cloud",
    "Restoring states from the checkpoint path at ",
    "Loaded model weights from the checkpoint at ",
    "TPU available: False",
)
_IN_SWEEPS = ("GPU available: ", "TPU available: ", "`Trainer.fit` stopped: ")
_QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


def take_verbose_flag(args: Sequence[str]) -> list[str]:
    """``args`` without ``-v`` / ``--verbose``; either one turns verbose output on for
    this process and the processes it starts."""
    rest = [a for a in args if a not in VERBOSE_FLAGS]
    if len(rest) < len(args):
        os.environ[VERBOSE_ENV] = "1"
    return rest


class _DropLines(logging.Filter):
    """Drops the records whose message starts with one of ``prefixes``."""

    def __init__(self) -> None:
        super().__init__()
        self.prefixes: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_drop = _DropLines()


def calm(sweep: bool = False) -> None:
    """Install the filters of the module docstring in this process (again: no-op)."""
    if verbose():
        return
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    wanted = _ALWAYS + (_IN_SWEEPS if sweep else ())
    _drop.prefixes += tuple(p for p in wanted if p not in _drop.prefixes)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _drop not in logger.filters:
            logger.addFilter(_drop)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    warnings.filterwarnings(
        "ignore",
        message=r"There is a performance drop because we have not yet implemented the batching",
        category=UserWarning,
    )
    warnings.filterwarnings(
        "ignore",
        message=r"[\s\S]*set_warn_on_accumulate_grad_stream_mismatch",
        category=UserWarning,
    )
    warnings.filterwarnings(
        "ignore", message=r"The '\w+' does not have many workers which may be a bottleneck"
    )


def one_console_for_lightning() -> None:
    """Lightning's package logger prints its lines itself and also hands them to the
    root logger, which Hydra's job logging prints again (and keeps in the job's log
    file): "GPU available: …" and "`Trainer.fit` stopped: …" came twice. Once Lightning
    is imported under Hydra (the root logger has handlers), only Hydra's print."""
    if not logging.getLogger().handlers:
        return
    lightning = logging.getLogger("lightning")
    for handler in list(lightning.handlers):
        if type(handler) is logging.StreamHandler:  # its console handler, not a file's
            lightning.removeHandler(handler)


def job_progress_bar(trainer: Any) -> list:
    """The progress-bar callback for a Trainer: in a sweep's job, one that leaves no
    line behind (the job's one "finished" line follows it), and none at all when the
    output is not a terminal (a log file); otherwise Lightning's own."""
    from lossopt.core.job_context import job_context

    if verbose() or job_context()[1] is None or not trainer.get("enable_progress_bar", True):
        return []
    from lightning.pytorch.callbacks import RichProgressBar
    from rich import get_console

    class TransientProgressBar(RichProgressBar):
        @property
        def is_enabled(self) -> bool:
            return super().is_enabled and get_console().is_interactive

        def _init_progress(self, trainer: Any) -> None:
            super()._init_progress(trainer)
            if self.progress is not None:  # erased when it stops, as rich's transient=True
                self.progress.live.transient = True

    return [TransientProgressBar()]
