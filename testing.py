"""Conformance checks for plugin authors: ``from lossopt.testing import check_loss``.

The same checks lossopt's own test suite runs over every registered plugin.
"""

from lossopt.core.conformance import check_loss, check_optimizer, sample_problem

__all__ = ["check_loss", "check_optimizer", "sample_problem"]
