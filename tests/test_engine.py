"""The sweep engine against its definitions: brute force one threshold and one example at a time, explicit
resamples for the bootstrap, sacrebleu for routed corpora, simulation for risk control; for classification and
generation views alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from conftest import exit_cache, random_cache
from toolkit.analysis import engine as en
from toolkit.analysis.metrics.task import task_metric
from toolkit.analysis.scores.classification import stage_confidence
from toolkit.caches.classification import from_arrays
from toolkit.caches.generation import GenCache
from toolkit.testing import random_generation_cache


def gen_cache(N=60, seed=0, exact=True) -> GenCache:
    """A Swift/Super generation cache (exact-match quality, or BLEU with sacrebleu-style statistics)."""
    return random_generation_cache(N, seed=seed, metric="exact_match" if exact else "bleu")


def brute_stops(conf, thr):
    """Stage where each example stops, one example at a time."""
    N, E = conf.shape
    return np.array([next((e for e in range(E - 1) if conf[n, e] >= thr), E - 1) for n in range(N)])


# ------------------------------------------------------------------------------------------ sweeps
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(2, 4), st.integers(0, 10_000),
       st.sampled_from(["max_prob", "margin", "entropy", "energy", "elang"]), st.booleans())
def test_classification_sweep_equals_brute_force(N, E, C, seed, score, ties):
    c = random_cache(N, E, C, seed, ties=ties, metric="mcc")
    s = en.staged(c, score=score)
    df = en.sweep(s).frame
    assert df["threshold"].iloc[0] == np.inf and df["threshold"].is_monotonic_decreasing
    assert df["threshold"].iloc[1:].is_unique
    conf = stage_confidence(c.logits, score=score)
    for _, row in df.iterrows():
        stop = brute_stops(conf, row["threshold"])
        pred = c.predictions[np.arange(N), stop]
        assert row["mcc"] == pytest.approx(task_metric(pred, c.labels, metric="mcc", n_classes=C), abs=1e-12)
        assert row["accuracy"] == pytest.approx((pred == c.labels).mean(), abs=1e-12)
        assert row["flops"] == pytest.approx(c.flops[np.arange(N), stop].mean(), rel=1e-12)
        assert row["speedup"] == pytest.approx(c.flops[:, -1].mean() / row["flops"], rel=1e-12)
        assert row["final_share"] == pytest.approx((stop == E - 1).mean())
    # every distinct threshold is covered: between consecutive rows nothing changes
    assert set(np.unique(conf[:, :-1])) >= set(df["threshold"].iloc[1:])


def test_sweep_exact_small_reference():
    lg = np.log(np.array([[[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]],
                          [[0.3, 0.7], [0.45, 0.55], [0.1, 0.9]]]))
    s = en.staged(from_arrays(lg, [0, 1], [1.0, 2.0, 3.0]))
    df = en.sweep(s).frame
    np.testing.assert_allclose(df["threshold"], [np.inf, 0.9, 0.7, 0.6])
    np.testing.assert_allclose(df["accuracy"], [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(df["flops"], [3.0, 2.5, 1.5, 1.0])
    np.testing.assert_allclose(df["speedup"], [1.0, 1.2, 2.0, 3.0])
    assert s.reference == "last exit (stage3)"


def test_evaluate_matches_sweep_and_per_stage_thresholds_match_brute_force():
    c = random_cache(80, 4, 3, seed=1)
    s = en.staged(c, temperature=[1.0, 2.0, 0.5, 1.0])
    sw = en.sweep(s).frame
    ev = en.evaluate(s, sw["threshold"]).frame
    pd.testing.assert_frame_equal(sw.drop(columns="threshold"), ev.drop(columns="threshold"), atol=1e-12, rtol=0)
    rng = np.random.default_rng(0)
    per = rng.uniform(0.3, 0.9, (5, 3))
    out = en.evaluate(s, per).frame
    assert list(out.columns[:3]) == ["threshold:stage1", "threshold:stage2", "threshold:stage3"]
    for t, (_, row) in zip(per, out.iterrows()):
        stop = np.array([next((e for e in range(3) if s.confidence[n, e] >= t[e]), 3) for n in range(80)])
        assert row["accuracy"] == pytest.approx(c.correct[np.arange(80), stop].mean())
        assert row["flops"] == pytest.approx(c.flops[np.arange(80), stop].mean())


def test_single_stage_and_bad_views():
    s = en.staged(random_cache(30, 1, 2))
    df = en.sweep(s).frame
    assert len(df) == 1 and df["speedup"].iloc[0] == 1.0
    c = random_cache(10, 3, 2)
    with pytest.raises(ValueError, match="unknown score"):
        en.staged(c, score="confidence")
    with pytest.raises(ValueError, match="unknown reference"):
        en.staged(c, reference="nope")
    with pytest.raises(TypeError, match="no engine adapter for list"):
        en.staged([1, 2])
    good = en.staged(c)
    with pytest.raises(ValueError, match="stats must be"):
        en.Staged(**{**good.__dict__, "stats": good.stats[:, :2]})
    with pytest.raises(ValueError, match="loss_kind 'binary'"):
        en.Staged(**{**good.__dict__, "loss": good.loss * 0.5})


# ------------------------------------------------------------------------------------------ references
def test_references_name_and_price_the_last_member_alone():
    info = [{"name": "small:L2", "model_name": "small", "model_index": 0, "layer": 2, "num_layers": 2},
            {"name": "big:L4", "model_name": "big", "model_index": 1, "layer": 4, "num_layers": 4}]
    c = random_cache(50, 2, 2, seed=3)
    c.stage_info = info
    last = en.staged(c)
    assert last.reference == "big alone"
    np.testing.assert_allclose(last.reference_cost, c.flops[:, 1] - c.flops[:, 0])
    every = en.staged(c, reference="all")
    assert every.reference == "every stage in turn"
    np.testing.assert_allclose(every.reference_cost, c.flops[:, 1])
    small = en.staged(c, reference="small")
    assert small.reference == "small alone"
    np.testing.assert_allclose(small.reference_cost, c.flops[:, 0])
    ratio = en.sweep(every).frame["speedup"] / en.sweep(last).frame["speedup"]
    np.testing.assert_allclose(ratio, c.flops[:, 1].mean() / (c.flops[:, 1] - c.flops[:, 0]).mean())


def test_shipped_cascade_speedups_are_against_mpnet_alone():
    from pathlib import Path

    import toolkit

    path = Path(__file__).resolve().parents[1] / "data/sst2/cascade-test.parquet"
    if not path.exists():
        pytest.skip("no shipped caches")
    c = toolkit.load_cache(path)
    s = en.staged(c)
    assert s.reference == "mpnet alone"
    mpnet = c.flops[:, 2] - c.flops[:, 1]
    np.testing.assert_allclose(s.reference_cost, mpnet)
    assert en.sweep(s).frame["speedup"].iloc[0] == pytest.approx(mpnet.mean() / c.flops[:, 2].mean())


# ------------------------------------------------------------------------------------------ generation
@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("score,how", [("energy", "mean"), ("max_prob", "min"), ("entropy", "first")])
def test_generation_sweep_equals_brute_force(exact, score, how):
    from toolkit.analysis.metrics.generation import corpus_bleu
    from toolkit.analysis.scores.tokens import sequence_confidence

    c = gen_cache(exact=exact)
    s = en.staged(c, score=score, how=how)
    a, b = c.models["swift"], c.models["super"]
    conf = sequence_confidence(c, "swift", score=score, how=how)
    np.testing.assert_array_equal(s.confidence[:, 0], conf)
    df = en.sweep(s).frame
    assert len(df) == len(np.unique(conf)) + 1 and df["escalated"].iloc[0] == 1.0 and df["escalated"].iloc[-1] == 0
    for _, row in df.iterrows():
        route = conf < row["threshold"]
        if exact:
            want = np.where(route, b.quality["exact_match"], a.quality["exact_match"]).mean()
            assert row["exact_match"] == pytest.approx(want, abs=1e-12)
        else:
            stats = np.where(route[:, None], b.qstats["bleu"], a.qstats["bleu"]).sum(0)
            assert row["bleu"] == pytest.approx(float(corpus_bleu(stats)), abs=1e-9)
        assert row["flops"] == pytest.approx((a.flops + route * b.flops).mean())
        assert row["tokens"] == pytest.approx((a.n_steps + route * b.n_steps).mean())
        assert row["speedup"] == pytest.approx(b.flops.mean() / row["flops"])
    assert s.reference == "super alone" and s.loss_kind == ("binary" if exact else "bounded")


# ------------------------------------------------------------------------------------------ bootstrap
@pytest.mark.parametrize("kind", ["classification", "generation"])
def test_bands_equal_explicit_resamples(kind):
    s = en.staged(random_cache(120, 4, 3, seed=2)) if kind == "classification" else \
        en.staged(gen_cache(80, exact=False), score="max_prob")
    thr = en.threshold_grid(s, n=12)
    bands = en.bootstrap_bands(s, thr, n_boot=40, seed=5).frame
    w = en.resample_weights(s.n_examples, n_boot=40, seed=5)
    draws = []
    for counts in w.astype(int):  # each resample as an explicit index list
        idx = np.repeat(np.arange(s.n_examples), counts)
        draws.append(en.evaluate(s.subset(idx), thr).frame[s.metric].to_numpy())
    lo, hi = np.quantile(np.array(draws), [0.025, 0.975], axis=0)
    np.testing.assert_allclose(bands[f"{s.metric}_lo"], lo, atol=1e-9)
    np.testing.assert_allclose(bands[f"{s.metric}_hi"], hi, atol=1e-9)
    assert (bands["flops_lo"] <= bands["flops"] + 1e-9).all() and (bands["flops"] <= bands["flops_hi"] + 1e-9).all()
    pd.testing.assert_frame_equal(bands, en.bootstrap_bands(s, thr, n_boot=40, seed=5).frame)


# ------------------------------------------------------------------------------------------ risk control
def test_risk_table_brute_force():
    c = exit_cache(300, 0)
    s = en.staged(c)
    t = en.risk_table(s, delta=0.05).frame
    for _, row in t.iloc[::17].iterrows():
        stop = brute_stops(s.confidence, row["threshold"])
        flips = int((c.correct[:, -1] & ~c.correct[np.arange(300), stop]).sum())
        assert row["losses"] == flips
        assert row["p_value"] == pytest.approx(binom.cdf(flips, 300, 0.05))
        assert row["accuracy_drop"] == pytest.approx(c.correct[:, -1].mean() - c.correct[np.arange(300), stop].mean())


def test_fixed_sequence_stops_at_first_failure():
    s = en.staged(exit_cache(500, 1))
    r = en.certify(s, delta=0.03, epsilon=0.1)
    p = r.table.frame["p_value"]
    k = r.n_rejected
    assert k >= 1 and (p.iloc[:k] <= 0.1).all()
    assert k == len(p) or p.iloc[k] > 0.1
    assert r.threshold == r.table.frame["threshold"].iloc[k - 1]


@pytest.mark.slow
def test_risk_control_holds_in_simulation():
    """Over many cal draws from one population, the chosen threshold's true risk exceeds delta in at most about
    epsilon of them."""
    pop = en.staged(exit_cache(200_000, 2))
    delta, eps, fails, trials = 0.04, 0.2, 0, 60
    rng = np.random.default_rng(3)
    for _ in range(trials):
        r = en.certify(pop.subset(rng.integers(0, pop.n_examples, 400)), delta=delta, epsilon=eps)
        stop = pop.stage_of(r.threshold)
        fails += pop.loss[np.arange(pop.n_examples), stop].mean() > delta
    assert fails / trials <= eps + 0.1  # binomial slack for 60 trials


def test_risk_refuses_small_cal_sets_and_bad_args():
    assert en.min_examples(0.01, 0.05) == 299
    assert (1 - 0.01) ** 299 <= 0.05 < (1 - 0.01) ** 298
    s = en.staged(exit_cache(298, 0))
    with pytest.raises(ValueError, match="needs at least 299 examples"):
        en.choose(s, rule="risk", delta=0.01, epsilon=0.05)
    with pytest.raises(ValueError, match="delta"):
        en.certify(s, delta=0)
    with pytest.raises(ValueError, match="epsilon"):
        en.certify(s, epsilon=1.5)
    with pytest.raises(ValueError, match="needs at least 200 cal examples"):
        en.choose(en.staged(exit_cache(150, 0)), rule="drop", max_drop=0.005)


def test_hoeffding_bentkus_p_value():
    from toolkit.analysis.engine.risk import hb_p_value

    n, delta = 400, 0.1
    for r in (0.0, 0.02, 0.05, 0.09, 0.1, 0.3):
        a = min(r, delta)
        h = (a * np.log(a / delta) if a > 0 else 0.0) + (1 - a) * np.log((1 - a) / (1 - delta))
        want = min(np.exp(-n * h), np.e * binom.cdf(np.ceil(n * r), n, delta), 1.0)
        assert hb_p_value(r, n, delta) == pytest.approx(want)
    # a [0, 1] loss is controlled in simulation too (generation with sentence BLEU)
    s = en.staged(gen_cache(400, seed=4, exact=False), score="max_prob")
    assert s.loss_kind == "bounded" and (s.loss > 0).any() and (s.loss < 1).any()
    t = en.risk_table(s, delta=0.2).frame
    np.testing.assert_allclose(t["p_value"], hb_p_value(t["risk"], 400, 0.2))


# ------------------------------------------------------------------------------------------ choose / evaluate
def test_choose_rules_pick_what_they_say():
    cal, test = en.staged(exit_cache(600, 4)), en.staged(exit_cache(600, 5, "test"))
    curve = en.sweep(cal).frame
    op = en.choose(cal, rule="drop", max_drop=0.02)
    ok = curve[curve["accuracy"] >= curve["accuracy"].iloc[0] - 0.02 - 1e-12]
    assert op.threshold == ok.loc[ok["flops"].idxmin(), "threshold"] and op.cal.drop("accuracy") <= 0.02 + 1e-12
    ev = op.evaluate(test)
    stop = brute_stops(test.confidence, op.threshold)
    assert ev["accuracy"] == pytest.approx(test.stats[np.arange(600), stop][:, 0].sum() / 600)
    b = en.choose(cal, rule="budget", budget=2.0)
    fast = curve[curve["speedup"] >= 2.0 - 1e-12]
    assert b.cal.speedup >= 2.0 and b.cal["accuracy"] == pytest.approx(fast["accuracy"].max())
    r = en.choose(cal, rule="risk", delta=0.05, epsilon=0.1)
    assert r.threshold == en.certify(cal, delta=0.05, epsilon=0.1).threshold
    with pytest.raises(ValueError, match="not test"):
        en.choose(test)
    with pytest.raises(ValueError, match="score='max_prob'"):
        op.evaluate(en.staged(exit_cache(600, 5, "test"), score="margin"))
    with pytest.raises(ValueError, match="stages"):
        op.evaluate(en.staged(random_cache(50, 3, 2)))
    with pytest.raises(ValueError, match="unknown rule"):
        en.choose(cal, rule="best")
    assert set(op.to_frame().columns) >= {"rule", "metric", "threshold", "reference", "cal_speedup"}


def test_crossfit_chooses_on_one_half_and_evaluates_on_the_other():
    s = en.staged(exit_cache(400, 6, "test"))
    a, b = en.halves(s.example_ids, seed=3, strata=s.strata)
    assert s.strata is not None  # classification views stratify the halves by label
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 400
    # by example id, not row order
    perm = np.random.default_rng(0).permutation(400)
    a2, _ = en.halves(s.example_ids[perm], seed=3, strata=s.strata[perm])
    assert set(s.example_ids[perm][a2]) == set(s.example_ids[a])
    cf = en.crossfit(s, rule="drop", max_drop=0.02, seed=3, n_boot=50)
    from toolkit.analysis.engine.choose import _choose

    op_a = _choose(s.subset(a), rule="drop", metric="accuracy", max_drop=0.02, delta=0.01, epsilon=0.05, budget=None)
    assert op_a.threshold == cf.folds[0].threshold
    stops = np.empty(400, int)
    stops[b] = s.subset(b).stage_of(cf.folds[0].threshold)
    stops[a] = s.subset(a).stage_of(cf.folds[1].threshold)
    whole = en.evaluation_at_stages(s, stops)
    assert cf.combined["accuracy"] == pytest.approx(whole["accuracy"])
    assert cf.combined.speedup == pytest.approx(whole.speedup)
    lo, hi = cf.combined.intervals["accuracy"]
    assert lo <= cf.combined["accuracy"] <= hi
    assert len(cf.to_frame()) == 3



# ------------------------------------------------------------------------------------------ stops of a point
def brute_crossfit_stops(conf, half_b, t_chosen_on_a, t_chosen_on_b):
    """Cross-fitted stage of each example, one example at a time: an example of half B stops by the threshold
    chosen on half A, any other by the one chosen on half B."""
    in_b = set(half_b.tolist())
    N, E = conf.shape
    out = []
    for n in range(N):
        t = t_chosen_on_a if n in in_b else t_chosen_on_b
        out.append(next((e for e in range(E - 1) if conf[n, e] >= t), E - 1))
    return np.array(out)


def _split_pair(N, E, C, seed, ties):
    """Views of a cal and a test split of one toy task (the same models, stages and score)."""
    from dataclasses import replace

    test = random_cache(N, E, C, seed, ties=ties)
    cal = random_cache(N + 7, E, C, seed + 1, ties=ties)
    return replace(cal, meta={**cal.meta, "split": "cal"}), test


@settings(max_examples=30, deadline=None)
@given(st.integers(24, 90), st.integers(2, 5), st.integers(2, 3), st.integers(0, 10_000), st.booleans(),
       st.sampled_from(["max_prob", "margin", "entropy"]), st.integers(0, 50), st.booleans(), st.sampled_from([0, 7]))
def test_stops_of_a_threshold_a_point_and_a_crossfit_equal_a_brute_force_loop(N, E, C, seed, ties, score, cf_seed,
                                                                              clustered, n_boot):
    from dataclasses import replace

    cal_cache, test_cache = _split_pair(N, E, C, seed, ties)
    cal, test = en.staged(cal_cache, score=score), en.staged(test_cache, score=score)
    if clustered:  # e.g. a token's prompt: whole clusters go to one half
        test = replace(test, clusters=np.arange(N) // 3)
    thr = float(np.quantile(test.confidence, 0.4))
    np.testing.assert_array_equal(test.stage_of(thr), brute_stops(test.confidence, thr))
    op = en.choose(cal, rule="drop", max_drop=0.1)
    np.testing.assert_array_equal(op.stops(test), brute_stops(test.confidence, op.threshold))
    cf = en.crossfit(test, rule="drop", max_drop=0.25, seed=cf_seed, n_boot=n_boot)
    _, half_b = en.halves(test.example_ids, seed=cf_seed, strata=test.strata, clusters=test.clusters)
    want = brute_crossfit_stops(test.confidence, half_b, cf.folds[0].threshold, cf.folds[1].threshold)
    got = cf.stops(test)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (N,) and got.dtype.kind == "i"
    whole = en.evaluation_at_stages(test, got)  # the cross-fit's combined point, recomputed from its stops
    assert whole["accuracy"] == pytest.approx(cf.combined["accuracy"], abs=1e-12)
    assert whole.flops == pytest.approx(cf.combined.flops, rel=1e-12)


def test_crossfit_stops_refuse_a_view_it_was_not_fit_on():
    from dataclasses import replace

    v = en.staged(random_cache(120, 4, 3, seed=1))
    cf = en.crossfit(v, rule="drop", max_drop=0.05, seed=2, n_boot=0)
    st_v = cf.stops(v)
    with pytest.raises(ValueError, match="fit on 120 examples, the view has 60"):
        cf.stops(v.subset(np.arange(60)))
    perm = np.random.default_rng(0).permutation(120)
    with pytest.raises(ValueError, match=r"another row order; align it first: view.align\(crossfit.example_ids\)"):
        cf.stops(v.subset(perm))
    np.testing.assert_array_equal(cf.stops(v.subset(perm).align(cf.example_ids)), st_v)
    other = en.staged(random_cache(120, 4, 3, seed=9))  # same default ids 0..119, other labels
    with pytest.raises(ValueError, match="strata differ from the view this cross-fit was fit on"):
        cf.stops(other)
    renamed = replace(v, example_ids=np.array([f"x{i}" for i in range(120)]))
    with pytest.raises(ValueError, match=r"example ids differ .*row 0: 'x0'"):
        cf.stops(renamed)
    with pytest.raises(ValueError, match="the view has clusters"):
        cf.stops(replace(v, clusters=np.arange(120) // 2))
    with pytest.raises(ValueError, match="score='max_prob'"):
        cf.stops(en.staged(random_cache(120, 4, 3, seed=1), score="margin"))
    bare = en.CrossFit(cf.folds, cf.evaluations, cf.combined, cf.seed)
    with pytest.raises(ValueError, match="rebuild it with engine.crossfit"):
        bare.stops(v)


def test_operating_point_stops_check_the_view_as_evaluate_does():
    cal = en.staged(exit_cache(300, 4))
    op = en.choose(cal, rule="drop", max_drop=0.02)
    with pytest.raises(ValueError, match="stages"):
        op.stops(en.staged(random_cache(50, 3, 2)))
    with pytest.raises(ValueError, match="score='max_prob'"):
        op.stops(en.staged(exit_cache(300, 5, "test"), score="margin"))


# ------------------------------------------------------------------------------------------ compare
@pytest.mark.parametrize("C, ties, metric", [(2, True, "accuracy"), (2, False, "f1"), (3, True, "mcc"),
                                              (3, False, "accuracy")])
def test_frontier_at_budgets_equals_sweeps_of_resamples(C, ties, metric):
    # frontier_at_budgets evaluates the metric only where the outcome changes; every row of each resample's sweep
    # here (ties: groups of equal thresholds; several classes: records that move between equal predictions)
    s = en.staged(random_cache(90, 4, C, seed=7, ties=ties, metric=metric))
    w = en.resample_weights(90, n_boot=15, seed=1)
    budgets = (1.2, 1.5, 2.0, 3.0)
    got = en.frontier_at_budgets(s, w, budgets=budgets, reference_cost=s.reference_cost, metric=metric)
    for i, counts in enumerate(w.astype(int)):
        sub = s.subset(np.repeat(np.arange(90), counts))
        df = en.sweep(sub).frame
        for j, k in enumerate(budgets):
            ok = df[df["flops"] <= sub.reference_cost.mean() / k + 1e-9]
            want = ok[metric].max() if len(ok) else np.nan
            np.testing.assert_allclose(got[i, j], want)


def test_compare_pairs_examples_and_resamples_seeds():
    c = random_cache(150, 4, 2, seed=8)
    s = en.staged(c)
    same = en.compare(s, s, budgets=(1.5, 2.0), n_boot=100).frame
    assert (same["difference"] == 0).all() and (same["lo"] == 0).all() and (same["hi"] == 0).all()
    other = en.staged(c, score="margin")
    cmp = en.compare(s, other, budgets=(1.5, 2.0), n_boot=200, seed=1).frame
    assert cmp["lo"].le(cmp["difference"] + 1e-12).all() and cmp["difference"].le(cmp["hi"] + 1e-12).all()
    # two training seeds per policy: the point estimate averages them; rows are aligned by example id
    c9 = random_cache(150, 4, 2, seed=9)  # another training seed: other logits on the same examples and labels
    c9 = type(c9)(**{**c9.__dict__, "labels": c.labels, "meta": c.meta})
    seeds = [s, en.staged(c9).subset(np.arange(150)[::-1])]
    two = en.compare(seeds, other, budgets=(2.0,), n_boot=100).frame
    want = np.mean([en.frontier_at_budgets(v.align(s.example_ids), np.ones((1, 150)), budgets=[2.0],
                                           reference_cost=s.reference_cost, metric="accuracy")[0, 0] for v in seeds])
    assert two["a"].iloc[0] == pytest.approx(want) and two["seeds"].iloc[0] == "2 / 1"
    ref_other = en.staged(c, reference="stage2")
    with pytest.raises(ValueError, match="different references"):
        en.compare(s, ref_other)
    assert len(en.compare(s, ref_other, reference="b", n_boot=20)) == 3


@pytest.mark.parametrize("C, metric, max_drop", [(2, "accuracy", 0.0), (3, "mcc", 0.02), (2, "f1", 0.01)])
def test_speedup_at_drop_equals_summaries_of_resampled_sweeps(C, metric, max_drop):
    s = en.staged(random_cache(80, 4, C, seed=11), metrics=("accuracy", "mcc") if C > 2 else None)
    w = np.vstack([np.ones((1, 80)), en.resample_weights(80, n_boot=12, seed=3)])
    got = en.speedup_at_drop(s, w, max_drop=max_drop, reference_cost=s.reference_cost, metric=metric)
    for i, counts in enumerate(w.astype(int)):
        sub = s.subset(np.repeat(np.arange(80), counts))
        want = en.summarize(en.sweep(sub), metric=metric, max_drop=max_drop).speedup_at_drop_upper_bound
        assert got[i] == pytest.approx(want)


def test_compare_speedups_pairs_resamples():
    c = random_cache(120, 3, 2, seed=12)
    a, b = en.staged(c, score="max_prob"), en.staged(c, score="entropy")
    r = en.compare_speedups(a, a, n_boot=50).frame  # a policy against itself: no difference in any resample
    assert r["difference"].iloc[0] == 0 and r["lo"].iloc[0] == 0 and r["hi"].iloc[0] == 0
    r = en.compare_speedups(a, b, max_drop=0.01, n_boot=200, names=("max-prob", "entropy")).frame
    want = [en.summarize(en.sweep(v), max_drop=0.01).speedup_at_drop_upper_bound for v in (a, b)]
    assert r["max-prob"].iloc[0] == pytest.approx(want[0]) and r["entropy"].iloc[0] == pytest.approx(want[1])
    assert r["lo"].iloc[0] <= r["difference"].iloc[0] <= r["hi"].iloc[0]
    with pytest.raises(ValueError, match="max_drop"):
        en.compare_speedups(a, b, max_drop=-0.1)


def test_generation_views_run_every_engine_function():
    cal, test = gen_cache(400, seed=1), gen_cache(400, seed=2)
    test.meta["split"] = "test"
    vc, vt = en.staged(cal, score="max_prob"), en.staged(test, score="max_prob")
    op = en.choose(vc, rule="risk", metric="exact_match", delta=0.1, epsilon=0.1)
    ev = op.evaluate(vt, n_boot=50)
    assert ev.reference == "super alone" and "exact_match" in ev.intervals
    en.bootstrap_bands(vt, en.threshold_grid(vt, n=10), n_boot=30)
    en.compare(vt, en.staged(test, score="energy"), metric="exact_match", n_boot=30)
    en.crossfit(vt, metric="exact_match", max_drop=0.05, n_boot=20)
    o = en.oracle(vt)
    a, b = (test.models[m].quality["exact_match"] for m in ("swift", "super"))
    assert o["exact_match"] == pytest.approx(np.maximum(a, b).mean()) and o.escalated == pytest.approx((b > a).mean())


def test_results_are_frozen_tables_with_html():
    s = en.staged(random_cache(40, 3, 2))
    cv = en.sweep(s)
    for r in (cv, en.summarize(cv), en.choose(en.staged(exit_cache(400, 1)), max_drop=0.05), en.oracle(s),
              en.bootstrap_bands(s, [np.inf, 0.8], n_boot=10)):
        assert isinstance(r.to_frame(), pd.DataFrame) and "<table" in r._repr_html_()
    with pytest.raises(AttributeError):
        cv.metric = "f1"
    f = cv.to_frame()
    f.loc[0, "accuracy"] = -1
    assert cv.frame.loc[0, "accuracy"] != -1  # to_frame hands out a copy
    import json

    json.dumps(en.jsonable(en.summarize(cv).to_dict() | {"x": float("nan")}), allow_nan=False)


def test_bootstrap_statistic_brackets_and_repeats():
    c = random_cache(300, 4, 2, seed=2)
    v, lo, hi = en.bootstrap_statistic(lambda x: float(x.correct[:, -1].mean()), c, n_boot=50)
    assert lo <= v <= hi and v == c.correct[:, -1].mean()
    d = en.bootstrap_statistic(lambda x: {"a": float(x.correct[:, 0].mean())}, c, n_boot=50, seed=3)
    assert d == en.bootstrap_statistic(lambda x: {"a": float(x.correct[:, 0].mean())}, c, n_boot=50, seed=3)


def test_a_new_cache_kind_is_one_adapter():
    """Per-token exits of a toy LLM cache (one example per token, stages = layers, outcome = agreement with the
    last layer) plug in with one registered function, and every engine function runs on them."""
    from dataclasses import dataclass

    @dataclass
    class ToyTokens:
        conf: np.ndarray  # [S, L] exit confidences per generated token and layer
        agree: np.ndarray  # [S, L] top-1 equals the last layer's

    @en.staged.register(ToyTokens)
    def _(cache, *, split="cal"):
        S, L = cache.agree.shape
        a = cache.agree.astype(float)
        return en.Staged(confidence=cache.conf, cost=np.broadcast_to(np.arange(1.0, L + 1), (S, L)).copy(),
                         stats=a[..., None], metrics=en.MeanMetrics(("agreement",)),
                         reference_cost=np.full(S, float(L)), reference=f"last layer (L{L})", loss=1 - a,
                         stage_names=tuple(f"L{i + 1}" for i in range(L)), layers=np.arange(1.0, L + 1),
                         model_index=np.zeros(L, int), example_ids=np.array([f"t{i}" for i in range(S)]),
                         metric="agreement", quality=a, meta={"split": split})

    rng = np.random.default_rng(0)
    conf = rng.uniform(size=(500, 6))
    agree = rng.uniform(size=(500, 6)) < np.linspace(0.3, 1.0, 6) * (0.5 + conf)
    agree[:, -1] = True
    cal, test = en.staged(ToyTokens(conf, agree)), en.staged(ToyTokens(conf[::-1].copy(), agree[::-1].copy()),
                                                              split="test")
    curve = en.sweep(cal).frame
    stop = brute_stops(conf, curve["threshold"].iloc[5])
    assert curve["agreement"].iloc[5] == pytest.approx(agree[np.arange(500), stop].mean())
    op = en.choose(cal, rule="risk", metric="agreement", delta=0.1, epsilon=0.1)
    assert op.evaluate(test).reference == "last layer (L6)"
    en.bootstrap_bands(test, en.threshold_grid(test, n=5), n_boot=20)
    en.compare(cal, cal, metric="agreement", budgets=(1.5,), n_boot=20)
    en.crossfit(test, metric="agreement", max_drop=0.05, n_boot=10)


def test_views_of_bootstrap_resamples_repeat_ids_but_cannot_be_aligned():
    c = random_cache(20, 3, 2)
    rows = np.array([0, 0, 5, 7, 7, 7])
    v = en.staged(c.subset(rows))  # a resampled cache (what bootstrap_statistic hands to a statistic)
    assert v.n_examples == 6 and en.sweep(v).frame["accuracy"].iloc[0] == c.correct[rows, -1].mean()
    with pytest.raises(ValueError, match="example ids repeat"):
        v.align(v.example_ids)


@pytest.mark.parametrize("rule,kw", [("budget", {"budget": 1.5}), ("drop", {"max_drop": 0.02})])
def test_compare_crossfit_is_each_policys_crossfit_paired(rule, kw):
    """Each side's point is engine.crossfit's combined evaluation; each resample is the same metric recomputed by
    hand from the cross-fitted stops with that resample's example counts, for both policies alike."""
    c = random_cache(200, 4, 3, seed=5)
    a = en.staged(c, score="max_prob")
    b = en.staged(c, score="margin")
    cmp = en.compare_crossfit(a, b, rule=rule, n_boot=50, seed=3, names=("mp", "mg"), **kw).frame
    for side, v in (("mp", a), ("mg", b)):
        cf = en.crossfit(v, rule=rule, seed=3, n_boot=0, **kw).combined
        assert cmp.loc[0, side] == pytest.approx(cf.metrics["accuracy"], abs=1e-12)
        assert cmp.loc[1, side] == pytest.approx(cf.speedup, rel=1e-12)
    # by hand: thresholds chosen per half, stops on the other half, one shared resample of examples
    h = en.halves(a.example_ids, seed=3, strata=a.strata)
    w = en.resample_weights(a.n_examples, n_boot=50, seed=3)
    diffs = []
    for r in range(50):
        acc = []
        for v in (a, b):
            right = np.empty(v.n_examples)
            folds = en.crossfit(v, rule=rule, seed=3, n_boot=0, **kw).folds  # chosen on half A, then on B
            for fold, on in zip(folds, h[::-1]):
                t = fold.threshold
                right[on] = c.logits[on, v.subset(on).stage_of(t)].argmax(-1) == c.labels[on]
            acc.append((w[r] * right).sum() / w[r].sum())
        diffs.append(acc[0] - acc[1])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert cmp.loc[0, "lo"] == pytest.approx(lo, abs=1e-12) and cmp.loc[0, "hi"] == pytest.approx(hi, abs=1e-12)


# ------------------------------------------------------------------------------------------ confident decisions
def _brute_confident(c, e, thr, metric="accuracy"):
    """Independent: the metric on the examples whose max-probability at stage e is >= thr, and their share."""
    p = np.exp(c.logits[:, e] - c.logits[:, e].max(-1, keepdims=True))
    conf = (p / p.sum(-1, keepdims=True)).max(-1)
    keep = [n for n in range(c.n_examples) if conf[n] >= thr]
    pred = c.logits[keep, e].argmax(-1)
    return task_metric(pred, c.labels[keep], metric=metric, n_classes=c.n_classes), len(keep) / c.n_examples


@pytest.mark.parametrize("C, metric", [(2, "accuracy"), (2, "f1"), (3, "mcc")])
def test_compare_confident_equals_brute_force_and_hand_resamples(C, metric):
    ca, cb = random_cache(150, 3, C, seed=21, metric=metric), random_cache(150, 4, C, seed=22, metric=metric)
    cb.example_ids[:] = ca.example_ids
    cb.labels[:] = ca.labels
    a, b = en.staged(ca), en.staged(cb)
    r = en.compare_confident(a, b, threshold=0.6, stages=(0, "stage3"), metric=metric, n_boot=60, seed=4,
                             names=("small", "big")).frame
    for side, c, e in (("small", ca, 0), ("big", cb, 2)):
        m, share = _brute_confident(c, e, 0.6, metric)
        assert r.loc[0, side] == pytest.approx(m, abs=1e-12) and r.loc[1, side] == pytest.approx(share, abs=1e-12)
    if metric == "accuracy":  # the resamples by hand: the same example counts for both sides
        w = en.resample_weights(150, n_boot=60, seed=4)
        acc = []
        for c, e in ((ca, 0), (cb, 2)):
            sel = stage_confidence(c.logits, score="max_prob")[:, e] >= 0.6
            ok = sel & (c.logits[:, e].argmax(-1) == c.labels)
            acc.append((w @ ok) / (w @ sel))
        lo, hi = np.quantile(acc[0] - acc[1], [0.025, 0.975])
        assert r.loc[0, "lo"] == pytest.approx(lo, abs=1e-12) and r.loc[0, "hi"] == pytest.approx(hi, abs=1e-12)


def test_compare_confident_seeds_average_and_self_comparison_is_zero():
    runs = [random_cache(120, 3, 2, seed=s) for s in (30, 31)]
    for c in runs[1:]:
        c.example_ids[:] = runs[0].example_ids
        c.labels[:] = runs[0].labels
    views = [en.staged(c) for c in runs]
    r = en.compare_confident(views, views[0], threshold=0.7, stages=(1, 1), n_boot=40).frame
    want = np.mean([_brute_confident(c, 1, 0.7)[0] for c in runs])
    assert r.loc[0, "a"] == pytest.approx(want, abs=1e-12) and r.loc[0, "seeds"] == "2 / 1"
    same = en.compare_confident(views[0], views[0], threshold=0.7, n_boot=40).frame
    assert (same[["difference", "lo", "hi"]].to_numpy() == 0).all()
    none = en.compare_confident(views[0], views[1], threshold=1.5, n_boot=20).frame  # no example is that confident
    assert none.loc[0, ["a", "difference", "lo", "hi"]].isna().all() and none.loc[1, "a"] == 0


def _brute_coverage(c, e, q, counts):
    """Independent: the accuracy of the most confident share q of a resample (examples repeated by their counts,
    taken group by group of equal max-probability from the top; the boundary group answered in part, each of its
    examples in the same proportion), and the lowest confidence answered."""
    conf = en.staged(c).confidence[:, e]  # the same (float32) ties as the engine
    right = c.logits[:, e].argmax(-1) == c.labels
    want, used, got, lowest = q * counts.sum(), 0.0, 0.0, None
    for level in sorted(set(conf[counts > 0].tolist()), reverse=True):
        members = [n for n in range(c.n_examples) if conf[n] == level and counts[n] > 0]
        g = sum(counts[n] for n in members)
        take = min(g, want - used)
        if take <= 1e-12:
            break
        got += take / g * sum(counts[n] * right[n] for n in members)
        used += take
        lowest = level
    return got / used, lowest


@pytest.mark.parametrize("q", [0.25, 0.5, 0.37, 1.0])
def test_compare_confident_at_coverage_equals_brute_force(q):
    ca, cb = random_cache(90, 3, 2, seed=41), random_cache(90, 2, 2, seed=42)
    cb.example_ids[:] = ca.example_ids
    cb.labels[:] = ca.labels
    r = en.compare_confident(en.staged(ca), en.staged(cb), coverage=q, stages=(1, -1), n_boot=30, seed=2).frame
    assert r.loc[0, "rule"] == f"coverage {q:g}"
    w = en.resample_weights(90, n_boot=30, seed=2).astype(int)
    diffs = []
    for counts in np.vstack([np.ones((1, 90), int), w]):
        (ma, ca_low), (mb, cb_low) = _brute_coverage(ca, 1, q, counts), _brute_coverage(cb, 1, q, counts)
        diffs.append(ma - mb)
        if len(diffs) == 1:
            assert r.loc[0, "a"] == pytest.approx(ma, abs=1e-12) and r.loc[0, "b"] == pytest.approx(mb, abs=1e-12)
            assert r.loc[1, "a"] == pytest.approx(ca_low, abs=0) and r.loc[1, "b"] == pytest.approx(cb_low, abs=0)
    lo, hi = np.quantile(diffs[1:], [0.025, 0.975])
    assert r.loc[0, "lo"] == pytest.approx(lo, abs=1e-12) and r.loc[0, "hi"] == pytest.approx(hi, abs=1e-12)


@pytest.mark.parametrize("kw, match", [({"threshold": float("nan")}, "threshold"), ({"threshold": True}, "threshold"),
                                       ({}, "exactly one"), ({"threshold": 0.5, "coverage": 0.5}, "exactly one"),
                                       ({"coverage": 0.0}, "coverage"), ({"coverage": 1.5}, "coverage"),
                                       ({"threshold": 0.5, "stages": (0,)}, "one stage per side"),
                                       ({"threshold": 0.5, "stages": (0, "L9")}, "no stage 'L9'"),
                                       ({"threshold": 0.5, "stages": (5, 0)}, "not a stage name or a position")])
def test_compare_confident_rejects_bad_options(kw, match):
    v = en.staged(random_cache(30, 3, 2, seed=1))
    with pytest.raises(ValueError, match=match):
        en.compare_confident(v, v, **kw)


# ------------------------------------------------- compare_confident: hostile inputs (independent review, 9a1fd62)
def _toy_view(conf, right, *, clusters=None, ids=None):
    """A hand-built view: confidences ``[N, E]``, 0/1 ``right`` ``[N, E]`` (accuracy), unit costs."""
    N, E = conf.shape
    return en.Staged(confidence=conf, cost=np.cumsum(np.ones((N, E)), 1), stats=np.asarray(right, float)[..., None],
                     metrics=en.MeanMetrics(("accuracy",)), reference_cost=np.full(N, float(E)), reference="last",
                     loss=None, stage_names=tuple(f"s{e}" for e in range(E)), layers=np.arange(1.0, E + 1),
                     model_index=np.zeros(E, int), clusters=clusters,
                     example_ids=np.array([f"x{n}" for n in range(N)]) if ids is None else ids)


@pytest.mark.parametrize("kw", [{"coverage": 0.5}, {"threshold": 0.7}])
def test_compare_confident_review_one_view_as_both_sides_keeps_each_sides_stage(kw):
    """Two exits of one model (the same view object passed as a and b): each side is ranked at its own stage. The
    old lookup by id(view) gave both sides b's stage: difference 0 [0, 0]."""
    c = random_cache(200, 3, 2, seed=1)
    v = en.staged(c)
    same = en.compare_confident(v, v, stages=(0, 2), n_boot=50, **kw).frame
    twin = en.compare_confident(v, en.staged(c), stages=(0, 2), n_boot=50, **kw).frame
    cols = ["a", "b", "difference", "lo", "hi"]
    np.testing.assert_allclose(same[cols].to_numpy(float), twin[cols].to_numpy(float), rtol=0, atol=1e-15)
    assert same.loc[0, "difference"] != 0
    runs_c = [random_cache(200, 3, 2, seed=s) for s in (1, 2)]
    runs_c[1].example_ids[:], runs_c[1].labels[:] = runs_c[0].example_ids, runs_c[0].labels
    views = [en.staged(x) for x in runs_c]
    runs = en.compare_confident(views, views, stages=(0, 2), n_boot=50, same_runs=True, **kw).frame
    assert runs.loc[0, "a"] == pytest.approx(np.mean([en.compare_confident(u, u, stages=(0, 2), n_boot=2, **kw)
                                                      .frame.loc[0, "a"] for u in views]), abs=1e-12)
    assert runs.loc[0, "a"] != runs.loc[0, "b"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_compare_confident_review_refuses_non_finite_confidence_at_the_stage(bad):
    """A view's last column may hold placeholders (Staged never validates it); ranking it would silently put NaN
    last and inf first."""
    rng = np.random.default_rng(0)
    conf, right = rng.uniform(size=(40, 2)), rng.integers(0, 2, (40, 2))
    broken = conf.copy()
    broken[::3, 1] = bad
    for kw in ({"coverage": 0.5}, {"threshold": 0.5}):
        with pytest.raises(ValueError, match="non-finite confidences at stage 's1'"):
            en.compare_confident(_toy_view(broken, right), _toy_view(conf, right), stages=(-1, -1), n_boot=10, **kw)
    en.compare_confident(_toy_view(broken, right), _toy_view(conf, right), coverage=0.5, n_boot=10)  # stage 0: fine


@pytest.mark.parametrize("q, N", [(0.07, 100), (0.57, 100), (0.29, 100), (0.15, 20)])
def test_compare_confident_review_boundary_is_the_last_whole_example(q, N):
    """q * N one rounding off a whole count (0.07 * 100 = 7.000000000000001) answered a 1e-15 sliver of the next
    example: 'lowest confidence answered' was the (k+1)-th confidence instead of the k-th."""
    conf = np.linspace(1, 0, N)[:, None] * np.ones((1, 2))
    r = en.compare_confident(_toy_view(conf, np.ones((N, 2))), _toy_view(conf * 0.5, np.ones((N, 2))), coverage=q,
                             n_boot=5).frame
    k = round(q * N)
    assert r.loc[1, "a"] == conf[k - 1, 0] and r.loc[1, "b"] == conf[k - 1, 0] * 0.5


def test_compare_confident_review_refuses_names_that_are_result_columns():
    """names=('rule', 'b') silently overwrote the rule column with a's values (and 'difference' the difference)."""
    v = en.staged(random_cache(30, 3, 2, seed=1))
    for names in (("rule", "b"), ("a", "difference"), ("lo", "hi")):
        with pytest.raises(ValueError, match="is a column of the result"):
            en.compare_confident(v, v, coverage=0.5, n_boot=5, names=names)


@pytest.mark.parametrize("C, metric", [(2, "f1"), (2, "mcc"), (3, "mcc")])
def test_compare_confident_review_f1_mcc_with_a_fractional_boundary(C, metric):
    """F1 and MCC at coverage: the metric of the weighted confusion matrix, the boundary example weighted in part."""
    ca, cb = (random_cache(101, 3, C, seed=s, metric=metric, ties=False) for s in (5, 6))
    cb.example_ids[:] = ca.example_ids
    cb.labels[:] = ca.labels
    q = 0.33
    r = en.compare_confident(en.staged(ca), en.staged(cb), coverage=q, stages=(0, 1), metric=metric, n_boot=5).frame
    for c, e, side in ((ca, 0, "a"), (cb, 1, "b")):
        conf = stage_confidence(c.logits, score="max_prob")[:, e]
        wt = np.zeros(101)
        wt[np.argsort(-conf)] = np.clip(q * 101 - np.arange(101), 0, 1)
        cm = np.zeros((C, C))
        np.add.at(cm, (c.labels, c.logits[:, e].argmax(-1)), wt)  # [gold, predicted]
        if metric == "f1":
            want = 2 * cm[1, 1] / (2 * cm[1, 1] + cm[0, 1] + cm[1, 0])
        else:
            s, t, p = cm.sum(), cm.sum(1), cm.sum(0)
            want = (np.trace(cm) * s - t @ p) / np.sqrt((s * s - p @ p) * (s * s - t @ t))
        assert r.loc[0, side] == pytest.approx(want, abs=1e-12)


def test_compare_confident_review_resamples_clusters_whole():
    """Token views (clusters = prompts): the interval is the hand computation over cluster-resampled counts."""
    rng = np.random.default_rng(3)
    N, clusters = 60, np.repeat(np.arange(12), 5)
    conf_a, conf_b = rng.uniform(size=(N, 2)), rng.uniform(size=(N, 2))
    right_a, right_b = rng.integers(0, 2, (N, 2)), rng.integers(0, 2, (N, 2))
    a, b = _toy_view(conf_a, right_a, clusters=clusters), _toy_view(conf_b, right_b, clusters=clusters)
    r = en.compare_confident(a, b, threshold=0.5, n_boot=40, seed=7).frame
    w = en.resample_weights(N, n_boot=40, seed=7, clusters=clusters)
    assert (w[:, clusters == 0].std(1) == 0).all()  # a prompt's tokens share one count
    acc = [(w @ ((cf[:, 0] >= 0.5) * rt[:, 0])) / (w @ (cf[:, 0] >= 0.5)) for cf, rt in ((conf_a, right_a),
                                                                                     (conf_b, right_b))]
    lo, hi = np.nanquantile(acc[0] - acc[1], [0.025, 0.975])
    assert r.loc[0, "lo"] == pytest.approx(lo, abs=1e-12) and r.loc[0, "hi"] == pytest.approx(hi, abs=1e-12)


def test_compare_confident_review_ties_at_the_boundary_do_not_depend_on_row_order():
    N = 10
    conf, right = np.full((N, 2), 0.5), np.tile(np.array([1, 0] * 5)[:, None], (1, 2))  # every confidence equal
    perm = np.r_[np.arange(0, N, 2), np.arange(1, N, 2)]
    ids = np.array([f"x{n}" for n in range(N)])
    one = en.compare_confident(_toy_view(conf, right, ids=ids), _toy_view(conf, right, ids=ids), coverage=0.5,
                               n_boot=5).frame
    other = en.compare_confident(_toy_view(conf[perm], right[perm], ids=ids[perm]),
                                 _toy_view(conf[perm], right[perm], ids=ids[perm]), coverage=0.5, n_boot=5).frame
    assert one.loc[0, "a"] == other.loc[0, "a"] == right[:, 0].mean()
