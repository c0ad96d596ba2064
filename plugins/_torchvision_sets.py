"""The torchvision sets' files, read as float tensors: kept out of ``datasets`` so
that torchvision (with ``torch._dynamo``, 0.8 s) is imported only by the jobs that
read one of them."""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
from torchvision import datasets as tvdata

from lossopt.core.data import Split
from lossopt.core.errors import LossoptError

__all__ = ["load_torchvision"]


class _CIFAR10(tvdata.CIFAR10):
    """CIFAR10 that verifies md5 sums only when downloading.

    torchvision checks the md5 of every batch file on every load. That rejects any copy
    that is not byte-identical to the official archive (batches re-pickled by another
    tool, or written by tests in the same format) and re-reads 170 MB each time. Without
    ``download`` we check that the files are present; a damaged file still fails when
    it is unpickled. A download is verified as usual.
    """

    def __init__(self, root: str, train: bool, download: bool) -> None:
        self._verify_md5 = download
        if not download:
            self.meta = {**self.meta, "md5": None}  # read by _load_meta
        super().__init__(root, train=train, download=download)

    def _check_integrity(self) -> bool:
        if self._verify_md5:
            return super()._check_integrity()
        folder = os.path.join(self.root, self.base_folder)
        files = [name for name, _ in self.train_list + self.test_list]
        return all(os.path.isfile(os.path.join(folder, name)) for name in files)


def _expected_files(cls: type, root: str) -> tuple[str, list[str]]:
    """The folder torchvision reads and the file names it needs there."""
    if issubclass(cls, tvdata.CIFAR10):
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return os.path.join(root, cls.base_folder), names
    names = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    return os.path.join(root, cls.__name__, "raw"), names


def _images(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images [N, H, W] or [N, H, W, C] → float32 [N, C, H, W] in [0, 1]."""
    x = torch.as_tensor(data)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous()


@functools.lru_cache(maxsize=4)
def load_torchvision(name: str, root: str, download: bool) -> tuple[Split, Split]:
    """The official train and test splits of a torchvision set, as float tensors.

    ``root`` must be absolute, so the cache key names one folder.
    """
    cls = _TORCHVISION[name]
    try:
        sets = [cls(root, train=train, download=download) for train in (True, False)]
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ...
        raise _missing(name, cls, root, download, error) from error
    return tuple(  # type: ignore[return-value]
        Split(_images(s.data), torch.as_tensor(s.targets, dtype=torch.int64)) for s in sets
    )


def _missing(name: str, cls: type, root: str, download: bool, error: Exception) -> LossoptError:
    """One message: what failed, where the files are expected, and how to get them."""
    folder, files = _expected_files(cls, root)
    missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
    if download:
        what = f"downloading it failed ({error})"
    elif missing == files:
        what = "its files are not there"
    elif missing:
        what = f"{', '.join(missing)} missing"
    else:
        what = f"its files could not be read ({error})"
    fetch = "check the network" if download else "run with data.download=true to download them"
    return LossoptError(
        f"dataset '{name}': {what}. Expected in {folder}: {', '.join(files)}. "
        f"To fix: {fetch}, or copy the files there "
        f"(data.root={root} is the folder above {os.path.relpath(folder, root)})."
    )


_TORCHVISION: dict[str, type] = {
    "mnist": tvdata.MNIST,
    "fashion_mnist": tvdata.FashionMNIST,
    "cifar10": _CIFAR10,
}
