import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_cache
from toolkit.analysis import policies
from toolkit.analysis.cache import from_arrays
from toolkit.analysis.scores import stage_confidence
from toolkit.analysis.sweep import (
    bootstrap,
    bootstrap_curve,
    evaluate_thresholds,
    pareto_front,
    patience_sweep,
    summarize,
    sweep,
    threshold_grid,
)


def brute_force(cache, thr, score="max_prob", temperature=None, metric="accuracy"):
    """One threshold at a time, one example at a time: the definition, with no cleverness."""
    conf = stage_confidence(cache.logits, score, temperature)
    N, E = conf.shape
    stages = []
    for n in range(N):
        e = next((e for e in range(E - 1) if conf[n, e] >= thr), E - 1)
        stages.append(e)
    stages = np.array(stages)
    pred = cache.predictions[np.arange(N), stages]
    from toolkit.analysis.metrics import task_metric

    return (task_metric(cache.labels, pred, metric, cache.n_classes), (pred == cache.labels).mean(),
            cache.flops[np.arange(N), stages].mean())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(2, 4), st.integers(0, 10_000),
       st.sampled_from(["max_prob", "margin", "entropy", "energy", "elang"]), st.booleans())
def test_sweep_equals_brute_force(N, E, C, seed, score, ties):
    c = random_cache(N, E, C, seed, ties=ties, metric="mcc")
    df = sweep(c, score)
    assert df["threshold"].iloc[0] == np.inf and df["threshold"].is_monotonic_decreasing
    assert df["threshold"].iloc[1:].is_unique
    for _, row in df.iterrows():
        m, acc, fl = brute_force(c, row["threshold"], score, metric="mcc")
        assert row["metric"] == pytest.approx(m, abs=1e-12)
        assert row["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert row["flops"] == pytest.approx(fl, rel=1e-12)
    # every distinct threshold is covered: between consecutive rows nothing changes
    conf = stage_confidence(c.logits, score)[:, :-1]
    assert set(np.unique(conf)) >= set(df["threshold"].iloc[1:])


def test_sweep_exact_small_reference():
    # two examples, three stages; max-prob confidences computed by hand
    lg = np.log(np.array([[[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]],
                          [[0.3, 0.7], [0.45, 0.55], [0.1, 0.9]]]))
    c = from_arrays(lg, [0, 1], [1.0, 2.0, 3.0])
    df = sweep(c)
    np.testing.assert_allclose(df["threshold"], [np.inf, 0.9, 0.7, 0.6])
    np.testing.assert_allclose(df["accuracy"], [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(df["flops"], [3.0, 2.5, 1.5, 1.0])
    np.testing.assert_allclose(df["speedup"], [1.0, 1.2, 2.0, 3.0])


def test_temperature_per_stage_and_errors():
    c = random_cache(50, 3, 2)
    a = sweep(c, "max_prob", temperature=[1.0, 2.0, 0.5])
    b = evaluate_thresholds(c, a["threshold"], "max_prob", temperature=[1.0, 2.0, 0.5])
    np.testing.assert_allclose(a.drop(columns="threshold"), b.drop(columns="threshold"), atol=1e-12)
    with pytest.raises(ValueError, match="unknown score"):
        sweep(c, "confidence")

    class Bad:
        logits = np.full((3, 2, 2), np.nan)
        labels = np.zeros(3, int)
        flops = np.ones((3, 2))

    with pytest.raises(ValueError, match="finite"):
        sweep(Bad())
    Bad.logits, Bad.labels = np.zeros((3, 2, 2)), np.array([0, 1, 2])
    with pytest.raises(ValueError, match="labels must lie"):
        sweep(Bad())


def test_single_stage_cache():
    c = random_cache(30, 1, 2)
    df = sweep(c)
    assert len(df) == 1 and df["speedup"].iloc[0] == 1.0


def test_patience_matches_brute_force():
    c = random_cache(60, 6, 3, seed=3)
    df = patience_sweep(c)
    pred = c.predictions
    for _, row in df.iterrows():
        P = int(row["patience"])
        st = []
        for n in range(c.n_examples):
            cnt, stop = 0, c.n_stages - 1
            for e in range(1, c.n_stages):
                cnt = cnt + 1 if pred[n, e] == pred[n, e - 1] else 0
                if cnt >= P:
                    stop = e
                    break
            st.append(stop)
        st = np.array(st)
        assert row["accuracy"] == pytest.approx((pred[np.arange(60), st] == c.labels).mean())
        assert row["flops"] == pytest.approx(c.flops[np.arange(60), st].mean())


def test_policies_brute_force_and_oracle():
    c = random_cache(80, 4, 2, seed=5)
    r = policies.early_exit(c, 0.8)
    conf = stage_confidence(c.logits, "max_prob")
    for n in range(80):
        e = next((e for e in range(3) if conf[n, e] >= 0.8), 3)
        assert r.exit_stage[n] == e
    per = policies.early_exit(c, [0.9, 0.7, 0.95])
    assert ((per.exit_stage == 1) <= (conf[:, 1] >= 0.7)).all()
    o = policies.oracle(c)
    cor = c.correct
    assert (cor[np.arange(80), o.exit_stage] | ~cor.any(1)).all()
    assert o.summary(c)["accuracy"] == pytest.approx(cor.any(1).mean())
    assert policies.patience(c, 10).exit_stage.tolist() == [3] * 80
    with pytest.raises(ValueError):
        policies.patience(c, 0)


def test_hybrid_routes_through_swift_then_super():
    info = [{"name": f"s{i}", "model_index": 0} for i in range(3)] + [{"name": "super", "model_index": 1}]
    c = random_cache(100, 4, 2, seed=1)
    c.stage_info = info
    r = policies.hybrid(c, swift_threshold=0.9, escalate_threshold=0.6)
    conf = stage_confidence(c.logits, "max_prob")
    expect = np.where(conf[:, 0] >= 0.9, 0, np.where(conf[:, 1] >= 0.9, 1, np.where(conf[:, 2] >= 0.6, 2, 3)))
    assert (r.exit_stage == expect).all()
    assert r.summary(c)["escalated"] == pytest.approx((expect == 3).mean())


def test_pareto_and_summary_reference():
    df = pd.DataFrame({"threshold": [np.inf, 3, 2, 1], "metric": [0.90, 0.895, 0.91, 0.80],
                       "flops": [4.0, 2.0, 3.0, 1.0], "speedup": [1.0, 2.0, 4 / 3, 4.0]})
    fr = pareto_front(df)
    assert fr["flops"].tolist() == [1.0, 2.0, 3.0]
    s = summarize(df)
    assert s["reference"] == 0.90 and s["speedup_at_drop"] == 2.0
    assert s["metric_at_2x"] == 0.895 and s["metric_at_4x"] == 0.80 and "metric_at_5x" not in s
    # frontier by speed-up: (1.333, .91), (2, .895), (4, .80); AUC = trapezoid / range
    expect = (0.5 * (0.91 + 0.895) * (2 - 4 / 3) + 0.5 * (0.895 + 0.80) * 2) / (4 - 4 / 3)
    assert s["auc"] == pytest.approx(expect)


def test_bootstrap_curve_brackets_point_estimate():
    c = random_cache(300, 4, 2, seed=2)
    thr = threshold_grid(c, 20)
    b = bootstrap_curve(c, thr, n_boot=200, seed=0)
    assert (b["metric_lo"] <= b["metric"] + 1e-12).all() and (b["metric"] <= b["metric_hi"] + 1e-12).all()
    assert (b["flops_lo"] <= b["flops_hi"]).all()
    same = bootstrap_curve(c, thr, n_boot=200, seed=0)
    pd.testing.assert_frame_equal(b, same)
    r = bootstrap(lambda x: float(x.correct[:, -1].mean()), c, n_boot=50)
    lo, hi = r["value"][1:]
    assert lo <= r["value"][0] <= hi
