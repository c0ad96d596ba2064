"""Start-up without the garbage collector's full passes.

Importing torch, Lightning, MLflow, Hydra and their dependencies creates ~800,000
objects that live as long as the process. While they are being created, CPython's
collector keeps re-scanning all of them: about ten full (generation-2) passes, 1.3–1.9 s
of a `lossopt train` process on the 2-core development machine. So the command turns
the collector off while it starts; once a job has imported what it needs (Lightning,
and MLflow when tracking) everything that exists moves into the permanent generation
(``gc.freeze``) and the collector is back on: later passes skip the start-up objects,
and whatever a job creates is collected as usual. Reference cycles made during imports
are not freed while the process runs; they are few (peak memory of an 8-job sweep:
+15 MB of 1.05 GB). At exit they are unfrozen, so the interpreter's last collection
frees them as it would have: extension modules that check for leaked objects at
shutdown (triton's nanobind bindings) stay quiet.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from collections.abc import Iterator

__all__ = ["settle", "start_up", "starting_up"]

_deferred = False


@contextlib.contextmanager
def starting_up() -> Iterator[None]:
    """The collector is off from here until ``settle()``, at the latest until the block
    ends (a command that stops before its first job)."""
    start_up()
    try:
        yield
    finally:
        settle()


def start_up() -> None:
    """The collector is off from here until ``settle()`` (a process that imports its
    modules in steps: the vectorized launcher's helper)."""
    global _deferred
    if gc.isenabled():
        gc.disable()
        _deferred = True


def settle() -> None:
    """Freeze what start-up created and turn the collector back on: once per process,
    when the first job has its modules imported and has built nothing yet; a no-op
    outside ``starting_up``."""
    global _deferred
    if not _deferred:
        return
    gc.freeze()
    atexit.register(gc.unfreeze)
    gc.enable()
    _deferred = False
