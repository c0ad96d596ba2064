"""The built-in dataset plugins and the in-memory DataModule they return.

torchvision sets are read from small files this module writes in the real on-disk
formats (idx for MNIST/Fashion-MNIST, pickled batches for CIFAR-10), through the real
plugin code and torchvision's own readers; nothing is downloaded.
"""

from __future__ import annotations

import inspect
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from lossopt.core.data import TensorDataModule
from lossopt.core.errors import LossoptError
from lossopt.plugins import _torchvision_sets, datasets

# --- writers for the on-disk formats torchvision reads ---------------------------------

N_TRAIN, N_TEST = 100, 20


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file (uint8): magic 0x0000 08 <ndim>, big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 10  # every class present, so stratified splits work


def _write_mnist(root: Path, folder: str) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        if prefix == "t10k":
            images[0] = 255  # a known pixel value to check scaling
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", _labels(n))


def _write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_batch = N_TRAIN // 5
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = N_TEST if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        if name == "test_batch":
            # First test image: channel c is constant 50 * c (checks channels-first).
            data[0] = np.repeat([0, 50, 100], 32 * 32)
        entry = {"batch_label": name, "labels": _labels(n).tolist(), "data": data}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


@pytest.fixture(scope="module")
def vision_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vision")
    _write_mnist(root, "MNIST")
    _write_mnist(root, "FashionMNIST")
    _write_cifar10(root)
    return root


# --- every plugin: metadata agrees with the batches ------------------------------------

CASES = {
    "digits": ("digits", {}),
    "diabetes": ("diabetes", {}),
    "synthetic-multiclass": ("synthetic", {"n_samples": 300}),
    "synthetic-multilabel": ("synthetic", {"task": "multilabel", "n_samples": 300}),
    "synthetic-regression": ("synthetic", {"task": "regression", "n_samples": 300}),
    "synthetic_images": ("synthetic_images", {"n_samples": 300}),
    "synthetic_images-cifar10": ("synthetic_images", {"n_samples": 300, "channels": 3, "size": 32}),
    "iris": ("iris", {}),
    "wine": ("wine", {}),
    "breast_cancer": ("breast_cancer", {}),
    "linnerud": ("linnerud", {}),
    "multilabel": ("multilabel", {"n_samples": 300}),
    "mnist": ("mnist", {}),
    "fashion_mnist": ("fashion_mnist", {}),
    "cifar10": ("cifar10", {}),
}
VISION = ("mnist", "fashion_mnist", "cifar10")
TABULAR = ("iris", "wine", "breast_cancer", "linnerud")


def _build(plugin: str, params: dict, root: Path) -> TensorDataModule:
    if plugin in VISION:
        params = {"root": str(root), **params}
    return getattr(datasets, plugin).factory(**params)


def _config(plugin: str, params: dict) -> dict:
    """The plugin's config node as the rest of the config sees it: parameters + info."""
    spec = getattr(datasets, plugin)
    signature = inspect.signature(spec.factory).parameters.items()
    node = {name: p.default for name, p in signature} | params | dict(spec.info)
    return OmegaConf.to_container(OmegaConf.create({"data": node}), resolve=True)["data"]


@pytest.mark.parametrize("case", list(CASES))
def test_metadata_matches_batches(case: str, vision_root: Path) -> None:
    plugin, params = CASES[case]
    dm = _build(plugin, params, vision_root)
    config = _config(plugin, params)
    for key in ("task", "num_classes", "num_outputs"):
        assert config[key] == getattr(dm, key), key
    assert tuple(config["input_shape"]) == dm.input_shape

    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.float32
        assert tuple(x.shape[1:]) == dm.input_shape
        assert len(x) == len(y) <= 64
        if dm.task == "multiclass":
            assert y.dtype == torch.int64 and y.dim() == 1
            assert int(y.min()) >= 0 and int(y.max()) < dm.num_classes
        else:
            assert y.dtype == torch.float32 and tuple(y.shape[1:]) == (dm.num_outputs,)
    if dm.task == "multilabel":
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert dm.describe()["train_size"] == len(dm.splits["train"].x)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@pytest.mark.parametrize(
    "case",  # not iris: two of its rows are equal
    [
        "diabetes",
        "synthetic-multiclass",
        "synthetic_images",
        "mnist",
        "cifar10",
        *TABULAR[1:],
        "multilabel",
    ],
)
def test_splits_are_disjoint_and_fixed_by_split_seed(case: str, vision_root: Path) -> None:
    plugin, params = CASES[case]
    dm = _build(plugin, params, vision_root)
    train, val, test = (_rows(dm.splits[s].x) for s in ("train", "val", "test"))
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)

    same = _build(plugin, params, vision_root)
    other = _build(plugin, {**params, "split_seed": 1}, vision_root)
    for split in ("train", "val", "test"):
        assert torch.equal(dm.splits[split].x, same.splits[split].x)
    assert not torch.equal(dm.splits["val"].x, other.splits["val"].x)


def test_digits_split_is_stratified_and_counts_classes() -> None:
    dm = datasets.digits.factory(val_fraction=0.1, test_fraction=0.2)
    sizes = {s: len(dm.splits[s].y) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes["val"] == pytest.approx(180, abs=1) and sizes["test"] == pytest.approx(360, abs=1)
    val_counts = torch.bincount(dm.splits["val"].y, minlength=10)
    assert int(val_counts.max() - val_counts.min()) <= 2  # ~18 per class

    counts = dm.class_counts()
    assert counts.dtype == torch.float32 and counts.shape == (10,)
    assert counts.sum() == sizes["train"]
    assert torch.equal(counts, torch.bincount(dm.splits["train"].y, minlength=10).float())


def test_class_counts_for_multilabel_and_regression() -> None:
    dm = datasets.synthetic.factory(task="multilabel", n_samples=200)
    assert torch.equal(dm.class_counts(), dm.splits["train"].y.sum(dim=0))
    with pytest.raises(LossoptError, match="regression"):
        datasets.diabetes.factory().class_counts()


def test_diabetes_scaling_uses_train_statistics() -> None:
    dm = datasets.diabetes.factory()
    x, y = dm.splits["train"]
    assert torch.allclose(x.mean(dim=0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(x.std(dim=0), torch.ones(10), atol=1e-5)
    assert y.std().item() == pytest.approx(1.0, abs=1e-5)
    assert all((dm.splits[s].y > 0).all() for s in ("train", "val", "test"))  # Poisson NLL


@pytest.mark.parametrize(
    ("plugin", "size", "classes"),
    [("iris", 150, 3), ("wine", 178, 3), ("breast_cancer", 569, 2), ("linnerud", 20, 0)],
)
def test_tabular_sets_are_the_bundled_data_standardized_on_train(plugin, size, classes) -> None:
    from sklearn import datasets as skdata

    dm = getattr(datasets, plugin).factory()
    x, y = dm.splits["train"]
    assert sum(len(dm.splits[s].x) for s in ("train", "val", "test")) == size
    assert torch.allclose(x.mean(dim=0), torch.zeros(x.shape[1]), atol=1e-5)
    assert torch.allclose(x.std(dim=0), torch.ones(x.shape[1]), atol=1e-5)
    assert dm.splits["val"].x.mean(dim=0).abs().max() > 1e-3  # val is not scaled on itself
    raw = getattr(skdata, f"load_{plugin}")()
    if classes:
        assert dm.num_classes == classes and torch.equal(
            torch.bincount(torch.cat([dm.splits[s].y for s in dm.splits]), minlength=classes),
            torch.bincount(torch.as_tensor(raw.target), minlength=classes),
        )
        val = torch.bincount(dm.splits["val"].y, minlength=classes).float()
        share = torch.bincount(torch.as_tensor(raw.target)).float() / size
        assert torch.allclose(val / val.sum(), share, atol=0.05)  # stratified
    else:
        assert torch.allclose(y.mean(dim=0), torch.zeros(3), atol=1e-5)  # targets too
        assert dm.num_outputs == 3


def test_multilabel_labels_follow_their_declared_structure() -> None:
    dm = datasets.multilabel.factory(n_samples=2000)
    y = torch.cat([dm.splits[s].y for s in ("train", "val", "test")]).bool()
    names = [name for name, _ in datasets.MULTILABEL_LABELS]
    a, b, c, child, union, xor = (y[:, names.index(n)] for n in names)
    assert torch.equal(child & ~a, torch.zeros_like(a)) and child.any()  # a hierarchy
    assert torch.equal(union, a | b) and torch.equal(xor, a ^ c)
    share = y.float().mean(dim=0)
    assert 0.4 < share[0] < 0.6 and share[1] < 0.3 and share[2] > 0.7  # rare and common
    exact = datasets.multilabel.factory(n_samples=300, noise=0.0).splits["train"]
    assert not torch.equal(exact.y, dm.splits["train"].y[: len(exact.y)])


def test_train_loader_shuffles_reproducibly_and_eval_loaders_keep_order() -> None:
    dm = datasets.digits.factory(batch_size=100)
    dm.shuffle_seed = 3
    first = torch.cat([y for _, y in dm.train_dataloader()])
    again = torch.cat([y for _, y in dm.train_dataloader()])
    assert torch.equal(first, again)
    assert not torch.equal(first, dm.splits["train"].y)  # shuffled...
    assert torch.equal(first.sort().values, dm.splits["train"].y.sort().values)  # ...each once
    dm.shuffle_seed = 4
    assert not torch.equal(first, torch.cat([y for _, y in dm.train_dataloader()]))

    # Unpinned, the run's seed decides, however much randomness model building used.
    dm.shuffle_seed = None
    torch.manual_seed(7)
    seeded = torch.cat([y for _, y in dm.train_dataloader()])
    torch.manual_seed(7)
    torch.rand(1000)
    assert torch.equal(seeded, torch.cat([y for _, y in dm.train_dataloader()]))
    torch.manual_seed(8)
    assert not torch.equal(seeded, torch.cat([y for _, y in dm.train_dataloader()]))
    for split in ("val", "test"):
        loader = getattr(dm, f"{split}_dataloader")()
        assert torch.equal(torch.cat([x for x, _ in loader]), dm.splits[split].x)


def test_batches_survive_lightnings_distributed_sampler() -> None:
    """Under DDP Lightning swaps in a DistributedSampler; batches must stay batches."""
    from lightning.pytorch.utilities.data import _update_dataloader

    dm = datasets.digits.factory(batch_size=32)
    loader = dm.train_dataloader()
    sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=0, shuffle=True)
    x, y = next(iter(_update_dataloader(loader, sampler)))
    assert x.shape == (32, 1, 8, 8) and y.shape == (32,)


def test_data_is_loaded_once_per_process(vision_root: Path) -> None:
    datasets.digits.factory()
    hits = datasets._load_digits.cache_info().hits
    datasets.digits.factory(split_seed=5)
    assert datasets._load_digits.cache_info().hits == hits + 1

    datasets.mnist.factory(root=str(vision_root))
    hits = _torchvision_sets.load_torchvision.cache_info().hits
    datasets.mnist.factory(root=str(vision_root), batch_size=8)
    assert _torchvision_sets.load_torchvision.cache_info().hits == hits + 1


# --- torchvision sets: real formats, scaling, errors ---------------------------------


@pytest.mark.parametrize("plugin", ["mnist", "fashion_mnist"])
def test_mnist_formats_read_scaled_with_official_test_split(plugin: str, vision_root: Path) -> None:
    dm = getattr(datasets, plugin).factory(root=str(vision_root), val_fraction=0.2)
    assert len(dm.splits["test"].x) == N_TEST
    assert len(dm.splits["train"].x) + len(dm.splits["val"].x) == N_TRAIN
    test_x = dm.splits["test"].x
    assert test_x.min() >= 0.0 and test_x.max() <= 1.0
    assert torch.all(test_x[0] == 1.0)  # pixel 255 → 1.0
    assert torch.equal(dm.splits["test"].y, torch.as_tensor(_labels(N_TEST)))


def test_cifar10_is_channels_first(vision_root: Path) -> None:
    dm = datasets.cifar10.factory(root=str(vision_root))
    first = dm.splits["test"].x[0]
    for channel, value in enumerate((0, 50, 100)):
        assert torch.allclose(first[channel], torch.full((32, 32), value / 255.0))
    assert len(dm.splits["test"].x) == N_TEST


@pytest.mark.parametrize(
    ("plugin", "folder", "a_file"),
    [
        ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
        ("fashion_mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ],
)
def test_missing_files_give_one_clear_error(
    plugin: str, folder: str, a_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LossoptError) as error:
        getattr(datasets, plugin).factory(root="nowhere")
    message = str(error.value)
    assert os.path.join(str(tmp_path), "nowhere", *folder.split("/")) in message  # absolute
    assert a_file in message and "data.download=true" in message and plugin in message


def test_partly_missing_files_are_named(vision_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(vision_root / "cifar-10-batches-py", folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(LossoptError, match="data_batch_3 missing"):
        datasets.cifar10.factory(root=str(tmp_path))


def test_invalid_parameters_are_reported_by_name() -> None:
    with pytest.raises(LossoptError, match="multiclass, multilabel, regression"):
        datasets.synthetic.factory(task="ranking")
    with pytest.raises(LossoptError, match="val_fraction"):
        datasets.digits.factory(val_fraction=0.5, test_fraction=0.5)
    checks = datasets.digits.all_checks()  # run on the config before anything is built
    assert checks["val_fraction"](0.0) and checks["batch_size"](0)
    assert checks["val_fraction"](0.1) is None and checks["batch_size"](64) is None
    assert "test_fraction" not in datasets.mnist.all_checks()  # mnist has no such parameter


def test_the_trainer_gets_a_tensor_data_module_through_lightning_with_its_state():
    from lightning import LightningDataModule

    from lossopt.core.data import lightning_data

    data = datasets.digits.factory(batch_size=32)
    trained = lightning_data(data)
    assert isinstance(trained, LightningDataModule) and lightning_data(trained) is trained
    loader = trained.train_dataloader()
    first = next(iter(loader))[1]
    state = trained.state_dict()  # a checkpoint after epoch 1: its shuffling generator
    second = next(iter(loader))[1]
    again = lightning_data(datasets.digits.factory(batch_size=32))
    again.load_state_dict(state)
    assert torch.equal(next(iter(again.train_dataloader()))[1], second)
    assert not torch.equal(first, second)
    with pytest.raises(LossoptError, match="returns a LightningDataModule or a lossopt"):
        lightning_data(object())
