"""Typed configs generated from plugin signatures, composed through Hydra."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import lossopt
from lossopt.core.composition import compose
from lossopt.core.configs import parameters, validate_plugins
from lossopt.core.errors import ConfigError
from lossopt.core.registry import KINDS, registry


def _cause_text(exc: BaseException) -> str:
    return f"{exc} {exc.__cause__}"


def test_plugin_selected_by_name_with_typed_params():
    cfg = compose(["loss=focal", "loss.gamma=3", "optimizer=sgd", "optimizer.momentum=0.9"])
    assert cfg.loss.name == "focal" and cfg.loss.gamma == 3.0
    assert isinstance(cfg.loss.gamma, float)
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.momentum == 0.9
    assert validate_plugins(cfg) == []


def test_multirun_choices_compose_without_plus_prefix():
    # What `lossopt train -m loss=cross_entropy,focal optimizer=sgd,adamw` expands to.
    parsed = OverridesParser.create().parse_overrides(["loss=cross_entropy,focal"])
    choices = list(parsed[0].sweep_iterator())
    assert choices == ["cross_entropy", "focal"]
    for choice in choices:
        assert compose([f"loss={choice}"]).loss.name == choice


@pytest.mark.parametrize(
    ("override", "key"),
    [("loss.gamma=abc", "loss.gamma"), ("optimizer.momentum=fast", "optimizer.momentum")],
)
def test_wrong_type_fails_at_compose_naming_the_field(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose(["loss=focal", "optimizer=sgd", override])
    assert key in _cause_text(info.value)


def test_unknown_parameter_fails_at_compose():
    with pytest.raises(ConfigCompositionException) as info:
        compose(["loss=focal", "loss.gama=3"])
    assert "loss.gama" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr"),
        (["optimizer=sgd", "optimizer.momentum=1.0"], "optimizer.momentum"),
        (["loss.reduction=none"], "loss.reduction"),
        (["loss.label_smoothing=1.5"], "loss.label_smoothing"),
        (["loss=focal", "loss.gamma=-1"], "loss.gamma"),
    ],
)
def test_impossible_values_are_reported_naming_the_field(overrides, key):
    problems = validate_plugins(compose(overrides))
    assert any(p.startswith(key) for p in problems), problems


def test_all_problems_are_reported_at_once():
    cfg = compose(["optimizer=sgd", "optimizer.lr=-1", "optimizer.momentum=2"])
    problems = validate_plugins(cfg)
    assert {p.split(":")[0] for p in problems} >= {"optimizer.lr", "optimizer.momentum"}


def test_tensor_parameters_are_lists_and_class_weights_accept_balanced():
    assert compose(["loss.weight=[1,2,3]"]).loss.weight == [1, 2, 3]
    assert compose(["loss.weight=balanced"]).loss.weight == "balanced"
    assert validate_plugins(compose(["loss.weight=balanced"])) == []
    problems = validate_plugins(compose(["loss.weight=heavy"]))
    assert problems and problems[0].startswith("loss.weight")
    pos_weight = compose(["loss=bce_with_logits", "loss.pos_weight=[1,3]"]).loss.pos_weight
    assert list(pos_weight) == [1.0, 3.0]
    loss = lossopt.create_loss("bce_with_logits", pos_weight=[1.0, 3.0])
    assert loss.pos_weight.tolist() == [1.0, 3.0]


@pytest.mark.parametrize("kind", KINDS)
def test_every_plugin_config_is_generated_without_deprecated_arguments(kind):
    for name in registry(kind).names():
        plugin = registry(kind).plugin(name)
        if plugin.status != "ok":
            continue
        names = {p.name for p in parameters(plugin.load())}
        assert not names & {"size_average", "reduce", "params", "optimizer"}, (kind, name)
        node = compose([f"{kind}={name}"])[kind]
        assert node.name == name
        assert set(names) <= set(node.keys())


def test_create_loss_validates_like_the_config():
    with pytest.raises(ConfigError) as info:
        lossopt.create_loss("cross_entropy", reduction="none", label_smoothing="x", smoothing=1)
    text = str(info.value)
    assert "loss.reduction" in text and "loss.label_smoothing" in text
    assert "loss.smoothing" in text and "label_smoothing" in text  # suggestion


def test_config_print_lists_every_parameter_with_default():
    text = OmegaConf.to_yaml(compose(["optimizer=adamw"]).optimizer)
    for key in ("lr: 0.001", "weight_decay: 0.01", "betas:", "amsgrad: false"):
        assert key in text
