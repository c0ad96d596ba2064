"""Figures logged with runs and reports (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures are written to files and MLflow

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = [
    "confusion_figure",
    "curves_figure",
    "lr_sensitivity_figure",
    "save_confusion",
]

# (x, mean, std) per point; std is None where a single seed gives no spread.
Point = tuple[float, float, float | None]


def confusion_figure(matrix, title: str = "Test confusion matrix") -> Figure:
    """Counts per (true, predicted) class, with the count in each cell.

    ``matrix``: [C, C] counts (a tensor or an array). A bare ``Figure`` (not pyplot's):
    nothing to close, and it can be drawn in another process.
    """
    counts = matrix.cpu().numpy() if hasattr(matrix, "cpu") else np.asarray(matrix)
    n = counts.shape[0]
    fig = Figure(figsize=(1.0 + 0.5 * n, 0.8 + 0.5 * n), dpi=100)
    ax = fig.add_subplot()
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


def save_confusion(matrix, path: str | Path) -> str:
    """``confusion_figure(matrix)`` written as a PNG file; returns its path. A function
    of plain arrays, so that a worker process can draw it (see ``core.launcher``)."""
    confusion_figure(matrix).savefig(path)
    return str(path)


def _colors(n: int) -> list:
    """Distinct colours: tab10, then tab20, then a continuous map for large sweeps."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(i / (n - 1)) for i in range(n)]


def _line(ax, points: Sequence[Point], color, label: str) -> None:
    """Mean as a line with markers, mean ± std shaded (error bars for a lone point)."""
    x = [p[0] for p in points]
    mean = [p[1] for p in points]
    std = [0.0 if p[2] is None or math.isnan(p[2]) else p[2] for p in points]
    ax.plot(x, mean, marker="o", markersize=4, color=color, label=label)
    if len(points) == 1:
        ax.errorbar(x, mean, yerr=std, color=color, capsize=4)
    else:
        lower = [m - s for m, s in zip(mean, std, strict=True)]
        upper = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, lower, upper, color=color, alpha=0.18, linewidth=0)


def _better(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def lr_sensitivity_figure(
    panels: Mapping[str, Mapping[str, Sequence[Point]]], metric: str, mode: str
):
    """One panel per loss: ``best_<metric>`` against the learning rate (log axis),
    one line per optimizer (mean over seeds), mean ± std over seeds shaded.

    panels: ``{loss: {optimizer: [(lr, mean, std), …]}}``.
    """
    cols = min(max(len(panels), 1), 3)
    rows = math.ceil(max(len(panels), 1) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.4 * cols + 1.8, 3.4 * rows + 0.8), dpi=110,
        sharey=True, squeeze=False, layout="constrained",
    )  # fmt: skip
    optimizers = sorted({name for lines in panels.values() for name in lines})
    color = dict(zip(optimizers, _colors(len(optimizers)), strict=True))
    for ax, (loss, lines) in zip(axes.flat, panels.items(), strict=False):
        for optimizer, points in sorted(lines.items()):
            _line(ax, sorted(points), color[optimizer], optimizer)
        ax.set_xscale("log")
        ax.set(title=f"loss: {loss}", xlabel="learning rate (log scale)")
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", axis="x", alpha=0.12)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"best {metric}\n(mean ± std over seeds)")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=color[o], marker="o", label=o) for o in optimizers]
    if handles:
        fig.legend(handles=handles, title="optimizer", loc="outside right upper")
    else:
        axes[0, 0].text(0.5, 0.5, "no finished job", ha="center", transform=axes[0, 0].transAxes)
    fig.suptitle(f"Learning-rate sensitivity: best {metric} per job ({_better(mode)})")
    return fig


def curves_figure(
    curves: Mapping[str, Sequence[Point]], metric: str, mode: str, title: str | None = None
):
    """Per-epoch validation curves, one line per label, mean ± std over seeds shaded.

    curves: ``{label: [(epoch, mean, std), …]}``.
    """
    fig, ax = plt.subplots(figsize=(9.5, 5.0), dpi=110, layout="constrained")
    for (label, points), color in zip(curves.items(), _colors(len(curves)), strict=True):
        _line(ax, points, color, label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(
        xlabel="epoch",
        ylabel=f"{metric}\n(mean ± std over seeds)",
        title=title or f"Validation curves at each pair's best learning rate ({_better(mode)})",
    )
    ax.grid(True, alpha=0.35)
    if curves:
        fig.legend(title="loss + optimizer (lr)", loc="outside right upper", fontsize="small")
    else:
        ax.text(0.5, 0.5, f"no per-epoch history of {metric}", ha="center", transform=ax.transAxes)
    return fig
