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


# ------------------------------------------------------------------------------------- toolkit plot --profile
def test_plot_cli_costs_in_predicted_ms_with_a_profile(tmp_path, capsys):
    """``toolkit plot --profile`` draws the curve in predicted ms (as ``toolkit sweep --profile`` costs it) and names
    the profile on the axis; without it the axis is FLOPs."""
    import json
    from pathlib import Path

    import matplotlib.pyplot as plt
    import pytest

    from toolkit.analysis import engine
    from toolkit.analysis.cost.latency import load_profile, with_predicted_time
    from toolkit.caches.classification import load_cache
    from toolkit.cli import build_parser, main
    from toolkit.cli.plot import figure

    root = Path(__file__).resolve().parents[1]
    cache, profile = root / "data" / "sst2" / "minilm6_me-test.parquet", root / "benchmarks" / "latency_profile_cpu.json"
    if not cache.exists() or not profile.exists():
        pytest.skip("the shipped SST-2 MiniLM-L6 cache or the CPU latency profile is not here")
    args = ["plot", str(cache), "--out", str(tmp_path / "f.png"), "--n-boot", "20", "--cal", "none"]
    prof = load_profile(profile)
    fig, shown = figure(build_parser().parse_args([*args, "--profile", str(profile)]))
    label = fig.axes[0].get_xlabel()
    assert "predicted ms" in label and prof.label in label and prof.label in shown["latency profile"]
    view = with_predicted_time(engine.staged(load_cache(cache)), prof, load_cache(cache).n_tokens,
                               models=["all-MiniLM-L6-v2"])
    assert shown["reference"] == view.reference and shown["cost_unit"] == view.meta["cost_unit"]
    plt.close(fig)
    fig, shown = figure(build_parser().parse_args(args))
    assert "FLOPs" in fig.axes[0].get_xlabel() and "latency profile" not in shown
    plt.close(fig)
    assert main([*args, "--profile", str(profile), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cost_unit"].startswith("predicted ms")
    assert main([*args, "--profile", str(profile), "--profile-model", "all-MiniLM-L6-v2@2"]) == 2
    assert "layers" in capsys.readouterr().err
