"""The plots (toolkit.analysis.plots): readable labels, cost axes named after what they count."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from toolkit.analysis.metrics.calibration import reliability_curve  # noqa: E402
from toolkit.analysis.plots.curves import plot_reliability, reliability_grid  # noqa: E402
from toolkit.testing import random_classification_cache  # noqa: E402


def _counts(ax):
    return [t for t in ax.texts if t.get_text().startswith("n=")]


def test_reliability_bar_labels_are_readable():
    """Every bar of a reliability diagram carries its example count at 9 pt or more (they were 6 pt, about 6 px)."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 500)
    ax = Figure().subplots()
    plot_reliability(reliability_curve(p, rng.integers(0, 3, 500), n_bins=15), ax=ax)
    labels = _counts(ax)
    assert labels and min(t.get_fontsize() for t in labels) >= 9
    axes = reliability_grid(random_classification_cache(200, 2, 2, seed=1), axes=np.array(Figure().subplots(1, 2)))
    assert all(_counts(a) and min(t.get_fontsize() for t in _counts(a)) >= 9 for a in axes)
