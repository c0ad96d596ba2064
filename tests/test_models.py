"""The built-in model plugins: image-only refusal, resnet stems, mlp options, typed
signatures (output shapes and gradients of every model: test_conformance)."""

import inspect

import pytest
import torch
from torch import nn

from lossopt.core.errors import LossoptError
from lossopt.core.specs import ModelSpec
from lossopt.plugins import models

MODELS: dict[str, ModelSpec] = {
    "mlp": models.mlp,
    "lenet5": models.lenet5,
    "cifar_cnn": models.cifar_cnn,
    "resnet18": models.resnet18,
}
VECTOR_SHAPE = [10]  # diabetes
BATCH = 3


@pytest.mark.parametrize("name", MODELS)
def test_image_only_flag_matches_behaviour(name: str) -> None:
    spec = MODELS[name]
    if not spec.image_only:
        assert spec.factory(VECTOR_SHAPE, 2)(torch.randn(BATCH, *VECTOR_SHAPE)).shape == (BATCH, 2)
        return
    with pytest.raises(LossoptError) as error:
        spec.factory(VECTOR_SHAPE, 2)
    message = str(error.value)
    assert f"'{name}'" in message
    assert "[10]" in message
    assert "model=mlp" in message


@pytest.mark.parametrize(
    ("shape", "override", "small"),
    [
        ([1, 8, 8], None, True),
        ([1, 28, 28], None, True),
        ([3, 32, 32], None, True),
        ([3, 64, 64], None, False),
        ([1, 64, 64], None, False),
        ([3, 32, 32], False, False),
        ([3, 64, 64], True, True),
    ],
    ids=[
        "1x8x8",
        "1x28x28",
        "3x32x32",
        "3x64x64",
        "1x64x64",
        "3x32x32-forced-imagenet",
        "3x64x64-forced-small",
    ],
)
def test_resnet18_stem(shape: list[int], override: bool | None, small: bool) -> None:
    model = models.build_resnet18(shape, 10, small_input_stem=override)
    assert model.conv1.in_channels == shape[0]
    assert model.conv1.kernel_size == ((3, 3) if small else (7, 7))
    assert model.conv1.stride == ((1, 1) if small else (2, 2))
    assert isinstance(model.maxpool, nn.Identity) == small
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_mlp_hidden_layers_and_activation() -> None:
    def linears(model: nn.Module) -> list[tuple[int, int]]:
        return [
            (m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)
        ]

    assert linears(models.build_mlp([1, 8, 8], 10)) == [(64, 128), (128, 10)]
    assert linears(models.build_mlp([10], 1, hidden=[])) == [(10, 1)]
    model = models.build_mlp([10], 3, hidden=[32, 16], activation="tanh")
    assert linears(model) == [(10, 32), (32, 16), (16, 3)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2


def test_mlp_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = models.build_mlp([10], 4, hidden=[64], dropout=0.5)
    x = torch.randn(8, 10)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_mlp_unknown_activation_lists_choices() -> None:
    with pytest.raises(LossoptError, match="'swish'.*relu, gelu, tanh"):
        models.build_mlp([10], 1, activation="swish")


def test_mlp_checks_catch_bad_config_values() -> None:
    checks = models.mlp.all_checks()
    assert checks["hidden"]([64, 0]) is not None
    assert checks["dropout"](1.0) is not None
    assert checks["activation"]("swish") is not None
    defaults = inspect.signature(models.build_mlp).parameters
    assert all(check(defaults[key].default) is None for key, check in checks.items())
    assert checks["hidden"]([64, 32]) is None
    assert checks["dropout"](0.5) is None
    assert checks["activation"]("gelu") is None


CONFIG_TYPES = {int, float, bool, str, list[int], int | None, bool | None, list[int] | None}


@pytest.mark.parametrize("name", MODELS)
def test_signature_is_config_friendly(name: str) -> None:
    """input_shape and num_outputs come from the data; everything else has a typed default."""
    params = list(inspect.signature(MODELS[name].factory, eval_str=True).parameters.values())
    assert [p.name for p in params[:2]] == ["input_shape", "num_outputs"]
    for p in params[2:]:
        assert p.default is not inspect.Parameter.empty, f"{name}.{p.name} has no default"
        assert p.annotation in CONFIG_TYPES, f"{name}.{p.name}: {p.annotation} is not a config type"
