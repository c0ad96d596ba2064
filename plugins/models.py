"""Built-in model plugins: mlp, lenet5, cifar_cnn, resnet18.

Every factory is ``factory(input_shape, num_outputs, **params) -> nn.Module``; the
module maps a float batch [N, *input_shape] to raw outputs [N, num_outputs] (logits,
no softmax: the training module adapts outputs to what each loss consumes).
``input_shape`` is [C, H, W] for images and [F] for vector data. The convolutional
models work for every image size lossopt ships (8x8 digits, 28x28 MNIST, 32x32 CIFAR)
and refuse vector data with a message pointing at ``model=mlp``.
"""

import math

import torch
from torch import nn

from lossopt.core.checks import OneOf, Range
from lossopt.core.errors import LossoptError
from lossopt.core.specs import ModelSpec

__all__ = [
    "build_cifar_cnn",
    "build_lenet5",
    "build_mlp",
    "build_resnet18",
    "cifar_cnn",
    "lenet5",
    "mlp",
    "resnet18",
]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _image_shape(model: str, input_shape: list[int]) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise LossoptError(
            f"model '{model}' needs image inputs shaped [C, H, W], but the data gives "
            f"input_shape {list(shape)}; use model=mlp for vector data."
        )
    return shape  # type: ignore[return-value]


def _flat_size(features: nn.Module, shape: tuple[int, ...]) -> int:
    """Features per sample after ``features``, found by a dry run on one zero sample.

    A dry run sizes the classifier exactly for any input size, whereas ``nn.LazyLinear``
    would leave parameters uninitialised until the first batch (which breaks building
    the optimizer and DDP before training).
    """
    with torch.no_grad():
        return features(torch.zeros(1, *shape)).numel()


def build_mlp(
    input_shape: list[int],
    num_outputs: int,
    hidden: list[int] | None = None,
    dropout: float = 0.0,
    activation: str = "relu",
    bias: bool = True,
) -> nn.Module:
    """Multi-layer perceptron on the flattened input: [N, *input_shape] -> [N, num_outputs].

    hidden: widths of the hidden layers; None means [128], [] gives a linear model.
    dropout: dropout probability after each hidden activation.
    activation: relu, gelu or tanh.
    bias: False leaves only 2-D weights, as optimizers for matrices (muon) require.
    """
    if activation not in _ACTIVATIONS:
        raise LossoptError(
            f"model 'mlp': unknown activation {activation!r}; "
            f"choose one of {', '.join(_ACTIVATIONS)} (model.activation=…)."
        )
    widths = [math.prod(int(d) for d in input_shape), *(hidden if hidden is not None else [128])]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(width_in, int(width_out), bias=bias), _ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-1], num_outputs, bias=bias))
    return nn.Sequential(*layers)


def build_lenet5(input_shape: list[int], num_outputs: int) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998), ReLU and max-pooling: [N, C, H, W] -> [N, num_outputs].

    conv5x6 -> pool -> conv5x16 -> pool -> fc120 -> fc84 -> fc num_outputs. LeNet-5 sees
    a 32x32 field with the character centred in it, so the first conv pads by 2 (the
    usual adaptation to 28x28 MNIST: 28 -> 28 -> 14 -> 10 -> 5, 16x5x5 = 400 features)
    and images smaller than 28x28 are first zero-padded, centred, to 28x28 (8x8 digits
    get the same geometry as MNIST instead of vanishing under the second conv). Larger
    images (CIFAR 32x32 -> 16x6x6) work too: the first linear layer is sized by a dry run.
    """
    channels, height, width = _image_shape("lenet5", input_shape)
    pad_h, pad_w = max(0, 28 - height), max(0, 28 - width)
    features = nn.Sequential(
        nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)),
        nn.Conv2d(channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, (channels, height, width)), 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_outputs),
    )


def build_cifar_cnn(input_shape: list[int], num_outputs: int) -> nn.Module:
    """The classic CIFAR-10 tutorial net: [N, C, H, W] -> [N, num_outputs].

    3 x (conv5, padding 2 -> ReLU -> maxpool 2) with 32, 32, 64 channels, then
    flatten -> linear 64 -> ReLU -> linear num_outputs. 32x32 gives 64x4x4 = 1024
    features; 8x8 digits give 8 -> 4 -> 2 -> 1 (64 features). Pooling rounds up, so
    odd sizes keep their border (28 -> 14 -> 7 -> 4, also 1024).
    """
    channels, height, width = _image_shape("cifar_cnn", input_shape)
    layers: list[nn.Module] = []
    for c_in, c_out in ((channels, 32), (32, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
    features = nn.Sequential(*layers, nn.Flatten())
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, (channels, height, width)), 64),
        nn.ReLU(),
        nn.Linear(64, num_outputs),
    )


def build_resnet18(
    input_shape: list[int], num_outputs: int, small_input_stem: bool | None = None
) -> nn.Module:
    """torchvision's ResNet-18, randomly initialised: [N, C, H, W] -> [N, num_outputs].

    The first conv takes C channels. small_input_stem: replace the ImageNet stem (7x7
    conv stride 2 + maxpool, a 4x downsampling meant for 224x224 images) with a 3x3
    conv stride 1 and no maxpool, as ResNets for CIFAR do, so 8x8 to 32x32 images keep
    their resolution; None chooses it when H or W < 64.
    """
    import torchvision  # here: it brings torch._dynamo (0.8 s) into every process

    channels, height, width = _image_shape("resnet18", input_shape)
    model = torchvision.models.resnet18(weights=None, num_classes=num_outputs)
    if small_input_stem is None:
        small_input_stem = min(height, width) < 64
    if small_input_stem:
        model.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    # The same initialisation torchvision gives its own convolutions.
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


mlp = ModelSpec(
    factory=build_mlp,
    image_only=False,
    stackable=True,
    checks={
        "hidden": Range(1, None),
        "dropout": Range(0.0, 1.0, high_inclusive=False),
        "activation": OneOf(tuple(_ACTIVATIONS)),
    },
)
lenet5 = ModelSpec(factory=build_lenet5, image_only=True, stackable=True)
cifar_cnn = ModelSpec(factory=build_cifar_cnn, image_only=True, stackable=True)
# BatchNorm keeps running statistics per model: not stackable.
resnet18 = ModelSpec(factory=build_resnet18, image_only=True)
