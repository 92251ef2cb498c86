"""The engine at scale: bootstrap in blocks of bounded memory (the same draws as one dense matrix), cluster-aware
resampling (a cluster's examples together), the paired interval of the drop against the last stage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import exit_cache, random_cache
from toolkit.analysis import engine as en
from toolkit.analysis.engine import curves
from toolkit.analysis.metrics.task import confusion_matrix, metric_from_confusion

SST2 = "data/sst2/minilm6_me-{}.parquet"


def _dense(n, n_boot, seed, P=None):
    """The resamples as the engine drew them before blocks: one dense multinomial matrix."""
    P = n if P is None else P
    return np.random.default_rng(seed).multinomial(P, np.full(P, 1.0 / P), size=n_boot).astype(np.float64)


@pytest.mark.parametrize("block", [1, 3, 7, 64])
def test_weight_blocks_are_the_dense_draws(block):
    blocks = list(en.weight_blocks(50, n_boot=20, seed=4, block=block))
    assert [r.start for r, _ in blocks] == list(range(0, 20, block))
    np.testing.assert_array_equal(np.concatenate([w for _, w in blocks]), _dense(50, 20, 4))
    np.testing.assert_array_equal(en.resample_weights(50, n_boot=20, seed=4), _dense(50, 20, 4))


def test_weight_blocks_bound_memory():
    n = 1_000_000
    rows, w = next(en.weight_blocks(n, n_boot=1000, seed=0))
    assert w.nbytes <= 8 * curves._BOOT_ELEMENTS and rows.stop - rows.start == curves._BOOT_ELEMENTS // n


def test_cluster_weights_keep_clusters_together():
    clusters = np.array([7, 7, 3, 9, 3, 3, 7])  # ids sorted: 3 -> 0, 7 -> 1, 9 -> 2
    w = en.resample_weights(7, n_boot=30, seed=2, clusters=clusters)
    per_cluster = _dense(None, 30, 2, P=3)
    np.testing.assert_array_equal(w, per_cluster[:, [1, 1, 0, 2, 0, 0, 1]])
    np.testing.assert_array_equal(en.cluster_weights(3, n_boot=30, seed=2)[1:], per_cluster)


def _shipped():
    import toolkit

    return (en.staged(toolkit.load_cache(SST2.format("cal"))), en.staged(toolkit.load_cache(SST2.format("test"))))


def test_shipped_intervals_unchanged(monkeypatch):
    """The intervals the engine gave before resampling in blocks (28afd11, same seeds), to the last bit, whatever
    the block size."""
    import toolkit

    cal, test = _shipped()
    op = en.choose(cal, rule="drop", max_drop=0.01)
    old = {"accuracy": (0.8623853211009175, 0.9025229357798165), "f1": (0.8624749641976728, 0.9058794742729307),
           "mcc": (0.7248662481169439, 0.8049136240582079), "flops": (171419042.85137615, 195141035.40550458),
           "speedup": (2.7953423975766194, 3.1297104859432174)}
    thr = en.threshold_grid(test, n=8)
    old_bands = {"accuracy_lo": [0.8738532110091743] * 3, "accuracy_hi": [0.9174598623853212] * 3,
                 "speedup_lo": [1.0, 1.0, 1.12096212392132], "speedup_hi": [1.0, 1.0023715067105106,
                                                                          1.164167072180643]}
    other = en.staged(toolkit.load_cache(SST2.format("test")), score="entropy")
    ref_cmp = en.compare(test, other, budgets=(1.5, 2.0, 3.0), n_boot=200, seed=5).frame
    for elements in (curves._BOOT_ELEMENTS, 872 * 7):  # one block, then blocks of 7 resamples
        monkeypatch.setattr(curves, "_BOOT_ELEMENTS", elements)
        ev = op.evaluate(test, n_boot=300, seed=3)
        assert {k: ev.intervals[k] for k in old} == old
        bands = en.bootstrap_bands(test, thr, n_boot=200, seed=4).frame
        assert {k: bands[k].tolist()[:3] for k in old_bands} == old_bands
        cmp = en.compare(test, other, budgets=(1.5, 2.0, 3.0), n_boot=200, seed=5).frame
        assert cmp[["lo", "hi"]].equals(ref_cmp[["lo", "hi"]])


def test_drop_interval_brute_force():
    """Each resample, as an explicit index list, scores the last stage and the policy on the same examples."""
    s = en.staged(random_cache(150, 4, 3, seed=1, metric="mcc"))
    ev = en.evaluation(s, 0.6, n_boot=60, seed=8)
    stop = s.stage_of(0.6)
    drops = []
    for counts in en.resample_weights(150, n_boot=60, seed=8).astype(int):
        idx = np.repeat(np.arange(150), counts)
        sub = s.subset(idx)
        drops.append(en.evaluation_at_stages(sub, stop[idx]).drop("mcc"))
    assert ev.drop_interval("mcc") == pytest.approx(tuple(np.quantile(drops, [0.025, 0.975])), abs=1e-12)
    d = ev.to_dict()
    assert (d["mcc_drop_lo"], d["mcc_drop_hi"]) == ev.intervals["mcc_drop"] and d["mcc_drop"] == ev.drop("mcc")
    assert d["mcc_drop_lo"] <= d["mcc_drop"] <= d["mcc_drop_hi"]
    with pytest.raises(ValueError, match="n_boot"):
        en.evaluation(s, 0.6).drop_interval()


def test_sst2_drop_interval():
    cal, test = _shipped()
    ev = en.choose(cal, rule="drop", max_drop=0.01).evaluate(test, n_boot=1000)
    lo, hi = ev.drop_interval("accuracy")
    assert lo <= ev.drop("accuracy") <= hi and hi > lo
    assert {"accuracy_drop_lo", "accuracy_drop_hi", "f1_drop_lo", "mcc_drop_hi"} <= set(ev.to_dict())


def _clustered(N=120, P=15, seed=0):
    s = en.staged(random_cache(N, 4, 3, seed=seed))
    clusters = np.random.default_rng(seed).integers(0, P, N) * 10 + 5  # arbitrary ids
    return replace(s, clusters=clusters)


def _cluster_rows(clusters, counts):
    """Example rows of a resample drawing cluster k ``counts[k]`` times (ids sorted)."""
    ids = np.unique(clusters)
    return np.concatenate([np.flatnonzero(clusters == ids[k]) for k in np.repeat(np.arange(len(ids)), counts)])


def test_cluster_intervals_equal_explicit_cluster_resamples():
    s = _clustered()
    P = len(np.unique(s.clusters))
    ev = en.evaluation(s, 0.5, n_boot=40, seed=3)
    thr = en.threshold_grid(s, n=6)
    bands = en.bootstrap_bands(s, thr, n_boot=40, seed=3).frame
    stop = s.stage_of(0.5)
    acc, drop, speed, band = [], [], [], []
    for counts in _dense(None, 40, 3, P=P).astype(int):
        rows = _cluster_rows(s.clusters, counts)
        e = en.evaluation_at_stages(s.subset(rows), stop[rows])
        acc.append(e["accuracy"]), drop.append(e.drop("accuracy")), speed.append(e.speedup)
        band.append(en.evaluate(s.subset(rows), thr).frame["accuracy"].to_numpy())
    q = [0.025, 0.975]
    assert ev.intervals["accuracy"] == pytest.approx(tuple(np.quantile(acc, q)), abs=1e-12)
    assert ev.intervals["accuracy_drop"] == pytest.approx(tuple(np.quantile(drop, q)), abs=1e-12)
    assert ev.intervals["speedup"] == pytest.approx(tuple(np.quantile(speed, q)), rel=1e-12)
    lo, hi = np.quantile(np.array(band), q, axis=0)
    np.testing.assert_allclose(bands["accuracy_lo"], lo, atol=1e-12)
    np.testing.assert_allclose(bands["accuracy_hi"], hi, atol=1e-12)


def test_cluster_compare_equals_explicit_cluster_resamples():
    a = _clustered(seed=4)
    b = replace(a, confidence=a.confidence[::-1].copy())
    P = len(np.unique(a.clusters))
    cmp = en.compare(a, b, budgets=(1.5,), n_boot=30, seed=2).frame
    w = np.vstack([np.ones((1, a.n_examples)), en.resample_weights(a.n_examples, n_boot=30, seed=2,
                                                                    clusters=a.clusters)])
    ref = a.reference_cost
    d = (en.frontier_at_budgets(a, w, budgets=(1.5,), reference_cost=ref, metric="accuracy")
         - en.frontier_at_budgets(b, w, budgets=(1.5,), reference_cost=ref, metric="accuracy"))[1:, 0]
    assert (cmp["lo"][0], cmp["hi"][0]) == pytest.approx(tuple(np.nanquantile(d, [0.025, 0.975])), abs=1e-12)
    counts = _dense(None, 30, 2, P=P).astype(int)[0]  # the first resample, as explicit rows
    rows = _cluster_rows(a.clusters, counts)
    one = en.frontier_at_budgets(a.subset(rows), np.ones((1, len(rows))), budgets=(1.5,),
                                 reference_cost=ref[rows], metric="accuracy")
    assert one[0, 0] == pytest.approx(en.frontier_at_budgets(a, w[1:2], budgets=(1.5,), reference_cost=ref,
                                                             metric="accuracy")[0, 0], abs=1e-12)
    with pytest.raises(ValueError, match="clusters"):
        en.compare(a, en.staged(random_cache(120, 4, 3, seed=4)), n_boot=5)


def test_clusters_validated_and_subset():
    s = en.staged(exit_cache(20, 0))
    with pytest.raises(ValueError, match="clusters must be"):
        replace(s, clusters=np.zeros(3))
    c = replace(s, clusters=np.arange(20) // 4)
    assert c.subset([0, 5, 19]).clusters.tolist() == [0, 1, 4]


# ------------------------------------------------------------------------------------------ O(C) statistics
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(1, 4), st.integers(2, 6), st.integers(0, 10_000), st.booleans())
def test_class_statistics_equal_sklearn_at_every_threshold(N, E, C, seed, ties):
    """accuracy, F1 (two classes) and MCC from O(C) statistics equal scikit-learn's at every distinct threshold,
    and to the last bit the confusion-matrix formulas the engine used before (C x C cells)."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    c = random_cache(N, E, C, seed, ties=ties, metric="mcc")
    s = en.staged(c)
    assert s.stats.shape[-1] == (3 if C == 2 else 1 + 2 * C) and s.stats.dtype == np.float32
    df = en.sweep(s).frame
    conf = s.confidence
    for _, row in df.iterrows():
        stop = np.array([next((e for e in range(E - 1) if conf[n, e] >= row["threshold"]), E - 1)
                         for n in range(N)])
        pred = c.predictions[np.arange(N), stop]
        cm = confusion_matrix(pred, c.labels, n_classes=C)
        assert row["accuracy"] == metric_from_confusion(cm, "accuracy") == pytest.approx(
            accuracy_score(c.labels, pred), abs=1e-12)
        assert row["mcc"] == metric_from_confusion(cm, "mcc")
        assert row["mcc"] == pytest.approx(matthews_corrcoef(c.labels, pred) if len(set(c.labels)) > 1 or
                                           len(set(pred)) > 1 else 0.0, abs=1e-12)
        if C == 2:
            assert row["f1"] == metric_from_confusion(cm, "f1") == pytest.approx(
                f1_score(c.labels, pred, zero_division=0.0), abs=1e-12)


def test_class_metrics_only_what_the_view_needs():
    assert en.staged(random_cache(30, 3, 5, 0)).stats.shape[-1] == 1  # accuracy
    assert en.staged(random_cache(30, 3, 5, 0)).metric_names == ("accuracy",)
    v = en.staged(random_cache(30, 3, 5, 0), metrics=("mcc",))
    assert v.metric_names == ("accuracy", "mcc") and v.stats.shape[-1] == 11
    assert en.staged(random_cache(30, 3, 2, 0)).metric_names == ("accuracy", "f1", "mcc")
    with pytest.raises(ValueError, match="two classes"):
        en.staged(random_cache(30, 3, 4, 0), metrics=("f1",))


def test_float32_statistics_exact_up_to_2_24(monkeypatch):
    """Counts accumulate in float32 only where every partial sum is an exact integer; beyond, float64."""
    from toolkit.analysis.engine import adapters

    assert np.float32(2 ** 24) - 1 == 2 ** 24 - 1 and np.float32(2 ** 24 + 1) == 2 ** 24  # where float32 stops
    c = random_cache(400, 4, 2, 3, metric="mcc")
    ref = en.sweep(en.staged(c)).frame
    monkeypatch.setattr(adapters, "_F32_EXACT", 100)  # this cache is now "too large" for float32
    s = en.staged(c)
    assert s.stats.dtype == np.float64
    pd.testing.assert_frame_equal(en.sweep(s).frame, ref)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(1, 4), st.integers(2, 30), st.integers(0, 10_000),
       st.sampled_from([None, 0.3, 1.0, 2.5, "per-stage"]), st.floats(0.1, 30))
def test_max_prob_in_blocks_is_stage_confidence(N, E, C, seed, temperature, scale):
    from toolkit.analysis.engine import adapters
    from toolkit.analysis.scores.classification import stage_confidence

    rng = np.random.default_rng(seed)
    lg = (rng.normal(size=(N, E, C)) * scale).astype(np.float32)
    t = rng.uniform(0.2, 4, E) if temperature == "per-stage" else temperature
    for score in ("max_prob", "entropy"):
        conf, pred = adapters._confidence(lg, score, t)
        np.testing.assert_array_equal(conf, stage_confidence(lg, score=score, temperature=t))
        np.testing.assert_array_equal(pred, lg.argmax(-1))
    ties = lg.round(0)  # many equal logits: argmax keeps the first
    np.testing.assert_array_equal(adapters._confidence(ties, "max_prob", t)[0], stage_confidence(ties, score="max_prob", temperature=t))
    np.testing.assert_array_equal(adapters._confidence(ties, "max_prob", t)[1], ties.argmax(-1))


def test_max_prob_refuses_bad_logits():
    from toolkit.analysis.engine import adapters

    lg = np.zeros((3, 2, 3), np.float32)
    for bad in (np.inf, -np.inf, np.nan):
        lg[1, 0, 2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            adapters._confidence(lg, "max_prob", None)


def test_bootstrap_statistic_resamples_clusters_whole():
    s = _clustered(seed=6)
    ids, size = np.unique(s.clusters, return_counts=True)
    seen = []

    def stat(v):
        seen.append(v)
        return float(v.n_examples)

    value, lo, hi = en.bootstrap_statistic(stat, s, n_boot=5, seed=1)
    assert value == s.n_examples and lo <= hi
    draw = np.random.default_rng(1).integers(0, len(ids), len(ids))  # the first resample's clusters
    assert seen[0].n_examples == size[draw].sum()
    for v in seen[:-1]:  # each drawn cluster with all of its examples
        got = {k: int((v.clusters == k).sum()) for k in np.unique(v.clusters)}
        assert all(n % size[ids == k][0] == 0 for k, n in got.items())


def test_crossfit_intervals_unchanged_and_clustered(monkeypatch):
    """The combined cross-fit interval on SST-2 as before blocks (28afd11), whatever the block size; with clusters,
    each half's clusters are resampled whole."""
    test = _shipped()[1]
    old = {"accuracy": (0.8451834862385321, 0.8899082568807339), "speedup": (3.2066345372781937, 3.573759015309169)}
    for elements in (curves._BOOT_ELEMENTS, 436 * 5):
        monkeypatch.setattr(curves, "_BOOT_ELEMENTS", elements)
        cf = en.crossfit(test, rule="drop", max_drop=0.02, seed=0, n_boot=300)
        assert {k: cf.combined.intervals[k] for k in old} == old
    s = _clustered(N=200, P=25, seed=2)
    cf = en.crossfit(s, rule="drop", max_drop=0.05, seed=1, n_boot=40)
    a, b = en.halves(s.example_ids, seed=1, strata=s.strata, clusters=s.clusters)
    held = (s.subset(b), s.subset(a))
    stops = [held[0].stage_of(cf.folds[0].threshold), held[1].stage_of(cf.folds[1].threshold)]
    acc = []
    w = [en.resample_weights(h.n_examples, n_boot=40, seed=2 + i, clusters=h.clusters) for i, h in enumerate(held)]
    for r in range(40):  # explicit rows of each half's resample
        right = sum(float(w[i][r] @ h.stats[np.arange(h.n_examples), stops[i], 0]) for i, h in enumerate(held))
        acc.append(right / (w[0][r].sum() + w[1][r].sum()))
    assert cf.combined.intervals["accuracy"] == pytest.approx(tuple(np.quantile(acc, [0.025, 0.975])), abs=1e-12)
    assert (w[0][:, held[0].clusters == held[0].clusters[0]] == w[0][:, :1]).all()  # a cluster weighs as one



@pytest.mark.parametrize("clustered", [False, True])
def test_crossfit_halves_are_derived_from_what_it_keeps(clustered):
    """CrossFit.halves is the pair of halves its folds were chosen and evaluated on, derived from the example ids,
    strata, clusters and seed it keeps (not a stored copy that could disagree with them)."""
    from dataclasses import fields

    s = _clustered(N=200, P=25, seed=5) if clustered else en.staged(exit_cache(300, 4))
    cf = en.crossfit(s, rule="drop", max_drop=0.05, seed=6, n_boot=0)
    a, b = cf.halves
    ref = en.halves(s.example_ids, seed=6, strata=s.strata, clusters=s.clusters)
    assert np.array_equal(a, ref[0]) and np.array_equal(b, ref[1])
    for fold, ev, held in zip(cf.folds, cf.evaluations, (b, a)):  # fold 1: chosen on A, evaluated on B; fold 2 back
        again = fold.evaluate(s.subset(held))
        assert ev.n == len(held) and ev.metrics == again.metrics and ev.flops == again.flops
        assert np.array_equal(cf.stops(s)[held], s.subset(held).stage_of(fold.threshold))
    assert "halves" not in {f.name for f in fields(en.CrossFit)}
    moved = replace(cf, seed=7)
    assert not np.array_equal(moved.halves[0], a)
    assert np.array_equal(moved.halves[0], en.halves(s.example_ids, seed=7, strata=s.strata, clusters=s.clusters)[0])
    assert replace(cf, example_ids=None).halves is None

def test_crossfit_halves_keep_clusters_whole():
    s = _clustered(N=200, P=25, seed=3)
    a, b = en.halves(s.example_ids, seed=4, strata=s.strata, clusters=s.clusters)
    assert not set(s.clusters[a]) & set(s.clusters[b]) and len(a) + len(b) == 200
    cf = en.crossfit(s, rule="drop", max_drop=0.05, seed=4, n_boot=0)
    assert cf.evaluations[0].n == len(b) and cf.evaluations[1].n == len(a)
    cmp = en.compare_crossfit(s, replace(s, confidence=s.confidence[::-1].copy()), rule="drop", max_drop=0.05,
                              seed=4, n_boot=20)
    assert len(cmp.frame) == 2
    unclustered = en.halves(s.example_ids, seed=4, strata=s.strata)
    assert set(s.clusters[unclustered[0]]) & set(s.clusters[unclustered[1]])  # without: prompts split across
