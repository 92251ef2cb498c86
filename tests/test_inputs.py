"""Probabilities and log-probabilities as cache inputs (zeros allowed), and the cost unit in the header."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from toolkit.analysis.engine import staged, sweep
from toolkit.analysis.scores.classification import softmax
from toolkit.caches.classification import CacheError, load_cache, save_cache
from toolkit.caches.inputs import LOG_FLOOR, cost_label, cost_unit, from_log_probs, from_probabilities


def test_probabilities_round_trip_through_softmax(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(20, 2))
    p[0, 0] = [0.0, 0.25, 0.75]  # zeros allowed
    c = from_probabilities(p, rng.integers(0, 3, 20), [1.0, 3.0], cost_unit="dollars")
    np.testing.assert_allclose(softmax(c.logits.astype(np.float64)), p, atol=1e-6)
    assert c.logits[0, 0, 0] == np.float32(LOG_FLOOR) and c.meta["input"] == {"kind": "probabilities", "floored": 1}
    save_cache(c, tmp_path / "c.parquet")
    d = load_cache(tmp_path / "c.parquet")
    assert cost_unit(d) == "dollars" and (d.flops == [1.0, 3.0]).all()
    assert sweep(staged(d)).to_frame()["speedup"].max() > 1


def test_one_stage_and_log_probs():
    lp = np.log([[0.2, 0.8], [0.6, 0.4]])
    c = from_log_probs(lp, [1, 0], [5.0], stages=["only"])
    assert c.logits.shape == (2, 1, 2) and c.stages == ["only"] and cost_unit(c) == "FLOPs"
    np.testing.assert_array_equal(c.logits[:, 0], lp.astype(np.float32))
    d = from_log_probs([[-np.inf, 0.0]], [1], [1.0])
    assert d.logits.tolist() == [[[np.float32(LOG_FLOOR), 0.0]]] and d.meta["input"]["floored"] == 1


@pytest.mark.parametrize("fn, values, message", [
    (from_probabilities, [[0.5, 1.5]], r"in \[0, 1\], got 1.5 at example 0, stage 0, class 1"),
    (from_probabilities, [[0.5, -0.1]], r"got -0.1"),
    (from_probabilities, [[0.5, np.nan]], r"got nan"),
    (from_log_probs, [[-1.0, 0.5]], r"must be <= 0, got 0.5 at example 0, stage 0, class 1"),
    (from_log_probs, [[-1.0, np.nan]], r"NaN or \+inf"),
    (from_log_probs, [[-1.0, np.inf]], r"NaN or \+inf"),
    (from_log_probs, [-1.0, -2.0], r"\[N, C\] \(one stage\) or \[N, E, C\]"),
])
def test_hostile_values_are_refused(fn, values, message):
    with pytest.raises(CacheError, match=message):
        fn(values, [0] * len(np.atleast_2d(values)), [1.0])


def test_cost_unit_must_be_a_name():
    with pytest.raises(CacheError, match="cost_unit must be a non-empty name"):
        from_probabilities([[0.5, 0.5]], [0], [1.0], cost_unit="  ")
    with pytest.raises(CacheError, match="meta key 'cost_unit'"):
        cost_unit({"cost_unit": 3})
    assert cost_label("FLOPs") == "GFLOPs per example" and cost_label("dollars") == "cost per example (dollars)"


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (6, 2, 3), elements=st.floats(0, 1)), st.integers(0, 2))
def test_predictions_follow_the_probabilities(p, label):
    """Any probabilities in [0, 1] (zeros, ties, subnormals, rows not summing to 1) give a valid cache predicting
    their argmax wherever it is unique at float32 resolution (values below float32's smallest normal are floored).
    Rows summing above 1 are refused (not one distribution), so the drawn rows are scaled to sum to at most 1."""
    p = p / np.maximum(1.0, p.sum(-1, keepdims=True))
    c = from_probabilities(p, [label] * 6, [1.0, 2.0])
    top = p.max(-1, keepdims=True)
    unique = ((p >= top * (1 - 1e-5)).sum(-1) == 1) & (top[..., 0] > 1e-30)
    assert (c.predictions[unique] == p.argmax(-1)[unique]).all()
    assert np.isfinite(c.logits).all() and c.logits.min() >= np.float32(LOG_FLOOR)


def test_the_cost_unit_reaches_views_results_plots_info_and_the_manifest(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    from toolkit.analysis.engine import bootstrap_bands, choose
    from toolkit.analysis.plots.curves import plot_tradeoff
    from toolkit.cli import main
    from toolkit.zoo.manifest import stage_table

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(2), size=(200, 2))
    c = from_probabilities(p, rng.integers(0, 2, 200), [0.002, 0.012], cost_unit="dollars", meta={"task": "t"})
    view = staged(c)
    assert view.meta["cost_unit"] == "dollars" and staged(from_log_probs(np.log(p), c.labels, [1, 2])).meta[
        "cost_unit"] == "FLOPs"
    curve = sweep(view)
    assert "flops column in dollars" in repr(curve)
    ev = choose(view, rule="drop", max_drop=0.05).evaluate(view, n_boot=50)
    assert ev.cost_unit == "dollars" and "cost in dollars" in ev._repr_html_()
    ax = plot_tradeoff({"cascade": curve, "bands": bootstrap_bands(view, [0.6, 0.8], n_boot=20)}, x="flops",
                       points={"chosen": ev})
    assert ax.get_xlabel() == "mean cost per example (dollars)"
    assert "mean dollars of" in plot_tradeoff({"cascade": curve}).get_xlabel()
    xs = ax.lines[0].get_xdata()
    assert xs.min() == pytest.approx(0.002) and xs.max() == pytest.approx(0.012)  # in dollars, not GFLOPs
    assert stage_table(c)[1]["cost_unit"] == "dollars" and stage_table(c)[1]["mean_cost"] == pytest.approx(0.012)
    save_cache(c, tmp_path / "c.parquet")
    assert main(["info", str(tmp_path / "c.parquet")]) == 0
    out = capsys.readouterr().out
    assert "cost unit: dollars" in out and "cost per example (cumulative)" in out and "GFLOPs" not in out
    assert main(["sweep", str(tmp_path / "c.parquet")]) == 0
    out = capsys.readouterr().out
    assert "0.012 dollars per example" in out and "cost (dollars)" in out and "GFLOPs" not in out


def test_the_explorer_names_the_cost_unit():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import explore

    rng = np.random.default_rng(4)
    cal, test = (from_probabilities(rng.dirichlet(np.ones(2), size=(n, 2)), rng.integers(0, 2, n), [3.0, 7.0],
                                    cost_unit="seconds", meta={"task": "t", "split": s})
                 for n, s in ((300, "cal"), (200, "test")))
    ex = explore(cal, test, threshold=0.8)
    numbers = ex.numbers()
    assert "mean GFLOPs per example" not in numbers.index
    row = numbers.loc["mean cost per example (seconds)"]
    assert 3.0 <= row["test"] <= 7.0 and row["test"] == ex.points["test"].flops  # in seconds, not scaled
