"""A ``TensorDataModule`` as a LightningDataModule (see ``core.data``).

Its own module so that ``core.data`` imports Lightning only when a job trains through
Lightning's ``Trainer``; it needs nothing of ``core.data`` but the data module's
loaders and state, so it does not import it back.
"""

from __future__ import annotations

from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader


class LightningTensorData(LightningDataModule):
    """Lightning's view of a ``TensorDataModule``: its loaders, and its state (the
    training order's generator) in the job's checkpoints."""

    def __init__(self, data: Any) -> None:  # a core.data.TensorDataModule
        super().__init__()
        self.data = data

    def train_dataloader(self) -> DataLoader:
        return self.data.train_dataloader()

    def val_dataloader(self) -> DataLoader:
        return self.data.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.data.test_dataloader()

    def state_dict(self) -> dict[str, Any]:
        return self.data.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.data.load_state_dict(state_dict)
