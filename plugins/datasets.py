"""Built-in dataset plugins: scikit-learn's bundled sets, synthetic data, torchvision sets.

Each plugin is a ``DataSpec`` whose factory returns a ``TensorDataModule``. Raw data is
loaded once per process (``lru_cache`` on the loaders, keyed by their arguments), so the
jobs of a sweep share it; each job then splits it with its own ``split_seed``.

``info`` tells the rest of the config about the data (``${data.num_outputs}`` for the
model, ``${data.num_classes}`` for class weights); relative interpolations point at the
plugin's own parameters (one level deeper inside a list).
"""

# No `from __future__ import annotations`: the factories' annotations are read as the
# plugins' typed configs and must stay real types.

import functools
import inspect
import math
import os
from collections.abc import Callable

import numpy as np
import torch
from sklearn import datasets as skdata
from sklearn.model_selection import train_test_split

from lossopt.core.checks import Check, OneOf, Range
from lossopt.core.data import Split, TensorDataModule
from lossopt.core.errors import LossoptError
from lossopt.core.specs import TASKS, DataSpec

__all__ = [
    "MULTILABEL_LABELS",
    "breast_cancer",
    "cifar10",
    "diabetes",
    "digits",
    "fashion_mnist",
    "iris",
    "linnerud",
    "mnist",
    "multilabel",
    "synthetic",
    "synthetic_images",
    "wine",
]

_FRACTION = Range(0.0, 1.0, low_inclusive=False, high_inclusive=False)
_COMMON_CHECKS = {
    "batch_size": Range(1, None),
    "num_workers": Range(0, None),
    "val_fraction": _FRACTION,
    "test_fraction": _FRACTION,
}


# --- splitting and scaling ------------------------------------------------------------


def _split(
    name: str, n: int, seed: int, val: float, test: float = 0.0, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train/val/test; ``val`` and ``test`` are fractions of all ``n`` examples.

    Stratified by ``labels`` when given and every class can be spread over the splits;
    otherwise a plain random split (tiny or very unbalanced data).
    """
    if val + test >= 1.0:
        raise LossoptError(
            f"dataset '{name}': val_fraction + test_fraction = {val + test:g} leaves no "
            "training data; make their sum < 1"
        )

    def cut(idx: np.ndarray, size: float) -> list[np.ndarray]:
        try:
            strata = None if labels is None else labels[idx]
            return train_test_split(idx, test_size=size, random_state=seed, stratify=strata)
        except ValueError:
            return train_test_split(idx, test_size=size, random_state=seed)

    rest, test_idx = cut(np.arange(n), test) if test > 0 else (np.arange(n), np.arange(0))
    train_idx, val_idx = cut(rest, val / (1.0 - test))
    return train_idx, val_idx, test_idx


def _splits(x: torch.Tensor, y: torch.Tensor, parts: tuple[np.ndarray, ...]) -> list[Split]:
    return [Split(x[torch.from_numpy(p)], y[torch.from_numpy(p)]) for p in parts]


def _standardize(splits: list[Split], inputs: bool, targets: bool) -> list[Split]:
    """Center and scale by the training split's statistics (never the val/test ones)."""

    def scaler(t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        mean, std = t.mean(dim=0), t.std(dim=0).clamp_min(1e-8)
        return lambda v: (v - mean) / std

    fx = scaler(splits[0].x) if inputs else (lambda v: v)
    fy = scaler(splits[0].y) if targets else (lambda v: v)
    return [Split(fx(s.x), fy(s.y)) for s in splits]


# --- scikit-learn bundled sets ----------------------------------------------------------


@functools.cache
def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """8×8 digit images in [0, 1], [N, 1, 8, 8] float32; labels int64 [N]."""
    bunch = skdata.load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(bunch.target, dtype=torch.int64)


def digits_data(
    batch_size: int = 64,
    num_workers: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> TensorDataModule:
    """Handwritten digits 8×8 (scikit-learn, bundled): 1797 images, 10 classes."""
    x, y = _load_digits()
    parts = _split("digits", len(x), split_seed, val_fraction, test_fraction, y.numpy())
    train, val, test = _splits(x, y, parts)
    return TensorDataModule("digits", "multiclass", train, val, test, 10, batch_size, num_workers)


@functools.cache
def _load_diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features [442, 10] and disease progression [442, 1], float32."""
    bunch = skdata.load_diabetes(scaled=False)
    x = torch.tensor(bunch.data, dtype=torch.float32)
    return x, torch.tensor(bunch.target, dtype=torch.float32).unsqueeze(1)


def diabetes_data(
    batch_size: int = 64,
    num_workers: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> TensorDataModule:
    """Diabetes progression (scikit-learn, bundled): 442 patients, 10 features, regression.

    Inputs are standardized; targets are divided by their training std but not centered,
    so they stay positive (Poisson NLL needs that; R² does not change).
    """
    x, y = _load_diabetes()
    parts = _split("diabetes", len(x), split_seed, val_fraction, test_fraction)
    splits = _standardize(_splits(x, y, parts), inputs=True, targets=False)
    scale = splits[0].y.std()
    train, val, test = (Split(s.x, s.y / scale) for s in splits)
    return TensorDataModule("diabetes", "regression", train, val, test, 0, batch_size, num_workers)


_TABULAR = {  # name: (task, classes or 0, features, outputs)
    "iris": ("multiclass", 3, 4, 3),
    "wine": ("multiclass", 3, 13, 3),
    "breast_cancer": ("multiclass", 2, 30, 2),
    "linnerud": ("regression", 0, 3, 3),
}


@functools.cache
def _load_tabular(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features [N, F] float32; class indices int64 [N] or targets float32 [N, T]."""
    bunch = getattr(skdata, f"load_{name}")()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    if _TABULAR[name][0] == "regression":
        return x, torch.tensor(bunch.target, dtype=torch.float32).reshape(len(x), -1)
    return x, torch.tensor(bunch.target, dtype=torch.int64)


def tabular_data(
    name: str,
    batch_size: int = 16,
    num_workers: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> TensorDataModule:
    """A small scikit-learn bundled table (the plugins bind ``name``): stratified splits
    for classification; features (and regression targets) standardized by the training
    split's statistics. Small sets get 20 % validation and test and batches of 16."""
    task, classes, _, _ = _TABULAR[name]
    x, y = _load_tabular(name)
    labels = y.numpy() if task == "multiclass" else None
    parts = _split(name, len(x), split_seed, val_fraction, test_fraction, labels)
    splits = _standardize(_splits(x, y, parts), inputs=True, targets=task == "regression")
    return TensorDataModule(name, task, *splits, classes, batch_size, num_workers)


# --- a multilabel task with a declared label structure ------------------------------------

MULTILABEL_LABELS: tuple[tuple[str, str], ...] = (
    ("a", "s0 > 0"),
    ("b", "s1 > 0.8"),
    ("c", "s2 > -0.8"),
    ("a/d", "a and s3 > 0"),
    ("a|b", "a or b"),
    ("a^c", "a xor c"),
)
"""The labels of the ``multilabel`` plugin, in column order, and how each is defined
from the latent scores ``s_j = x · w_j + noise · e_j`` (``w_j`` random unit vectors,
``x`` and ``e_j`` standard normal): three base labels of different frequency (~50 %,
~20 %, ~80 % positive), a child of ``a`` (never without it), a union, and an exclusive
or (not linearly separable in the scores: a linear model cannot get it right)."""


@functools.lru_cache(maxsize=4)
def _make_multilabel(
    n_samples: int, n_features: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [N, n_features] and the multi-hot labels of ``MULTILABEL_LABELS`` [N, 6]."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features))
    w = rng.standard_normal((n_features, 4))
    s = x @ (w / np.linalg.norm(w, axis=0)) + noise * rng.standard_normal((n_samples, 4))
    a, b, c = s[:, 0] > 0, s[:, 1] > 0.8, s[:, 2] > -0.8
    y = np.stack([a, b, c, a & (s[:, 3] > 0), a | b, a ^ c], axis=1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def multilabel_data(
    n_samples: int = 1000,
    n_features: int = 10,
    noise: float = 0.3,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> TensorDataModule:
    """Synthetic multilabel task with a declared label structure: 6 labels.

    The labels (``MULTILABEL_LABELS``): base labels of different rarity, a hierarchy, a
    union and an exclusive or, from noisy linear scores of standard-normal features.
    noise: std of the noise added to the scores (0: labels are exact functions of x).
    """
    x, y = _make_multilabel(n_samples, n_features, noise, seed)
    parts = _split("multilabel", len(x), split_seed, val_fraction, test_fraction)
    train, val, test = _standardize(_splits(x, y, parts), inputs=True, targets=False)
    return TensorDataModule(
        "multilabel", "multilabel", train, val, test, 6, batch_size, num_workers
    )


# --- synthetic ------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _make_synthetic(
    task: str, n_samples: int, n_features: int, n_outputs: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [N, n_features] and targets in the task's form (see ``core.data.Split``)."""
    rng = np.random.default_rng(seed)
    if task == "multiclass":
        informative = min(n_features, max(n_features // 2, math.ceil(math.log2(n_outputs))))
        x, y = skdata.make_classification(
            n_samples, n_features, n_informative=informative,
            n_redundant=(n_features - informative) // 2, n_classes=n_outputs,
            n_clusters_per_class=1, flip_y=noise, random_state=seed,
        )  # fmt: skip
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    if task == "multilabel":
        x, y = skdata.make_multilabel_classification(
            n_samples, n_features, n_classes=n_outputs, random_state=seed
        )
        # Label noise as for multiclass: a `noise` fraction of rows get random labels.
        noisy = rng.random(n_samples) < noise
        y[noisy] = rng.integers(0, 2, size=(int(noisy.sum()), n_outputs))
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    x, y = skdata.make_regression(n_samples, n_features, n_targets=n_outputs, random_state=seed)
    y = y.reshape(n_samples, n_outputs)
    y = y + noise * y.std(axis=0) * rng.standard_normal(y.shape)  # noise relative to signal
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def synthetic_data(
    task: str = "multiclass",
    n_samples: int = 2000,
    n_features: int = 20,
    n_outputs: int = 4,
    noise: float = 0.1,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> TensorDataModule:
    """Synthetic data (scikit-learn generators) for a multiclass, multilabel or regression task.

    n_outputs: classes, labels or regression targets. noise: for classification the
    fraction of examples given random labels, for regression the std of added noise
    relative to the targets'. Inputs (and regression targets) are standardized.
    """
    if task not in TASKS:
        raise LossoptError(
            f"dataset 'synthetic': task={task!r} is not supported; "
            f"set data.task to one of {', '.join(TASKS)}"
        )
    if task == "multiclass" and not 2 <= n_outputs <= 2**n_features:
        raise LossoptError(
            f"dataset 'synthetic': n_outputs={n_outputs} classes with n_features={n_features}; "
            "a multiclass task needs at least 2 classes and log2(classes) features: "
            "change data.n_outputs or data.n_features"
        )
    x, y = _make_synthetic(task, n_samples, n_features, n_outputs, noise, seed)
    labels = y.numpy() if task == "multiclass" else None
    parts = _split("synthetic", len(x), split_seed, val_fraction, test_fraction, labels)
    train, val, test = _standardize(_splits(x, y, parts), inputs=True, targets=task == "regression")
    classes = 0 if task == "regression" else n_outputs
    return TensorDataModule("synthetic", task, train, val, test, classes, batch_size, num_workers)


@functools.lru_cache(maxsize=4)
def _make_images(
    channels: int, size: int, n_classes: int, n_samples: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, C, size, size]: each class a smooth random pattern (a 4×4 grid of
    random values, bilinearly enlarged), each image its class's pattern plus Gaussian
    pixel noise of std ``noise`` (the patterns have std ~1)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n_classes, channels, 4, 4, generator=generator)
    patterns = torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )
    patterns = patterns / patterns.std(dim=(1, 2, 3), keepdim=True)
    y = torch.randint(0, n_classes, (n_samples,), generator=generator)
    pixels = torch.randn(n_samples, channels, size, size, generator=generator)
    return patterns[y] + noise * pixels, y


def synthetic_images_data(
    channels: int = 1,
    size: int = 28,
    n_classes: int = 10,
    n_samples: int = 12000,
    noise: float = 10.0,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> TensorDataModule:
    """Synthetic images of any geometry, made in memory: MNIST's by default
    (1×28×28, 10 classes), CIFAR-10's with ``channels=3 size=32``. For image models'
    throughput without the real files; each class is a smooth pattern under pixel
    noise of std ``noise`` (at 10, lenet5 reaches ~80% validation accuracy in 3
    epochs on the default geometry; lower is easier)."""
    x, y = _make_images(channels, size, n_classes, n_samples, noise, seed)
    labels = y.numpy()
    parts = _split("synthetic_images", n_samples, split_seed, val_fraction, test_fraction, labels)
    train, val, test = _splits(x, y, parts)
    return TensorDataModule(
        "synthetic_images", "multiclass", train, val, test, n_classes, batch_size, num_workers
    )


# --- torchvision sets -------------------------------------------------------------------


def torchvision_data(
    name: str,
    root: str = "data",
    download: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> TensorDataModule:
    """A torchvision dataset read from ``root``: the official test split as test,
    validation a stratified ``val_fraction`` of train. The plugins bind ``name``."""
    from lossopt.plugins._torchvision_sets import load_torchvision

    train, test = load_torchvision(name, os.path.abspath(os.path.expanduser(root)), download)
    parts = _split(name, len(train.x), split_seed, val_fraction, labels=train.y.numpy())[:2]
    fit, held_out = _splits(train.x, train.y, parts)
    return TensorDataModule(name, "multiclass", fit, held_out, test, 10, batch_size, num_workers)


# --- the plugins --------------------------------------------------------------------------


def _spec(
    factory: Callable[..., TensorDataModule], info: dict, description: str = "", **checks: Check
) -> DataSpec:
    """A DataSpec with the common value checks for the parameters ``factory`` has."""
    params = inspect.signature(factory).parameters
    common = {key: check for key, check in _COMMON_CHECKS.items() if key in params}
    return DataSpec(factory, description, info=info, checks={**common, **checks}, stackable=True)


def _images_info(channels: int, size: int) -> dict[str, object]:
    shape = [channels, size, size]
    return {"task": "multiclass", "num_classes": 10, "num_outputs": 10, "input_shape": shape}


digits = _spec(digits_data, _images_info(1, 8))
mnist = _spec(
    functools.partial(torchvision_data, "mnist"),
    _images_info(1, 28),
    "MNIST handwritten digits 28×28 (torchvision), read from data.root/MNIST/raw.",
)
fashion_mnist = _spec(
    functools.partial(torchvision_data, "fashion_mnist"),
    _images_info(1, 28),
    "Fashion-MNIST 28×28 (torchvision), read from data.root/FashionMNIST/raw.",
)
cifar10 = _spec(
    functools.partial(torchvision_data, "cifar10"),
    _images_info(3, 32),
    "CIFAR-10 32×32 colour images (torchvision), read from data.root/cifar-10-batches-py.",
)
diabetes = _spec(
    diabetes_data,
    {"task": "regression", "num_classes": 0, "num_outputs": 1, "input_shape": [10]},
)


def _tabular_spec(name: str, description: str) -> DataSpec:
    task, classes, features, outputs = _TABULAR[name]
    info = {"task": task, "num_classes": classes, "num_outputs": outputs}
    return _spec(
        functools.partial(tabular_data, name), {**info, "input_shape": [features]}, description
    )


iris = _tabular_spec("iris", "Iris flowers (scikit-learn, bundled): 150 × 4 features, 3 classes.")
wine = _tabular_spec(
    "wine", "Wine cultivars (scikit-learn, bundled): 178 × 13 features, 3 classes."
)
breast_cancer = _tabular_spec(
    "breast_cancer",
    "Breast cancer diagnosis (scikit-learn, bundled): 569 × 30 features, 2 classes.",
)
linnerud = _tabular_spec(
    "linnerud",
    "Linnerud (scikit-learn, bundled): 20 athletes, 3 exercise features → 3 physiological "
    "targets (multi-output regression, targets standardized).",
)
multilabel = _spec(
    multilabel_data,
    {"task": "multilabel", "num_classes": 6, "num_outputs": 6, "input_shape": ["${..n_features}"]},
    n_samples=Range(10, None),
    n_features=Range(1, None),
    noise=Range(0.0, None),
)
synthetic_images = _spec(
    synthetic_images_data,
    {
        "task": "multiclass",
        "num_classes": "${.n_classes}",
        "num_outputs": "${.n_classes}",
        "input_shape": ["${..channels}", "${..size}", "${..size}"],
    },
    channels=Range(1, None),
    size=Range(4, None),
    n_classes=Range(2, None),
    n_samples=Range(10, None),
    noise=Range(0.0, None),
)
synthetic = _spec(
    synthetic_data,
    {
        # `task` is a parameter here, so it is already a field of the config.
        # num_classes is n_outputs for classification and 0 for regression; OmegaConf has
        # no conditional, so it is looked up by task in this small table.
        "num_classes": "${.num_classes_by_task.${.task}}",
        "num_classes_by_task": {
            "multiclass": "${..n_outputs}",
            "multilabel": "${..n_outputs}",
            "regression": 0,
        },
        "num_outputs": "${.n_outputs}",
        "input_shape": ["${..n_features}"],  # inside a list: one level deeper
    },
    task=OneOf(TASKS),
    n_samples=Range(10, None),
    n_features=Range(1, None),
    n_outputs=Range(1, None),
    noise=Range(0.0, 1.0),
)
