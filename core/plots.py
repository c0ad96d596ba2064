"""Figures logged with runs and reports (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: figures are written to files and MLflow

import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = ["confusion_figure"]


def confusion_figure(matrix: Tensor, title: str = "Test confusion matrix"):
    """Counts per (true, predicted) class, with the count in each cell."""
    counts = matrix.cpu().numpy()
    n = counts.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * n, 0.8 + 0.5 * n), dpi=100)
    image = ax.imshow(counts, cmap="Blues")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    limit = counts.max() / 2 if counts.size else 0
    for i in range(n):
        for j in range(n):
            color = "white" if counts[i, j] > limit else "black"
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
