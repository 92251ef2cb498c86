"""Intervals over prompts for the LLM analyses: every resample equals recomputing the plain analysis on a cache
that holds each prompt as often as the resample draws it (brute force), and row 0 equals the plain analysis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis import engine
from toolkit.analysis.llm.exits import (
    acceptance_counts,
    calm_layer_thresholds,
    layer_confidence,
    layer_reliability,
    layer_reliability_curve,
    self_speculative,
    self_speculative_by_prompt,
)
from toolkit.analysis.llm.intervals import (
    calm_draws,
    difference,
    interval,
    layer_reliability_draws,
    layer_reliability_table,
    prompt_weights,
    self_speculative_draws,
)
from toolkit.analysis.metrics.calibration import confidence_ece
from toolkit.caches.tokens import LLMTokenCache
from toolkit.testing import small_token_cache


def repeat_prompts(c: LLMTokenCache, counts) -> LLMTokenCache:
    """The cache with prompt i present ``counts[i]`` times (ids made unique): a bootstrap resample, by hand."""
    counts = np.asarray(counts, dtype=int)
    pick = np.repeat(np.arange(c.n_examples), counts)
    spans = [np.arange(c.offsets[i], c.offsets[i + 1]) for i in pick]
    tok = np.concatenate(spans)
    return LLMTokenCache(example_ids=np.array([f"{c.example_ids[i]}#{j}" for j, i in enumerate(pick)]),
                         labels=c.labels[pick], n_prompt=c.n_prompt[pick], tokens=c.tokens[tok],
                         offsets=np.concatenate([[0], np.cumsum(c.lengths[pick])]),
                         top1={f: v[tok] for f, v in c.top1.items()}, stats={f: v[tok] for f, v in c.stats.items()},
                         temperatures=c.temperatures, model=c.model, families=c.families, stats_dtype=c.stats_dtype,
                         meta={"decoding": {"max_new_tokens": c.max_new_tokens[pick].tolist()}})


def test_prompt_weights_are_seeded_resamples_of_prompts():
    w = prompt_weights(7, n_boot=50, seed=3)
    assert w.shape == (51, 7) and (w[0] == 1).all() and (w.sum(1) == 7).all()
    np.testing.assert_array_equal(w, prompt_weights(7, n_boot=50, seed=3))
    assert not np.array_equal(w, prompt_weights(7, n_boot=50, seed=4))


def test_interval_and_difference_by_hand():
    assert interval([2.0, 1.0, 3.0], ci=0.5) == (2.0, 1.5, 2.5)
    d = difference([1.0, 0.0, 2.0, 4.0], [0.5, 1.0, 1.0, 1.0], ci=0.5)
    # a - b: data 0.5; resamples -1, 1, 3 -> quartiles 0 and 2; a > b in 2 of 3
    assert d == pytest.approx({"difference": 0.5, "lo": 0.0, "hi": 2.0, "p_better": 2 / 3})
    with pytest.raises(ValueError, match="row 0 the data"):
        interval([1.0])
    with pytest.raises(ValueError, match="one shape"):
        difference([1.0, 2.0], [1.0, 2.0, 3.0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_layer_reliability_draws_equal_recomputing_on_resampled_caches(seed):
    c = small_token_cache(N=7, seed=seed)
    w = prompt_weights(c.n_examples, n_boot=3, seed=seed)
    d = layer_reliability_draws(c, "lens", w)
    for r in range(len(w)):
        rel = layer_reliability(repeat_prompts(c, w[r]), "lens")
        np.testing.assert_allclose(d["agreement"][r], rel.agreement, rtol=1e-12)
        np.testing.assert_allclose(d["ece"][r], rel.ece, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="resamples, prompts"):
        layer_reliability_draws(c, "lens", w[:, :-1])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.5, 1.0))
def test_calm_draws_equal_recomputing_on_resampled_caches(seed, alpha):
    c = small_token_cache(N=8, seed=seed)
    s = engine.staged(c, family="lens", checked_layers=[1, 3])
    np.testing.assert_array_equal(s.clusters, c.example_index)
    target = engine.choose(s, rule="target", target=alpha, metric="agreement").threshold
    glob = np.array([target, 0.5, -np.inf])  # three global thresholds
    per_layer = calm_layer_thresholds(s, [alpha])  # one per-layer set
    w = prompt_weights(c.n_examples, n_boot=3, seed=seed)
    for th in (glob, per_layer):
        d = calm_draws(s, th, w)
        for r in range(len(w)):
            rep = engine.staged(repeat_prompts(c, w[r]), family="lens", checked_layers=[1, 3])
            want = [engine.evaluation(rep, t) for t in th]  # a global threshold, or one per-layer set, each
            np.testing.assert_allclose(d["agreement"][r], [e.metrics["agreement"] for e in want], rtol=1e-12)
            np.testing.assert_allclose(d["speedup"][r], [e.speedup for e in want], rtol=1e-12)
            np.testing.assert_allclose(d["mean_layers"][r], [e.mean_layers for e in want], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), dl=st.integers(1, 5))
def test_self_speculative_draws_equal_recomputing_on_resampled_caches(seed, k, dl):
    c = small_token_cache(N=6, seed=seed)
    per = self_speculative_by_prompt(c, "lens", k, dl)
    counts = acceptance_counts(c, "lens", k, dl)
    np.testing.assert_array_equal(per.blocks, [len(a) for a in counts])
    np.testing.assert_array_equal(per.accepted, [a.sum() for a in counts])
    np.testing.assert_array_equal(per.tokens, c.lengths)
    w = prompt_weights(c.n_examples, n_boot=3, seed=seed)
    d = self_speculative_draws(c, "lens", k, dl, w)
    for r in range(len(w)):
        want = self_speculative(repeat_prompts(c, w[r]), "lens", layers=[k], draft_lengths=[dl]).iloc[0]
        for col in ("speedup", "full_passes_per_token", "tokens_per_block"):
            assert d[col][r] == pytest.approx(want[col], rel=1e-12)
        if np.isfinite(want.acceptance):
            assert d["acceptance"][r] == pytest.approx(want.acceptance, rel=1e-12)


def test_layer_reliability_curve_counts_tokens_and_gives_the_ece():
    c = small_token_cache(N=20, seed=11)
    rel = layer_reliability(c, "lens")
    agree, conf = c.agreement("lens"), layer_confidence(c, "lens")
    for layer in (1, 3):
        rc = layer_reliability_curve(c, "lens", layer)
        assert rc["count"].sum() == c.n_tokens and len(rc) == 15
        nz = rc["count"] > 0
        ece = float((rc["count"][nz] * rc["gap"][nz].abs()).sum() / c.n_tokens)
        assert ece == pytest.approx(rel.ece[layer - 1]) and ece == pytest.approx(
            confidence_ece(conf[:, layer - 1], agree[:, layer - 1]))
        first = rc[nz].iloc[0]
        in_bin = (conf[:, layer - 1] >= first.lo) & (conf[:, layer - 1] < first.hi)
        assert first["count"] == in_bin.sum() and first.accuracy == pytest.approx(agree[in_bin, layer - 1].mean())
    with pytest.raises(ValueError, match="layer must lie"):
        layer_reliability_curve(c, "lens", c.n_layers + 1)


def test_layer_reliability_table_is_the_plain_analysis_with_prompt_intervals():
    c = small_token_cache(N=10, seed=3)
    c2 = small_token_cache(N=10, seed=3, p_agree=(0.6, 0.6, 0.8, 0.95))
    c.top1["other"], c.stats["other"] = c2.top1["lens"], c2.stats["lens"]
    w = prompt_weights(c.n_examples, n_boot=40, seed=1)
    t = layer_reliability_table(c, ("lens", "other"), w)
    plain = {f: layer_reliability(c, f) for f in ("lens", "other")}
    for f in ("lens", "other"):
        np.testing.assert_allclose(t.frame[f"{f} agreement"], plain[f].agreement)
        np.testing.assert_allclose(t.frame[f"{f} ece"], plain[f].ece)
        assert (t.frame[f"{f} agreement lo"] <= t.frame[f"{f} agreement"] + 1e-12).all()
    np.testing.assert_allclose(t.frame["other-lens agreement"], plain["other"].agreement - plain["lens"].agreement)
    assert t.mean_ece_difference["difference"] == pytest.approx(plain["other"].ece.mean() - plain["lens"].ece.mean())


def test_self_speculative_points_are_the_plain_rows_at_the_cal_choice():
    from toolkit.analysis.llm.exits import choose_self_speculative
    from toolkit.analysis.llm.intervals import self_speculative_points

    cal, test = small_token_cache(N=8, seed=5), small_token_cache(N=7, seed=6)
    cal.meta["split"] = "cal"
    w = prompt_weights(test.n_examples, n_boot=20, seed=0)
    pts = self_speculative_points(cal, {"test": (test, w)}, "lens", shallow=(1, 2), draft_lengths=[1, 2])
    choice = choose_self_speculative(cal, "lens", draft_lengths=[1, 2])
    r = pts.point("chosen on cal")
    want = self_speculative(test, "lens", layers=[choice.layer], draft_lengths=[choice.draft_length]).iloc[0]
    assert (r["layer k"], r["draft length d"]) == (choice.layer, choice.draft_length)
    for m in ("memory_bound_speedup", "speedup", "tokens_per_block"):
        assert r[m] == pytest.approx(want[m], rel=1e-12)
    best = pts.point("best on test itself (upper bound)")
    assert best.memory_bound_speedup == pytest.approx(self_speculative(test, "lens", draft_lengths=[1, 2])
                                                      .memory_bound_speedup.max(), rel=1e-12)
