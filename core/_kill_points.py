"""Named moments where a test may kill this process, as the kernel's OOM killer, a
lost node or a ^C that became SIGKILL would: ``LOSSOPT_KILL_AT=NAME`` sends this
process SIGKILL the first time it reaches ``kill_point(NAME)``, ``NAME:N`` the N-th
time. Unset (always, outside tests): one environment lookup, nothing else.

The tests of crash recovery (``tests/sweep/test_kills.py``) kill sweeps at each of
these moments, re-run them, and compare the record with an uninterrupted sweep's:

- ``sweep-start``: composed, before the sweep's parent run exists;
- ``parent-created``: the parent run exists, before its axes and the jobs;
- ``stack-trained``: a stack has trained, before its members are recorded;
- ``member-recording``: a member's run exists, its record not yet written;
- ``job-training``: a job run alone has its run, before training;
- ``run-ending``: a job's record is written, before its run is FINISHED;
- ``summary``: every job is recorded, before the sweep's summary.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["KILL_ENV", "kill_point"]

KILL_ENV = "LOSSOPT_KILL_AT"

_reached: Counter[str] = Counter()


def kill_point(name: str) -> None:
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
