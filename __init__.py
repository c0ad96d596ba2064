"""lossopt: compare loss functions and optimizers.

The public API is small on purpose; everything else lives in ``lossopt.core``.
Importing ``lossopt`` does not import torch: ``available`` reads entry-point
metadata only.
"""

from lossopt.core.api import available, create_loss, create_optimizer

__all__ = ["available", "create_loss", "create_optimizer"]
