"""The explorer's intervals, token text and predicted-time costs (issues 28 and 31), checked against the engine.

- Intervals: the test point's interval and the test curve's band are the engine's percentile bootstrap
  (``engine.evaluation(..., n_boot, seed)`` and ``engine.bootstrap_bands``, same draws), shown in the numbers table
  and drawn on the curve.
- Token text: an LLM token cache shows each token's text beside its id when given ``decode=`` or ``tokenizer=``
  (the analysis side never imports a tokenizer library; ``toolkit.nn.causal.tokenizer`` supplies one).
- Predicted time: ``profile=`` costs every view in predicted ms like ``toolkit sweep --profile`` and names the
  profile on the axis, in the numbers and the title.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from toolkit.analysis import engine  # noqa: E402
from toolkit.analysis.cost.latency import load_profile, with_predicted_time  # noqa: E402
from toolkit.analysis.explore import views as explore_views  # noqa: E402
from toolkit.analysis.explore.app import BAND_POINTS, explore, format_value  # noqa: E402
from toolkit.testing import random_classification_cache, random_token_cache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
PROFILE = REPO / "benchmarks" / "latency_profile_cpu.json"


def pair(N=400, E=4, C=3):
    return (random_classification_cache(N, E, C, seed=1, split="cal"),
            random_classification_cache(N // 2, E, C, seed=2, split="test"))


def test_point_interval_and_band_are_the_engines_bootstrap():
    cal, test = pair()
    ex = explore(cal, test, temperature="none", n_boot=120, seed=7)
    view = engine.staged(test, temperature=np.ones(test.n_stages))
    for tau in (0.5, 0.8, np.inf):
        ex.set_threshold(tau)
        want = engine.evaluation(view, tau, n_boot=120, seed=7).intervals
        got = ex.interval()
        assert set(got) == {"accuracy", "flops", "speedup"}
        for k, (lo, hi) in got.items():
            assert (lo, hi) == pytest.approx(want[k], rel=1e-5), k
        nums = ex.numbers()
        row = nums.set_index("key").loc["speedup"]
        assert (row["test_lo"], row["test_hi"]) == pytest.approx(want["speedup"], rel=1e-5)
        cell = re.search(r'data-interval="test" data-key="speedup"[^>]*>([^<]*)<', ex._numbers_html.value).group(1)
        assert cell == f"[{format_value('speedup', got['speedup'][0])}, {format_value('speedup', got['speedup'][1])}]"
        assert "120 resamples, seed 7" in ex._numbers_html.value
    grid = engine.threshold_grid(view, n=BAND_POINTS)
    bands = engine.bootstrap_bands(view, grid, n_boot=120, seed=7).frame
    band = ex.band()
    for c in ("accuracy_lo", "accuracy_hi", "speedup_lo", "speedup_hi", "flops_lo"):
        np.testing.assert_allclose(band[c], bands[c], rtol=1e-5)
    # drawn: the band as a filled area on the curve panel, the point's interval as a cross through the marker
    assert ex._figure.ax_curve.collections, "no band on the trade-off curve"
    x, y = ex._figure.errorbars.get_data()
    p, iv = ex.points["test"], ex.interval()
    assert (x[3], x[4], y[0], y[1]) == pytest.approx((*iv["speedup"], *iv["accuracy"]))
    assert x[0] == p.speedup and y[3] == p.value


def test_a_threshold_move_reuses_the_resamples(monkeypatch):
    cal, test = pair()
    ex = explore(cal, test, temperature="none", n_boot=50)
    calls = []
    monkeypatch.setattr(engine, "resample_weights", lambda *a, **k: calls.append(1))
    ex.set_threshold(0.6)
    ex.controls["score"].value = "margin"  # a new setting: a new band from the same resamples
    assert not calls and ex.interval()


def test_no_intervals_when_asked_or_too_large():
    cal, test = pair()
    ex = explore(cal, test, n_boot=0)
    assert ex.interval() == {} and ex.band() is None and np.isnan(ex.numbers()["test_lo"]).all()
    assert "no intervals" in ex._numbers_html.value
    assert explore_views.n_boot_for(1000) == 200
    assert explore_views.n_boot_for(150_000) == explore_views.RESAMPLE_ELEMENTS // 150_000
    assert explore_views.n_boot_for(10**6) == 0  # 8 resamples would not make an interval


def token_pair(decode=None, tokenizer=None):
    cal = random_token_cache(300, layers=6, seed=1, split="cal", vocab=50)
    test = random_token_cache(300, layers=6, seed=2, split="test", vocab=50)
    return explore(cal, test, decode=decode, tokenizer=tokenizer, n_boot=0), test


def test_token_ids_show_their_text_with_a_decoder():
    plain, _ = token_pair()
    assert "exit token" not in plain.examples().columns  # ids only without a decoder
    ex, test = token_pair(decode=lambda ids: [f"<{i}>" for i in ids])
    frame = ex.examples()
    assert len(frame)
    assert list(frame["exit token"]) == [f"<{i}>" for i in frame["exit token id"]]
    assert list(frame["full model token"]) == [f"<{i}>" for i in frame["full model token id"]]
    assert "&lt;" in ex._examples_html.value  # shown, escaped

    class Tok:
        def batch_decode(self, seqs, skip_special_tokens=False):
            return [f"t{s[0]}" for s in seqs]

    ex, _ = token_pair(tokenizer=Tok())
    frame = ex.examples()
    assert list(frame["exit token"]) == [f"t{i}" for i in frame["exit token id"]]
    with pytest.raises(TypeError, match="batch_decode"):
        token_pair(tokenizer=object())
    with pytest.raises(ValueError, match="not both"):
        token_pair(decode=str, tokenizer=Tok())
    with pytest.raises(ValueError, match="one text per id"):  # the example table is built on opening
        token_pair(decode=lambda ids: ["x"])


@pytest.mark.slow
def test_the_packaged_tokenizer_decodes_a_shipped_cache():
    pytest.importorskip("transformers")
    from toolkit.caches.tokens import load_llm_cache
    from toolkit.nn.causal.tokenizer import tokenizer_for

    test = load_llm_cache(DATA / "llm" / "smollm2_sst2_sentiment-test.parquet")
    try:
        tok = tokenizer_for(test)
    except OSError as e:
        pytest.skip(f"SmolLM2's packaged weights are not installed: {e}")
    decode = explore_views.token_decoder(tok)
    ids = [int(i) for i in test.tokens[:20]]
    assert decode(ids) == [tok.decode([i]) for i in ids]
    assert "".join(decode(ids)) == tok.decode(ids)


@pytest.fixture(scope="module")
def sst2():
    from toolkit.caches.classification import load_cache

    if not (DATA / "sst2" / "minilm6_me-test.parquet").exists() or not PROFILE.exists():
        pytest.skip("the shipped SST-2 MiniLM-L6 caches or the CPU latency profile are not here")
    return [load_cache(DATA / "sst2" / f"minilm6_me-{s}.parquet") for s in ("cal", "test")]


def test_profile_costs_the_explorer_in_predicted_ms(sst2):
    cal, test = sst2
    prof = load_profile(PROFILE)
    ex = explore(cal, test, temperature="none", profile=PROFILE, n_boot=0)
    view = with_predicted_time(engine.staged(test, temperature=np.ones(test.n_stages)), prof, test.n_tokens,
                               models=["all-MiniLM-L6-v2"])
    ev = engine.evaluation(view, ex.threshold)
    p = ex.points["test"]
    assert p.flops == pytest.approx(ev.flops, rel=1e-12) and p.speedup == pytest.approx(ev.speedup, rel=1e-12)
    assert ex.cost_unit == view.meta["cost_unit"] and prof.label in ex.cost_unit
    assert prof.label in ex._figure.ax_curve.get_xlabel() and prof.label in ex.title()
    assert any(prof.label in q for q in ex.numbers().index)
    flops = explore(cal, test, temperature="none", n_boot=0)
    assert flops.cost_unit == "FLOPs" and "FLOPs" in flops._figure.ax_curve.get_xlabel()
    assert flops.points["test"].speedup != p.speedup  # a different cost, a different speed-up


def test_profile_is_refused_where_it_cannot_cost(sst2):
    cal, test = sst2
    with pytest.raises(KeyError, match="no model"):
        explore(cal, test, profile=PROFILE, profile_models=["no-such-model"])
    with pytest.raises(ValueError, match="layers"):  # the 2-layer profile cannot time a 6-exit model
        explore(cal, test, profile=PROFILE, profile_models=["all-MiniLM-L6-v2@2"])
    with pytest.raises(ValueError, match="no latency model"):  # generation caches: FLOPs only
        explore_views.GenerationView.profile_models(object(), load_profile(PROFILE))


def test_profile_costs_llm_tokens_per_token():
    cal = random_token_cache(300, layers=30, seed=1, split="cal")
    test = random_token_cache(300, layers=30, seed=2, split="test")
    if not PROFILE.exists():
        pytest.skip("no CPU latency profile")
    prof = load_profile(PROFILE)
    ex = explore(cal, test, family="lens", profile=prof, profile_models=["SmolLM2-135M-Instruct"], n_boot=0)
    from toolkit.analysis.llm.exits import from_llm_tokens

    view = with_predicted_time(from_llm_tokens(test, family="lens", checked_layers=ex.view.layers[:-1]), prof,
                               None, models=["SmolLM2-135M-Instruct"])
    ev = engine.evaluation(view, ex.threshold)
    assert ex.points["test"].speedup == pytest.approx(ev.speedup, rel=1e-12)
    assert "predicted ms per token" in ex.cost_unit
