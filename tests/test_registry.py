"""The registry's rules (DESIGN.md, "Rules of the registry"), seen from its users:
third-party plugins work like built-ins, a broken plugin breaks nothing else, clashing
names are never resolved silently, and listing names imports no plugin code."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lossopt
from lossopt.core.errors import ConfigError, PluginError
from lossopt.core.registry import GROUPS, Source, find, registry

LOSSES = GROUPS["loss"]
LOSSOPT = Source("lossopt", metadata.version("lossopt"))

SCALED_MSE = '''
from torch import nn


class ScaledMSE(nn.Module):
    """Mean squared error times a constant."""

    def __init__(self, scale: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.scale = scale
        self.mse = nn.MSELoss(reduction=reduction)

    def forward(self, output, target):
        return self.scale * self.mse(output, target)
'''


@pytest.fixture
def scaled_mse(fake_dist) -> None:
    """A third-party package shipping a working loss as a bare class."""
    fake_dist(
        "acme-losses",
        {LOSSES: {"scaled_mse": "acme_losses.core:ScaledMSE"}},
        {"acme_losses.core": SCALED_MSE},
        version="1.2.3",
    )


@pytest.fixture
def broken(fake_dist) -> None:
    """A third-party loss whose module cannot be imported."""
    fake_dist(
        "shaky-losses",
        {LOSSES: {"shaky": "shaky_losses:Shaky"}},
        {"shaky_losses": "raise ImportError('shaky needs frobnicate>=2')\n"},
        version="0.3",
    )


# (a) a third-party plugin is listed with its source and built by name like a built-in


def test_third_party_loss_is_listed_with_its_source(scaled_mse) -> None:
    assert "scaled_mse" in lossopt.available("loss")
    plugin = registry("loss").plugin("scaled_mse")
    assert plugin.status == "ok"
    assert str(plugin.source) == "acme-losses==1.2.3"


def test_third_party_loss_is_built_with_typed_params(scaled_mse) -> None:
    loss = lossopt.create_loss("scaled_mse", scale=2.0, reduction="sum")
    output, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert loss(output, target).item() == pytest.approx(2.0 * (1.0 + 4.0))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scale": "big"}, "loss.scale: expected float"),
        ({"reduction": "none"}, "loss.reduction: 'none' is not one of"),
        ({"scael": 2.0}, "loss.scael: loss 'scaled_mse' has no parameter 'scael'"),
    ],
    ids=["wrong-type", "wrong-value", "unknown-param"],
)
def test_third_party_loss_params_are_validated(scaled_mse, params, message) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as error:
        lossopt.create_loss("scaled_mse", **params)
    assert message in str(error.value)


# (b) a broken plugin is reported, and only selecting it fails


def test_broken_plugin_is_listed_with_its_error(broken) -> None:
    assert "shaky" in lossopt.available("loss")
    plugin = registry("loss").plugin("shaky")
    assert plugin.status == "broken"
    assert "shaky-losses==0.3" in plugin.error
    assert "ImportError: shaky needs frobnicate>=2" in plugin.error


def test_broken_plugin_does_not_break_the_others(broken) -> None:
    others = [p for p in registry("loss").plugins() if p.name != "shaky"]
    assert others
    assert {p.name: p.error for p in others if p.status != "ok"} == {}
    assert lossopt.create_loss("cross_entropy") is not None


@pytest.mark.parametrize(
    "select",
    [lambda: registry("loss").spec("shaky"), lambda: lossopt.create_loss("shaky")],
    ids=["registry.spec", "create_loss"],
)
def test_selecting_a_broken_plugin_names_distribution_and_error(broken, select) -> None:
    with pytest.raises(PluginError) as error:
        select()
    assert "shaky-losses==0.3" in str(error.value)
    assert "shaky needs frobnicate>=2" in str(error.value)


# (c) one name from two distributions is a conflict, never resolved silently


@pytest.fixture
def focal_clash(fake_dist) -> None:
    fake_dist(
        "rival-losses",
        {LOSSES: {"focal": "rival_losses:Focal"}},
        {"rival_losses": "from torch.nn import CrossEntropyLoss as Focal\n"},
        version="2.0",
    )


def test_name_clash_is_a_conflict_listing_both_sources(focal_clash) -> None:
    plugin = registry("loss").plugin("focal")
    assert plugin.status == "conflict"
    assert set(plugin.sources) == {LOSSOPT, Source("rival-losses", "2.0")}
    assert "focal" in lossopt.available("loss")


@pytest.mark.parametrize(
    "select",
    [lambda: registry("loss").spec("focal"), lambda: lossopt.create_loss("focal")],
    ids=["registry.spec", "create_loss"],
)
def test_selecting_a_conflict_names_both_sources(focal_clash, select) -> None:
    with pytest.raises(PluginError) as error:
        select()
    assert str(LOSSOPT) in str(error.value)
    assert "rival-losses==2.0" in str(error.value)
    assert "rival_losses:Focal" in str(error.value)


# (d) the same (name, target) seen twice is one plugin


def test_same_distribution_on_two_paths_is_one_plugin(fake_dist) -> None:
    # A stale editable install: one distribution found through two sys.path entries.
    for _ in range(2):
        fake_dist(
            "acme-losses",
            {LOSSES: {"scaled_mse": "acme_losses.core:ScaledMSE"}},
            {"acme_losses.core": SCALED_MSE},
            version="1.2.3",
        )
    plugin = registry("loss").plugin("scaled_mse")
    assert plugin.status == "ok"
    assert plugin.sources == (Source("acme-losses", "1.2.3"),)
    assert lossopt.available("loss").count("scaled_mse") == 1


def test_same_target_from_two_distributions_is_one_plugin(fake_dist) -> None:
    fake_dist(
        "acme-losses",
        {LOSSES: {"scaled_mse": "acme_losses.core:ScaledMSE"}},
        {"acme_losses.core": SCALED_MSE},
    )
    fake_dist("acme-losses-legacy", {LOSSES: {"scaled_mse": "acme_losses.core:ScaledMSE"}})
    plugin = registry("loss").plugin("scaled_mse")
    assert plugin.status == "ok"
    assert len(plugin.providers) == 1
    assert lossopt.create_loss("scaled_mse", scale=3.0).scale == 3.0


# (e) an unknown name lists the closest matches and every available name


def test_unknown_name_suggests_close_matches_and_lists_names() -> None:
    with pytest.raises(PluginError) as error:
        lossopt.create_loss("focall")
    message = str(error.value)
    assert "unknown loss 'focall'" in message
    assert "Did you mean 'focal'" in message
    assert f"Available: {', '.join(lossopt.available('loss'))}." in message


def test_find_by_kind_and_name_or_by_bare_name() -> None:
    assert find("loss/focal") is registry("loss").plugin("focal")
    assert find("focal") is registry("loss").plugin("focal")
    assert find("optimizer/sgd").kind == "optimizer"
    with pytest.raises(PluginError, match="Did you mean 'focal'"):
        find("focall")
    with pytest.raises(PluginError, match="unknown optimizer 'focal'"):
        find("optimizer/focal")


def test_find_refuses_a_bare_name_shared_by_two_kinds(fake_dist) -> None:
    fake_dist("odd-plugins", {GROUPS["optimizer"]: {"focal": "torch.optim:SGD"}})
    with pytest.raises(PluginError, match="loss/focal, optimizer/focal"):
        find("focal")
    assert find("optimizer/focal").status == "ok"


# (f) discovery is lazy


def test_listing_plugins_imports_no_plugin_code() -> None:
    script = """
import json, sys
import lossopt
from lossopt.core.registry import KINDS, registry
listing = {k: [(p.name, p.sources_text) for p in registry(k).plugins()] for k in KINDS}
names = lossopt.available("loss")
heavy = ["torch", "lightning", "torchvision"]
heavy += [m for m in sys.modules if m.startswith(("lossopt.plugins", "lossopt_example"))]
print(json.dumps({"names": names, "imported": [m for m in heavy if m in sys.modules]}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert "focal" in report["names"]
    assert report["imported"] == []


# (g) every built-in plugin comes from the lossopt distribution


BUILT_INS = [
    (kind, ep.name)
    for ep in metadata.distribution("lossopt").entry_points
    for kind, group in GROUPS.items()
    if ep.group == group
]


@pytest.mark.parametrize(("kind", "name"), BUILT_INS, ids=[f"{k}/{n}" for k, n in BUILT_INS])
def test_built_in_source_is_lossopt(kind: str, name: str) -> None:
    plugin = registry(kind).plugin(name)
    assert plugin.sources == (LOSSOPT,)
    assert str(plugin.source) == f"lossopt=={metadata.version('lossopt')}"


def test_every_kind_has_built_ins() -> None:
    assert {kind for kind, _ in BUILT_INS} == set(GROUPS)


# (h) the example third-party package (examples/lossopt-example-plugins)


@pytest.fixture(scope="module")
def example_installed() -> None:
    try:
        metadata.distribution("lossopt-example-plugins")
    except metadata.PackageNotFoundError:
        pytest.fail(
            "lossopt-example-plugins is not installed; run "
            "'pip install --no-deps -e examples/lossopt-example-plugins' (make install)."
        )


@pytest.mark.parametrize(("kind", "name"), [("loss", "poly1"), ("optimizer", "lion")])
def test_example_plugins_are_discovered(example_installed, kind: str, name: str) -> None:
    assert name in lossopt.available(kind)
    plugin = registry(kind).plugin(name)
    assert plugin.status == "ok", plugin.error
    assert str(plugin.source) == "lossopt-example-plugins==0.1.0"


def test_poly1_is_cross_entropy_plus_epsilon_times_one_minus_pt(example_installed) -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(
        lossopt.create_loss("poly1", epsilon=0.0)(logits, target), F.cross_entropy(logits, target)
    )
    p_t = logits.softmax(dim=1)[torch.arange(8), target]
    expected = F.cross_entropy(logits, target, reduction="sum") + 2.0 * (1 - p_t).sum()
    poly = lossopt.create_loss("poly1", epsilon=2.0, reduction="sum")
    assert torch.allclose(poly(logits, target), expected)


def test_lion_decreases_a_quadratic(example_installed) -> None:
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5]))
    optimizer = lossopt.create_optimizer("lion", [x], lr=0.01)
    start = (x**2).sum().item()
    for _ in range(400):  # each coordinate moves by at most lr per step
        optimizer.zero_grad()
        (x**2).sum().backward()
        optimizer.step()
    assert (x**2).sum().item() < start / 10


def test_lion_follows_the_paper_update(example_installed) -> None:
    # Chen et al. 2023, Algorithm 2, written out independently of the plugin.
    lr, (beta1, beta2), decay = 0.1, (0.8, 0.95), 0.2
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5]))
    optimizer = lossopt.create_optimizer(
        "lion", [x], lr=lr, betas=[beta1, beta2], weight_decay=decay
    )
    expected, m = x.detach().clone(), torch.zeros(3)
    for _ in range(30):
        optimizer.zero_grad()
        (x**3).sum().backward()
        optimizer.step()
        g = 3 * expected**2
        update = torch.sign(beta1 * m + (1 - beta1) * g)
        expected = expected - lr * (update + decay * expected)
        m = beta2 * m + (1 - beta2) * g
        # The two orders of the same float32 arithmetic drift apart by a few ulps of
        # |x| <= 3 over the 30 steps (up to 1.2e-6 seen); a wrong update is off by
        # lr * lr * weight_decay = 2e-3 or more in a single step.
        assert torch.allclose(x.detach(), expected, atol=1e-5)


def test_lion_weight_decay_is_decoupled(example_installed) -> None:
    x = torch.nn.Parameter(torch.tensor([1.0, -4.0]))
    optimizer = lossopt.create_optimizer("lion", [x], lr=0.1, weight_decay=0.5)
    x.grad = torch.zeros_like(x)  # sign(0) = 0: only the decay moves x
    optimizer.step()
    assert torch.allclose(x.detach(), torch.tensor([0.95, -3.8]))


@pytest.mark.parametrize(
    ("hyper", "key"),
    [({"lr": -1.0}, "optimizer.lr"), ({"betas": [0.9, 1.0]}, "optimizer.betas")],
    ids=["lr", "betas"],
)
def test_lion_rejects_bad_hyperparameters(example_installed, hyper, key) -> None:
    x = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ConfigError, match=key):
        lossopt.create_optimizer("lion", [x], **hyper)
