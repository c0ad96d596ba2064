"""The conformance kit: every registered plugin keeps every rule of its kind (one test
per plugin and rule), and a plugin that breaks a rule fails that rule and no other."""

from __future__ import annotations

import pytest

from lossopt.core.conformance.kit import check, checks, rules, run_rule
from lossopt.testing import check_loss, check_optimizer, parametrize_with_checks


@parametrize_with_checks()
def test_plugin_keeps_rule(check):
    check()


def test_ids_name_plugin_and_rule():
    ids = {c.id for c in checks(["focal", "optimizer/sgd"])}
    assert "focal-gradients-reach-output" in ids
    assert "sgd-stacked-equals-members" in ids
    assert {r.name for r in rules("loss")} <= {i.removeprefix("focal-") for i in ids}


# Deliberately wrong plugins: each breaks exactly one promise.
WRONG = '''
import torch
import torch.nn.functional as F
from torch import nn
from lossopt.core.specs import LossSpec, OptimizerSpec


class PerSample(nn.Module):
    """Cross-entropy left unreduced: one value per sample."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, reduction="none")


class NanGradient(nn.Module):
    """Cross-entropy plus 0 * sqrt(0): the value is right, its gradient is NaN."""

    def forward(self, logits, target):
        return F.cross_entropy(logits, target) + (logits * 0).sqrt().sum()


class IgnoresClosure(torch.optim.SGD):
    """SGD whose step neither calls the closure nor returns its loss."""

    def step(self, closure=None):
        return super().step()


class MixesMembers(torch.optim.Optimizer):
    """Steps by the gradient divided by the whole tensor's norm: fine alone, but a
    stacked view holds several members, whose gradients it mixes."""

    def __init__(self, params, lr: float = 0.01) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad / (p.grad.norm() + 1e-12), alpha=-group["lr"])
        return loss


per_sample = LossSpec(PerSample, stackable=True)
nan_gradient = LossSpec(NanGradient, stackable=True)
ignores_closure = OptimizerSpec(IgnoresClosure, stackable=True)
mixes_members = OptimizerSpec(MixesMembers, stackable=True)
'''


@pytest.fixture
def wrong_plugins(fake_dist):
    fake_dist(
        "wrong-plugins",
        {
            "lossopt.losses": {n: f"wrong_plugins.bad:{n}" for n in ("per_sample", "nan_gradient")},
            "lossopt.optimizers": {
                n: f"wrong_plugins.bad:{n}" for n in ("ignores_closure", "mixes_members")
            },
        },
        {"wrong_plugins.bad": WRONG},
    )


@pytest.mark.parametrize(
    ("plugin", "rule"),
    [
        ("loss/per_sample", "finite-scalar"),
        ("loss/nan_gradient", "gradients-reach-output"),
        ("optimizer/ignores_closure", "closure-is-called"),
        ("optimizer/mixes_members", "stacked-equals-members"),
    ],
)
def test_wrong_plugin_fails_its_rule_and_no_other(wrong_plugins, plugin, rule):
    results = check(plugin)
    failed = {r.rule: r.message for r in results if r.status == "fail"}
    assert list(failed) == [rule], failed
    assert {r.rule for r in results if r.status == "pass"}, "the other rules still ran"


def test_failure_messages_say_what_is_wrong(wrong_plugins):
    messages = {
        plugin: next(r.message for r in check(plugin) if r.status == "fail")
        for plugin in ("loss/per_sample", "loss/nan_gradient", "optimizer/mixes_members")
    }
    assert "expected a scalar, got shape (32,)" in messages["loss/per_sample"]
    assert "gradient is not finite" in messages["loss/nan_gradient"]
    assert "mixes members" in messages["optimizer/mixes_members"]


def test_check_loss_and_check_optimizer_raise_naming_the_rule(wrong_plugins):
    with pytest.raises(AssertionError, match="gradients-reach-output"):
        check_loss("nan_gradient")
    with pytest.raises(AssertionError, match="closure-is-called"):
        check_optimizer("ignores_closure")
    check_loss("focal", "multiclass", gamma=0.5)  # a good plugin raises nothing


def test_broken_plugin_fails_loads_and_skips_the_rest(fake_dist):
    fake_dist("broken-dist", {"lossopt.losses": {"broken": "nowhere.at_all:thing"}})
    results = check("loss/broken")
    assert [r.status for r in results] == ["fail"] + ["n/a"] * (len(results) - 1)
    assert "broken-dist" in results[0].message


def test_rule_not_applicable_says_why():
    result = run_rule("optimizer", "lbfgs", "stacked-equals-members")
    assert (result.status, result.message) == ("n/a", "it does not declare stackable")
