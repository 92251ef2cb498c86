"""The LLM-as-classifier section of notebook 10 in the library, and the transfer flag of the LLM operating points.

``paired_stop_differences`` is checked against recomputing each resample by hand (examples repeated as the draw
counts them, clusters whole); ``llm_classifier`` reproduces the numbers notebook 10 printed from its former
hand-rolled bootstrap; ``calm_operating_points`` and ``self_speculative_points`` refuse an evaluation set of another
task than cal unless it is named a transfer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis import engine
from toolkit.analysis.llm import intervals as li
from toolkit.caches.classification import from_arrays

DATA = Path(__file__).resolve().parents[1] / "data"


def random_view(n, e, seed, clustered):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, e, 3))
    v = engine.staged(from_arrays(logits, rng.integers(0, 3, n), np.arange(1.0, e + 1)[None].repeat(n, 0)))
    return replace(v, clusters=rng.integers(0, max(1, n // 3), n)) if clustered else v


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), clustered=st.booleans())
def test_paired_stop_differences_equal_recomputing_each_resample(seed, clustered):
    n, e, B = 13, 3, 7
    v = random_view(n, e, seed, clustered)
    stops = np.random.default_rng(seed + 1).integers(0, e, n)
    r = li.paired_stop_differences(v, {"mixed minus first": (stops, 0)}, n_boot=B, seed=seed)
    a, b = r.draws["mixed minus first"]
    right = v.stats[:, :, 0].astype(np.float64)
    w = engine.resample_weights(n, n_boot=B, seed=seed, clusters=v.clusters)
    for row, counts in enumerate([np.ones(n), *w]):
        pick = np.repeat(np.arange(n), counts.astype(int))  # the resample, by hand
        assert a[row] == pytest.approx(right[pick, stops[pick]].mean(), abs=1e-12)
        assert b[row] == pytest.approx(right[pick, 0].mean(), abs=1e-12)
    lo, hi = np.quantile(a[1:] - b[1:], [0.025, 0.975])
    got = r.frame.iloc[0]
    assert (got.difference, got.lo, got["P(first better)"]) == pytest.approx((a[0] - b[0], lo, np.mean(a[1:] > b[1:])))
    assert got.hi == pytest.approx(hi)


def test_paired_stop_differences_refuse_bad_input():
    v = random_view(10, 3, 0, False)
    with pytest.raises(ValueError, match="stage indices in 0..2"):
        li.paired_stop_differences(v, {"x": (3, 0)}, n_boot=10)
    with pytest.raises(ValueError, match="stage indices"):
        li.paired_stop_differences(v, {"x": (np.zeros(10), 0)}, n_boot=10)  # floats are not stage indices
    with pytest.raises(ValueError, match="not one of the view's metrics"):
        li.paired_stop_differences(v, {"x": (1, 0)}, metric="bleu", n_boot=10)
    with pytest.raises(ValueError, match="n_boot"):
        li.paired_stop_differences(v, {"x": (1, 0)}, n_boot=1)


needs_data = pytest.mark.skipif(not (DATA / "sst2" / "smollm2_probe-test.parquet").exists(),
                                reason="shipped SmolLM2 classification caches absent")

# printed by notebook 10 (commit bda6e15) from its hand-rolled paired bootstrap, N_BOOT = 1000, SEED = 0
NOTEBOOK = {"sst2": [("cascade minus MiniLM-L6 alone", 0.000, 0.000, 0.000, 0.000),
                     ("SmolLM2 probe L17 minus MiniLM-L6 alone", -0.102, -0.142, -0.062, 0.000)],
            "agnews": [("cascade minus MiniLM-L6 alone", 0.000, 0.000, 0.000, 0.000),
                       ("SmolLM2 probe L28 minus MiniLM-L6 alone", -0.085, -0.125, -0.045, 0.000)]}


@needs_data
@pytest.mark.parametrize("task", ["sst2", "agnews"])
def test_llm_classifier_reproduces_the_notebooks_paired_differences(task):
    from toolkit.zoo import catalogue
    from toolkit.zoo.llm_classifier import llm_classifier

    r = llm_classifier(task, verbose=False)
    f = r.comparisons.to_frame()
    got = [(c, *np.round([d, lo, hi, p], 3)) for c, d, lo, hi, p in
           f[["comparison", "difference", "lo", "hi", "P(first better)"]].itertuples(index=False)]
    assert got == [(c, *np.round(x, 3)) for c, *x in NOTEBOOK[task]]
    # the notebook's former computation, exactly: weights [ones; resample_weights], correct-count draws
    n, v = r.n, r.cascade_view
    w = np.vstack([np.ones((1, n)), engine.resample_weights(n, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)])
    cc = v.stats[:, :, 0].astype(np.float64)
    stop = v.stage_of(r.cev.threshold)
    for (a, b), name in (((cc[np.arange(n), stop], cc[:, 0]), "cascade minus MiniLM-L6 alone"),
                         ((cc[:, 1], cc[:, 0]), f"SmolLM2 probe {r.layer} minus MiniLM-L6 alone")):
        old = li.difference(w @ a / n, w @ b / n)
        row = f[f.comparison == name].iloc[0]
        assert (row.difference, row.lo, row.hi, row["P(first better)"]) == \
            (old["difference"], old["lo"], old["hi"], old["p_better"])
    assert r.comparisons.draws[f"SmolLM2 probe {r.layer} minus MiniLM-L6 alone"][0][0] == \
        r.alone[f"SmolLM2 probe {r.layer} alone"]["accuracy"]
    near = r.near_chance()
    for k, v in near.items():
        assert v == sum(abs(a - r.chance) <= 0.05 for a in r.tables[k].accuracy.tolist()[:-1])
    ops = r.operating_points()
    assert ops.policy.iloc[-1].endswith("(upper bound)") and ops["accuracy lo"].iloc[:-1].notna().all()


def _token_caches():
    from toolkit.caches.tokens import concat_token_caches, load_llm_cache

    part = lambda p, s: load_llm_cache(DATA / "llm" / f"smollm2_{p}-{s}.parquet")  # noqa: E731
    sets = ("agnews_headline", "sst2_sentiment")
    return (concat_token_caches([part(p, "cal") for p in sets]), concat_token_caches([part(p, "test") for p in sets]),
            part("qnli_answer", "test"))


@pytest.mark.skipif(not (DATA / "llm" / "smollm2_qnli_answer-test.parquet").exists(),
                    reason="shipped SmolLM2 token caches absent")
def test_operating_points_refuse_an_undeclared_transfer_and_accept_a_declared_one():
    cal, test, qnli = _token_caches()
    assert li.check_transfer is not None
    sets = {"test": (test, li.prompt_weights(test.n_examples, n_boot=2, seed=0)),
            "qnli": (qnli, li.prompt_weights(qnli.n_examples, n_boot=2, seed=0))}
    calm = dict(checked_layers=[29], targets=(0.95,))
    spec = dict(shallow=(15, 4), draft_lengths=[1])
    for fn, opts in ((li.calm_operating_points, calm), (li.self_speculative_points, spec)):
        with pytest.raises(ValueError, match=r"evaluation set 'qnli'.*task \('agnews\+sst2' vs 'qnli'\)"):
            fn(cal, sets, "lens", **opts)
        with pytest.raises(ValueError, match="not evaluation sets"):
            fn(cal, sets, "lens", transfer=("qnli_answer",), **opts)
        out = fn(cal, sets, "lens", transfer=("qnli",), **opts)
        assert "qnli" in " ".join(out.frame["evaluated on" if fn is li.calm_operating_points else "pair"])
    with pytest.raises(ValueError, match="task"):  # test is of cal's task, so it is never a declared transfer
        li.calm_operating_points(cal, {"qnli": sets["qnli"]}, "lens", transfer=(), **calm)


def _two_family_cache(seed):
    from toolkit.testing import small_token_cache

    c, c2 = small_token_cache(N=8, seed=seed), small_token_cache(N=8, seed=seed, p_agree=(0.6, 0.7, 0.8, 0.95))
    c.top1["other"], c.stats["other"] = c2.top1["lens"], c2.stats["lens"]
    return c


def test_family_differences_are_paired_differences_of_each_points_draws_recomputed():
    cal, test = _two_family_cache(1), _two_family_cache(2)
    cal.meta["split"] = "cal"
    w = li.prompt_weights(test.n_examples, n_boot=40, seed=0)
    designs = {"two": [1, 3], "one": [2]}
    pts = {(f, d): li.calm_operating_points(cal, {"test": (test, w)}, f, checked_layers=k, targets=(0.6, 0.8))
           for f in ("other", "lens") for d, k in designs.items()}
    out = li.calm_family_differences({d: pts["other", d] for d in designs}, {d: pts["lens", d] for d in designs},
                                     target=0.8, on="test").to_frame()
    assert list(out.columns[:4]) == ["design", "other checks", "lens checks", "rule"]
    assert len(out) == 2 * (2 + 1)  # two statistics; global and per-layer rules at two layers, global at one
    for r in out.itertuples(index=False):
        draws = {}
        for f in ("other", "lens"):  # recompute each side's draws at its chosen threshold
            p = pts[f, r.design].point(r.rule, 0.8)
            th = np.array([p.threshold]) if r.rule == "global" else np.array([[*p.threshold, 0.0]])
            v = engine.staged(test, family=f, checked_layers=designs[r.design])
            draws[f] = li.calm_draws(v, th, w)[r.statistic][:, 0]
        want = li.difference(draws["other"], draws["lens"])
        assert (r[7], r.lo, r.hi) == pytest.approx((want["difference"], want["lo"], want["hi"]))
        assert (r.other, r.lens) == pytest.approx((draws["other"][0], draws["lens"][0]))
    sp = {f: li.self_speculative_points(cal, {"test": (test, w)}, f, shallow=(1, 2), draft_lengths=[1, 2])
          for f in ("other", "lens")}
    so = li.spec_family_differences(sp["other"], sp["lens"]).to_frame()
    assert list(so.columns) == ["pair", "statistic", "other - lens", "lo", "hi", "P(other > lens)"]
    for r in so.itertuples(index=False):
        d = {f: li.self_speculative_draws(test, f, *sp[f].point(r.pair)[["layer k", "draft length d"]].astype(int),
                                          w)[r.statistic] for f in ("other", "lens")}
        want = li.difference(d["other"], d["lens"])
        assert (r[2], r.lo, r.hi, r[5]) == pytest.approx((want["difference"], want["lo"], want["hi"],
                                                         want["p_better"]))


def test_best_single_layer_is_the_best_cal_speedup_of_the_one_layer_points():
    cal = _two_family_cache(3)
    cal.meta["split"] = "cal"
    w = li.prompt_weights(cal.n_examples, n_boot=2, seed=0)
    for f in ("lens", "other"):
        speed = [li.calm_operating_points(cal, {"cal": (cal, w)}, f, checked_layers=[k], targets=(0.7,))
                 .point("global", 0.7).speedup for k in range(1, cal.n_layers)]
        assert li.best_single_layer(cal, f, target=0.7) == int(np.argmax(speed)) + 1


@pytest.mark.skipif(not (DATA / "llm" / "smollm2_qnli_answer-test.parquet").exists(),
                    reason="shipped SmolLM2 token caches absent")
def test_smollm2_token_caches_are_the_concatenations_and_the_transfer_set():
    from toolkit.caches.identity import cache_identity
    from toolkit.zoo.llm_token_caches import smollm2_token_caches

    sm = smollm2_token_caches(DATA / "llm")
    cal, test, qnli = _token_caches()
    for got, want in ((sm.cal, cal), (sm.test, test), (sm.qnli, qnli)):
        np.testing.assert_array_equal(got.example_ids, want.example_ids)
        np.testing.assert_array_equal(got.tokens, want.tokens)
    assert [cache_identity(c)["task"] for c in (sm.cal, sm.test, sm.qnli)] == ["agnews+sst2", "agnews+sst2", "qnli"]
    t = sm.table()
    assert len(t) == 5 and t.tokens.sum() == sm.cal.n_tokens + sm.test.n_tokens + sm.qnli.n_tokens
    w = sm.weights(n_boot=3, seed=0)
    assert {k: v.shape for k, v in w.items()} == {"cal": (4, cal.n_examples), "test": (4, test.n_examples),
                                                   "qnli": (4, qnli.n_examples)}


def test_llm_plots_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.analysis.llm.exits import choose_self_speculative, self_speculative
    from toolkit.analysis.plots import llm as llm_plots

    cal, test = _two_family_cache(4), _two_family_cache(5)
    cal.meta["split"] = "cal"
    fams = ("lens", "other")
    w = li.prompt_weights(test.n_examples, n_boot=10, seed=0)
    fig = llm_plots.plot_layer_reliability(li.layer_reliability_table(test, fams, w), test, 2)
    assert len(fig.axes) == 4 and [len(a.lines) for a in fig.axes[:2]] == [2, 2]
    designs = {(f, "every layer"): [1, 2, 3] for f in fams}
    pts = {f: li.calm_operating_points(cal, {"test": (test, w)}, f, checked_layers=[1, 2, 3], targets=(0.6,))
           for f in fams}
    frame = pd.concat([p.frame.assign(design="every layer") for p in pts.values()], ignore_index=True)
    curves = {(f, "every layer"): engine.sweep(engine.staged(test, family=f, checked_layers=[1, 2, 3])).to_frame()
              for f in fams}
    fig = llm_plots.plot_calm_frontiers(curves, frame, designs, families=fams, targets=(0.6,))
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "CALM-style exit, every layer"
    cases = pd.concat([self_speculative(test, f, draft_lengths=[1, 4, 8]) for f in fams], ignore_index=True)
    chosen = {f: choose_self_speculative(cal, f, draft_lengths=[1, 4, 8]) for f in fams}
    fig = llm_plots.plot_self_speculative_grid(cases, chosen, families=fams)
    assert len(fig.axes[2].lines) == 2 * 3 + 1  # three draft lengths per family, and the line at 1
    plt.close("all")
