"""Figures written with every job."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from lossopt.core.plots import confusion_figure, save_confusion


def test_a_confusion_matrix_saved_after_others_looks_like_one_drawn_alone(tmp_path):
    # save_confusion refills one figure per size; each PNG must show only its own counts.
    rng = np.random.default_rng(0)
    matrices = [rng.integers(0, 60, (10, 10)) for _ in range(3)]
    matrices.append(np.diag(np.arange(10)))  # another colour scale and label colours
    matrices.insert(2, rng.integers(0, 5, (3, 3)))  # another size between them
    for k, counts in enumerate(matrices):
        save_confusion(counts, tmp_path / f"saved{k}.png")
    for k, counts in enumerate(matrices):
        confusion_figure(counts).savefig(tmp_path / f"alone{k}.png")
        saved, alone = imread(tmp_path / f"saved{k}.png"), imread(tmp_path / f"alone{k}.png")
        assert saved.shape == alone.shape and np.array_equal(saved, alone), k
    different = imread(tmp_path / "saved0.png") != imread(tmp_path / "saved3.png")
    assert different.mean() > 0.01
