"""Any point's paired drop interval from the engine (evaluation_at_stages at the point's stops, Evaluation.drop_interval,
which replaced the notebooks' paired_drop) checked against a brute-force bootstrap; the deprecated
toolkit.analysis.notebook.stops warns and gives what the engine's point.stops(view) gives."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.analysis import engine
from toolkit.analysis import notebook as nb
from toolkit.caches.classification import from_arrays


def _cache(n: int = 240, stages: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    # later exits see more of the label: accuracy and confidence grow along the exits
    signal = (2 * labels - 1)[:, None] * np.linspace(0.3, 2.0, stages)[None]
    z = signal + rng.normal(0, 1.2, (n, stages))
    logits = np.stack([np.zeros_like(z), z], -1)
    return from_arrays(logits, labels, np.arange(1.0, stages + 1), example_ids=[f"e{i}" for i in range(n)])


def test_paired_drop_equals_a_brute_force_bootstrap():
    cache = _cache()
    v, thr = nb.view(cache), 0.8
    stop = v.stage_of(thr)
    assert 0 < (stop == 0).mean() < 1  # some stop early, some do not

    def drop(rows):  # accuracy of the last exit minus accuracy at the stops, on these rows
        return cache.correct[rows, -1].mean() - cache.correct[rows, stop[rows]].mean()

    draws = [drop(np.repeat(np.arange(cache.n_examples), counts.astype(int)))  # one resample at a time
             for counts in engine.resample_weights(cache.n_examples, n_boot=300, seed=5)]
    want = (drop(np.arange(cache.n_examples)), *np.quantile(draws, [0.025, 0.975]))
    ev = engine.evaluation_at_stages(v, nb.stops(v, thr), n_boot=300, seed=5)
    got = (ev.drop(), *ev.drop_interval())
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0] == pytest.approx(engine.evaluation(v, thr).drop()) and got[1] < got[0] < got[2]


def test_paired_drop_of_an_operating_point_and_of_a_crossfit():
    v = nb.view(_cache())
    op = engine.choose(v, rule="drop", max_drop=0.02)
    assert engine.evaluation_at_stages(v, nb.stops(v, op)).drop() == pytest.approx(op.evaluate(v).drop())
    cf = engine.crossfit(v, rule="drop", max_drop=0.02, seed=3, n_boot=0)
    ev = engine.evaluation_at_stages(v, nb.stops(v, cf), n_boot=200)
    d, (lo, hi) = ev.drop(), ev.drop_interval()
    assert d == pytest.approx(cf.combined.drop()) and lo <= d <= hi
    # each half is stopped by the threshold chosen on the other half
    a, b = engine.halves(v.example_ids, seed=3, strata=v.strata)
    st = nb.stops(v, cf)
    np.testing.assert_array_equal(st[b], v.stage_of(cf.folds[0].threshold)[b])
    np.testing.assert_array_equal(st[a], v.stage_of(cf.folds[1].threshold)[a])


def test_deprecated_stops_warns_naming_the_engine_call_and_delegates():
    v = nb.view(_cache())
    cf = engine.crossfit(v, rule="drop", max_drop=0.02, seed=3, n_boot=0)
    op = engine.choose(v, rule="drop", max_drop=0.02)
    for point, want in ((cf, cf.stops(v)), (op, op.stops(v)), (0.8, v.stage_of(0.8))):
        with pytest.warns(DeprecationWarning, match=r"use point\.stops\(view\)"):
            np.testing.assert_array_equal(nb.stops(v, point), want)
    with pytest.raises(ValueError, match="fit on 240 examples, the view has 100"), pytest.warns(DeprecationWarning):
        nb.stops(v.subset(np.arange(100)), cf)  # the engine's identity check reaches old callers too
