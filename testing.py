"""The conformance kit for plugin authors: the named rules lossopt checks its own
plugins with.

    from lossopt.testing import parametrize_with_checks

    @parametrize_with_checks(["loss/my_loss"])
    def test_lossopt_rules(check):
        check()

``check(NAME)`` returns every rule's result; ``check_loss`` / ``check_optimizer``
raise AssertionError naming the rules a plugin breaks.
"""

from lossopt.core.conformance.kit import (
    Result,
    check,
    check_loss,
    check_optimizer,
    parametrize_with_checks,
    rules,
    run_rule,
    sample_problem,
)

__all__ = [
    "Result",
    "check",
    "check_loss",
    "check_optimizer",
    "parametrize_with_checks",
    "rules",
    "run_rule",
    "sample_problem",
]
