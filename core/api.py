"""The public Python API: ``lossopt.available``, ``create_loss``, ``create_optimizer``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lossopt.core.registry import registry

__all__ = ["available", "create_loss", "create_optimizer"]


def available(kind: str) -> list[str]:
    """Names of the registered plugins of ``kind`` (loss, optimizer, scheduler, model,
    data), read from entry-point metadata without importing any plugin."""
    return registry(kind).names()


def create_loss(name: str, **params: Any):
    """The loss plugin ``name`` as an ``nn.Module``, called as ``loss(output, target)``.

    Parameters are validated first (names, types, values); tensor parameters such as
    ``weight`` or ``pos_weight`` may be given as lists.
    """
    from lossopt.core.configs import build

    return build("loss", name, params)


def create_optimizer(name: str, params: Iterable[Any], **hyper: Any):
    """The optimizer plugin ``name`` over ``params`` (tensors or parameter groups)."""
    from lossopt.core.configs import build

    return build("optimizer", name, hyper, params=params)
