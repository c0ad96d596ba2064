"""Figures logged with runs and reports (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures are written to files and MLflow

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imsave  # noqa: E402
from matplotlib.ticker import MaxNLocator, ScalarFormatter  # noqa: E402

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
    counts = _counts(matrix)
    n = counts.shape[0]
    side = 0.5 * max(n, 4)  # the matrix, in inches; then room for labels and colour bar
    fig = Figure(figsize=(side + 1.3, side + 1.0), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    for i in range(n):
        for j in range(n):
            ax.text(j, i, "", ha="center", va="center", fontsize=8)
    _fill_confusion(image, ax.texts, counts)
    fig.colorbar(image, ax=ax, fraction=0.046)
    # Margins in inches, the same whatever the counts (no tight_layout, which would
    # draw the figure once more and move it with the colour bar's labels): a figure
    # refilled with other counts is the figure drawn for them alone.
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=0.7 / width, right=1 - 0.6 / width, bottom=0.6 / height, top=1 - 0.4 / height
    )
    return fig


def _counts(matrix) -> np.ndarray:
    return matrix.cpu().numpy() if hasattr(matrix, "cpu") else np.asarray(matrix)


def _fill_confusion(image, texts: Sequence, counts: np.ndarray) -> None:
    """The counts into a confusion figure's image and cell labels (row by row)."""
    image.set_data(counts)
    image.set_clim(counts.min(), counts.max())
    limit = counts.max() / 2 if counts.size else 0
    for text, count in zip(texts, counts.flat, strict=True):
        text.set_text(str(int(count)))
        text.set_color("white" if count > limit else "black")


class _ConfusionRedraw:
    """One confusion figure per matrix size, redrawn for each matrix: a sweep writes a
    confusion matrix per job (72 in the study's). Building and laying out the figure is
    half of a full draw's cost, and the title, axis labels and ticks are the same for
    every matrix: they are drawn once, and each matrix draws only what its counts
    change (image, cell labels, colour bar) over them, in the order a full draw uses,
    so the pixels are a full draw's (a test compares them). 45 instead of 70 ms a
    matrix on the 2-core development machine."""

    def __init__(self, counts: np.ndarray) -> None:
        self.figure = confusion_figure(counts)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes, self.colour_bar = self.figure.axes
        self.image = self.axes.images[0]
        # Drawn over the image by a full draw, so drawn after it here too.
        self.spines = list(self.axes.spines.values())
        changing = [self.image, *self.axes.texts, *self.spines, self.colour_bar]
        for artist in changing:
            artist.set_visible(False)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        for artist in changing:
            artist.set_visible(True)

    def save(self, counts: np.ndarray, path: str | Path) -> None:
        _fill_confusion(self.image, self.axes.texts, counts)
        self.canvas.restore_region(self.background)
        for artist in (self.image, *self.spines, *self.axes.texts):
            self.axes.draw_artist(artist)
        self.figure.draw_artist(self.colour_bar)
        # What savefig writes after its draw: the canvas as PNG, matplotlib's metadata.
        imsave(path, self.canvas.buffer_rgba(), format="png", origin="upper", dpi=self.figure.dpi)


_confusion_redraws: dict[int, _ConfusionRedraw] = {}


def save_confusion(matrix, path: str | Path) -> str:
    """``confusion_figure(matrix)`` written as a PNG file; returns its path. A function
    of plain arrays, so that a worker process can draw it (see ``core.sweep.launcher``)."""
    counts = _counts(matrix)
    redraw = _confusion_redraws.get(counts.shape[0])
    if redraw is None:
        redraw = _confusion_redraws[counts.shape[0]] = _ConfusionRedraw(counts)
    redraw.save(counts, path)
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


def _grid(n: int, cols: int, width: float = 4.4, height: float = 3.4, sharey=False):
    """A figure of ``n`` panels in rows of ``cols``, the unused ones hidden."""
    cols = max(min(n, cols), 1)
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols + 1.8, height * rows + 0.8), dpi=110,
        sharey=sharey, squeeze=False, layout="constrained",
    )  # fmt: skip
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def lr_sensitivity_by_task(tasks: Sequence[tuple[str, str, str, Mapping]]):
    """Learning-rate sensitivity of a sweep across tasks: a row of panels per task, one
    panel per loss that ran on it, one line per optimizer (mean ± std over seeds).

    tasks: ``[(task, metric, mode, {loss: {optimizer: [(lr, mean, std), …]}}), …]``.
    """
    cols = max((len(panels) for *_, panels in tasks), default=1)
    fig, axes = plt.subplots(
        max(len(tasks), 1), max(cols, 1), figsize=(3.6 * cols + 1.8, 2.9 * len(tasks) + 0.8),
        dpi=100, sharey="row", squeeze=False, layout="constrained",
    )  # fmt: skip
    optimizers = sorted({o for *_, panels in tasks for lines in panels.values() for o in lines})
    color = dict(zip(optimizers, _colors(len(optimizers)), strict=True))
    for row, (task, metric, mode, panels) in zip(axes, tasks, strict=False):
        for ax, (loss, lines) in zip(row, panels.items(), strict=False):
            for optimizer, points in sorted(lines.items()):
                _line(ax, sorted(points), color[optimizer], optimizer)
            ax.set_xscale("log")
            ax.set_title(f"{task}: {loss}", fontsize="medium")
            ax.grid(True, alpha=0.3)
        for ax in row[len(panels) :]:
            ax.set_visible(False)
        row[0].set_ylabel(f"best {metric}\n({_better(mode)})")
        values = [p[1] for lines in panels.values() for pts in lines.values() for p in pts]
        if mode == "min" and values and min(values) > 0:  # errors spread over decades
            row[0].set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("learning rate (log scale)")
    handles = [plt.Line2D([], [], color=color[o], marker="o", label=o) for o in optimizers]
    if handles:
        fig.legend(handles=handles, title="optimizer", loc="outside right upper")
    fig.suptitle("Learning-rate sensitivity per task (mean ± std over seeds)")
    return fig


def curves_by_task(tasks: Sequence[tuple[str, str, str, Mapping]]):
    """Validation curves at the best lr, one panel per task.

    tasks: ``[(task, metric, mode, {label: [(epoch, mean, std), …]}), …]``.
    """
    fig, axes = _grid(len(tasks), 3, 5.2, 3.8)
    for ax, (task, metric, mode, curves) in zip(axes.flat, tasks, strict=False):
        for (label, points), color in zip(curves.items(), _colors(len(curves)), strict=True):
            _line(ax, points, color, label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=task, xlabel="epoch", ylabel=f"{metric} ({_better(mode)})")
        ax.grid(True, alpha=0.3)
        if curves:
            ax.legend(fontsize="x-small", title="best pairs (lr)", title_fontsize="x-small")
    fig.suptitle("Validation curves at each pair's best learning rate (mean ± std over seeds)")
    return fig


def profile_figure(ratios: Mapping[str, Sequence[float]], highlighted: Sequence[str]):
    """Dolan–Moré performance profiles: ρ(τ), the share of a pair's tasks on which its
    best-lr result is within a factor τ of the task's best, against τ (log axis).

    ratios: ``{label: [ratio on each task it ran on]}``; ``highlighted`` labels are drawn
    in colour with a legend, the others in thin grey.
    """
    finite = [r for rs in ratios.values() for r in rs if math.isfinite(r)]
    top = max(max(finite, default=1.0) * 1.15, 1.1)
    fig, ax = plt.subplots(figsize=(9.5, 5.5), dpi=110, layout="constrained")
    colors = dict(zip(highlighted, _colors(len(highlighted)), strict=True))
    for label, rs in sorted(ratios.items(), key=lambda item: item[0] in colors):
        x = [1.0, *sorted(r for r in rs if r < top), top]
        y = [sum(r <= t for r in rs) / len(rs) for t in x]
        hl = label in colors
        ax.step(x, y, where="post", color=colors.get(label, "0.75"), linewidth=2 if hl else 0.8,
                label=label if hl else None, zorder=3 if hl else 1)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlim(1.0, top)
    ax.set_ylim(-0.02, 1.02)
    ax.set(
        xlabel="τ: within a factor τ of the best on the task (log scale)",
        ylabel="ρ(τ): share of the pair's tasks",
        title="Performance profiles of (loss, optimizer) at their best learning rate",
    )
    ax.grid(True, which="both", alpha=0.3)
    if colors:
        fig.legend(title="loss + optimizer", loc="outside right upper", fontsize="small")
    return fig


def budget_figure(tasks: Sequence[tuple[str, str, str, Mapping[str, Sequence[float]]]]):
    """Tuning-budget curves: the expected best result when k learning rates of the grid
    are tried at random, k = 1 … grid size, one panel per task, a line per pair.

    tasks: ``[(task, metric, mode, {label: [E[best of k] for k = 1 …]}), …]``.
    """
    fig, axes = _grid(len(tasks), 3, 5.2, 3.8)
    for ax, (task, metric, mode, curves) in zip(axes.flat, tasks, strict=False):
        for (label, curve), color in zip(curves.items(), _colors(len(curves)), strict=True):
            ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, color=color,
                    label=label)  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=task, xlabel="learning rates tried (k)",
               ylabel=f"expected best {metric}\n({_better(mode)})")  # fmt: skip
        ax.grid(True, alpha=0.3)
        if curves:
            ax.legend(fontsize="x-small")
    fig.suptitle("Tuning budget: expected best of k random learning rates of the grid")
    return fig
