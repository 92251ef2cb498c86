"""The explorer's Python side: set a control, check the displayed numbers against the sweep, exactly."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ipywidgets")

import toolkit  # noqa: E402
from conftest import random_cache  # noqa: E402
from toolkit.analysis import explore_views  # noqa: E402
from toolkit.analysis.calibration import fit_stage_temperatures, reliability_curve  # noqa: E402
from toolkit.analysis.explore import SNAPSHOT_CLASS, Explorer, explore, format_value  # noqa: E402
from toolkit.analysis.operating import operating_point  # noqa: E402
from toolkit.analysis.policies import early_exit  # noqa: E402
from toolkit.analysis.routing import evaluate_route, references, route_sweep  # noqa: E402
from toolkit.analysis.scores import softmax  # noqa: E402
from toolkit.analysis.sweep import evaluate_thresholds, sweep  # noqa: E402
from toolkit.analysis.token_scores import sequence_confidence  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
FITTED, NONE, GLOBAL = explore_views.TEMPERATURE_MODES


def pair(N=300, E=4, C=3, metric="accuracy"):
    cal, test = random_cache(N, E, C, seed=1, metric=metric), random_cache(N // 2, E, C, seed=2, metric=metric)
    cal.meta["split"] = "cal"
    return cal, test


def shown(ex, split, key):
    """The number printed in the numbers table (the HTML the browser shows)."""
    m = re.search(rf'data-split="{split}" data-key="{re.escape(key)}"[^>]*>([^<]*)<', ex._numbers_html.value)
    assert m, f"no {split}/{key} cell in the numbers table"
    return m.group(1)


def check_point(ex, cache, split, score, temps):
    """The explorer's point on ``split`` is the sweep's row at its threshold, and what early exit there gives."""
    p = ex.points[split]
    curve = sweep(cache, score, temps)
    thr = curve["threshold"].to_numpy()
    row = int((thr[1:] >= p.threshold).sum())
    assert p.row == row
    r = curve.iloc[row]
    assert (p.metric, p.accuracy, p.flops, p.escalated) == (r["metric"], r["accuracy"], r["flops"], r["escalated"])
    ev = evaluate_thresholds(cache, [p.threshold], score, temps).iloc[0]
    assert p.metric == ev["metric"] and p.accuracy == ev["accuracy"]  # integer confusion counts: exact
    assert p.flops == pytest.approx(ev["flops"], rel=1e-12)
    stage = early_exit(cache, p.threshold, score, temps).exit_stage
    assert p.exit_share == tuple(np.bincount(stage, minlength=cache.n_stages) / cache.n_examples)
    assert p.exit_share[-1] == pytest.approx(r["final_share"], abs=1e-12)
    # printed
    assert shown(ex, split, "metric") == format_value("metric", r["metric"])
    assert shown(ex, split, "speedup") == format_value("speedup", p.speedup)
    assert shown(ex, split, "threshold") == format_value("threshold", p.threshold)
    for e, name in enumerate(cache.stages):
        assert shown(ex, split, f"exit {name}") == format_value(f"exit {name}", p.exit_share[e])


def test_default_point_is_the_drop_rule_of_operating_point():
    cal, test = pair()
    ex = explore(cal, test)
    op = operating_point(cal, test, score="max_prob", calibrate=True, rule="drop", max_drop=0.01)
    assert ex.threshold == op["threshold"]
    assert ex.points["cal"].metric == op["cal"]["metric"] and ex.points["test"].metric == op["test"]["metric"]
    assert ex.points["test"].speedup == pytest.approx(op["test"]["speedup"], rel=1e-12)  # one model: same reference
    temps = fit_stage_temperatures(cal)
    for split, cache in (("cal", cal), ("test", test)):
        check_point(ex, cache, split, "max_prob", temps)


def test_slider_text_and_budget_move_the_point_to_the_sweeps_numbers():
    cal, test = pair()
    ex = explore(cal, test, temperature=NONE)
    cal_curve = sweep(cal, "max_prob", None)
    for row in (0, 5, len(cal_curve) // 2, len(cal_curve) - 1):
        ex.controls["position"].value = row
        assert ex.threshold == cal_curve["threshold"].iloc[row]
        assert ex.points["cal"].row == row
        check_point(ex, cal, "cal", "max_prob", None)
        check_point(ex, test, "test", "max_prob", None)
    before = shown(ex, "test", "metric")
    ex.controls["threshold"].value = "0.7"
    assert ex.threshold == 0.7 and ex.controls["position"].value == ex.points["cal"].row
    assert shown(ex, "test", "metric") != before
    check_point(ex, test, "test", "max_prob", None)
    ex.controls["threshold"].value = "inf"
    assert ex.points["test"].exit_share[-1] == 1.0 and ex.points["test"].row == 0
    ex.controls["speedup"].value = 1.5
    s = cal_curve["speedup"].to_numpy()
    k = ex.points["cal"].row
    assert s[k] >= 1.5 and (k == 0 or s[k - 1] < 1.5)  # the most conservative threshold reaching the target
    check_point(ex, test, "test", "max_prob", None)


@pytest.mark.slow
def test_score_and_temperature_controls_recompute_the_sweep():
    cal, test = pair(metric="mcc")
    ex = explore(cal, test)
    ex.controls["score"].value = "entropy"
    check_point(ex, test, "test", "entropy", fit_stage_temperatures(cal))
    ex.controls["temperature"].value = GLOBAL
    ex.controls["global_temperature"].value = 2.5
    check_point(ex, test, "test", "entropy", np.full(cal.n_stages, 2.5))
    ex.controls["temperature"].value = NONE
    ex.controls["threshold"].value = "-0.5"
    check_point(ex, test, "test", "entropy", None)
    assert "mcc" in ex.numbers().index and "accuracy" in ex.numbers().index
    ex2 = explore(cal, test, score="energy", temperature=GLOBAL, global_temperature=0.5, threshold=2.0)
    check_point(ex2, test, "test", "energy", np.full(cal.n_stages, 0.5))


def test_a_threshold_move_does_not_sweep_again(monkeypatch):
    cal, test = pair()
    ex = explore(cal, test)
    calls = []
    real = explore_views.classification_precomputed
    monkeypatch.setattr(explore_views, "classification_precomputed", lambda *a: calls.append(a) or real(*a))
    for row in (3, 9, 27):
        ex.controls["position"].value = row
    ex.controls["speedup"].value = 1.3
    ex.controls["global_temperature"].value = 3.0  # not in use (temperatures fitted on cal): nothing to sweep
    assert calls == []
    ex.controls["score"].value = "margin"
    assert len(calls) == 2  # cal and test, once
    ex.controls["score"].value = "max_prob"  # seen before: kept
    assert len(calls) == 2


def test_cascade_speedup_is_against_the_last_model_alone():
    cal = toolkit.load_cache(DATA / "sst2" / "cascade-cal.parquet")
    test = toolkit.load_cache(DATA / "sst2" / "cascade-test.parquet")
    ex = explore(cal, test, temperature=NONE, threshold=0.8)
    assert ex.reference == "mpnet alone"
    alone = (test.flops[:, 2] - test.flops[:, 1]).mean()  # mpnet's own FLOPs, not the members before it
    p = ex.points["test"]
    assert p.speedup == alone / p.flops
    check_point(ex, test, "test", "max_prob", None)
    assert p.escalated == pytest.approx(1 - p.exit_share[0], abs=1e-12)


def test_shipped_multi_exit_cache_numbers():
    cal = toolkit.load_cache(DATA / "sst2" / "minilm6_me-cal.parquet")
    test = toolkit.load_cache(DATA / "sst2" / "minilm6_me-test.parquet")
    ex = explore(cal, test, speedup=2.0)
    temps = fit_stage_temperatures(cal)
    check_point(ex, test, "test", "max_prob", temps)
    assert ex.reference == "last exit (L6)"
    assert ex.points["test"].speedup == pytest.approx(
        early_exit(test, ex.threshold, "max_prob", temps).summary(test)["speedup"], rel=1e-12)


def test_examples_exit_at_the_chosen_stage_least_confident_first():
    cal, test = pair()
    ex = explore(cal, test, temperature=NONE, threshold=0.6, stage=1, n_examples=5)
    conf = toolkit.analysis.scores.stage_confidence(test.logits, "max_prob")
    stage = early_exit(test, 0.6, "max_prob").exit_stage
    here = np.flatnonzero(stage == 1)
    want = test.example_ids[here[np.argsort(conf[here, 1], kind="stable")][:5]]
    frame = ex.examples("test")
    assert list(frame["example_id"]) == list(want)
    assert (frame["exit"] == test.stages[1]).all()
    assert list(frame["confidence"]) == sorted(frame["confidence"])
    pred = test.predictions[here][:, 1]
    assert frame["right"].sum() == (pred == test.labels[here])[np.argsort(conf[here, 1], kind="stable")][:5].sum()
    ex.controls["order"].value = "most confident first"
    assert list(ex.examples("test")["confidence"]) == sorted(conf[here, 1])[::-1][:5]
    assert f"{len(here):,} of {test.n_examples:,} test examples exit at" in ex._examples_html.value


def test_text_is_joined_from_the_data_folder_only_on_request(glue_dir, tmp_path):
    from toolkit.data import load_split

    dev = load_split("sst2", "test", glue_dir).frame
    N = len(dev)
    rng = np.random.default_rng(0)
    y = dev["label"].to_numpy()
    lg = rng.normal(size=(N, 3, 2))
    cache = toolkit.from_arrays(lg, y, [1.0, 2.0, 3.0], example_ids=dev["example_id"], meta={"task": "sst2"})
    ex = explore(cache, cache, data_dir=glue_dir, temperature=NONE, threshold=0.5)
    assert "text" not in ex.examples().columns
    assert "<th>text</th>" not in ex._examples_html.value
    ex.controls["show text"].value = True
    frame = ex.examples()
    want = dev.set_index("example_id").loc[frame["example_id"], "text_a"]
    assert list(frame["text"]) == list(want)
    assert html_escape(frame["text"].iloc[0]) in ex._examples_html.value
    assert "text_a" not in ex.snapshot_html() and frame["text"].iloc[0] not in ex.snapshot_html()
    absent = explore(cache, cache, data_dir=tmp_path / "nowhere", temperature=NONE, threshold=0.5, show_text=True)
    assert absent.examples()["text"].str.contains("no data folder").all()


def html_escape(s):
    import html

    return html.escape(s)


def test_reliability_panel_matches_the_calibration_module():
    cal, test = pair()
    ex = explore(cal, test, stage=2)
    everyone, here, _ = ex.reliability()
    t = fit_stage_temperatures(cal)[2]
    rc = reliability_curve(softmax(test.logits[:, 2], t), test.labels, 15)
    np.testing.assert_array_equal(everyone["count"], rc["count"])
    np.testing.assert_allclose(everyone["accuracy"], rc["accuracy"], rtol=0, atol=0, equal_nan=True)
    assert here["count"].sum() == round(ex.points["test"].exit_share[2] * test.n_examples)


@pytest.mark.slow
def test_generation_cache_routes_like_route_sweep():
    cal = toolkit.load_generation_cache(DATA / "sst2" / "t2t-cal.parquet")
    test = toolkit.load_generation_cache(DATA / "sst2" / "t2t-test.parquet")
    ex = explore(cal, test, score="max_prob", aggregation="first")
    assert ex.view.stage_names == ("swift", "super") and ex.reference == "super alone"
    for tau in (0.9, 0.99):
        ex.controls["threshold"].value = str(tau)
        curve = route_sweep(test, "swift", "super", "max_prob", "first", 1.0)
        p = ex.points["test"]
        r = curve.iloc[p.row]
        assert (p.metric, p.flops, p.speedup, p.escalated) == (r["metric"], r["flops"], r["speedup"], r["routed"])
        routed = sequence_confidence(test, "swift", "max_prob", "first", 1.0) < tau
        ev = evaluate_route(test, "swift", "super", routed)
        assert p.metric == pytest.approx(ev["metric"], abs=1e-12) and p.exit_share[1] == routed.mean()
        assert shown(ex, "test", "metric") == format_value("metric", ev["metric"])
    ex.controls["threshold"].value = "inf"
    assert ex.points["test"].metric == pytest.approx(references(test, "swift", "super").loc["super", "metric"])
    ex.controls["aggregation"].value = "mean"
    ex.controls["score"].value = "energy"
    assert ex.points["test"].metric == route_sweep(test, "swift", "super", "energy", "mean").iloc[
        ex.points["test"].row]["metric"]
    assert {"swift output", "super output"} <= set(ex.examples().columns)


def test_snapshot_and_display_without_a_kernel(monkeypatch):
    import IPython.display

    cal, test = pair()
    ex = explore(cal, test)
    snap = ex.snapshot_html()
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", snap).group(1))
    assert png == ex.figure_png() and png.startswith(b"\x89PNG")
    assert SNAPSHOT_CLASS in snap and "data-key=\"metric\"" in snap
    shown_ = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown_.append((obj, raw)))
    ex._ipython_display_()
    (live, raw1), (static, raw2) = shown_
    assert raw1 and raw2
    assert "application/vnd.jupyter.widget-view+json" in live and "text/html" not in live
    assert static["text/html"] == snap


def test_bad_input_is_refused_or_reported():
    cal, test = pair()
    with pytest.raises(ValueError, match="score='bogus' is not one of"):
        explore(cal, test, score="bogus")
    with pytest.raises(ValueError, match="stage 9 is not one of"):
        explore(cal, test, stage=9)
    other = random_cache(100, 3, 3, seed=5)
    with pytest.raises(ValueError, match="cal and test caches differ"):
        explore(other, test)
    ex = explore(cal, test)
    before = ex.threshold
    ex.controls["threshold"].value = "abc"
    assert ex.threshold == before and "not a number" in ex._message_html.value
    ex.controls["speedup"].value = ex.controls["speedup"].max
    assert ex.points["cal"].row <= len(sweep(cal, "max_prob", fit_stage_temperatures(cal))) - 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), tau=st.floats(0.0, 1.0), E=st.integers(1, 5))
def test_point_lookup_equals_evaluating_the_threshold(seed, tau, E):
    cache = random_cache(60, E, 3, seed=seed)
    pre = explore_views.classification_precomputed(cache, "max_prob", None)
    p = explore_views.Point.at(pre, "test", tau)
    ev = evaluate_thresholds(cache, [tau]).iloc[0]
    assert p.metric == ev["metric"] and p.flops == pytest.approx(ev["flops"], rel=1e-12)
    assert p.exit_share[-1] == pytest.approx(ev["final_share"], abs=1e-12)


def test_explorer_is_the_public_entry_point():
    assert explore.__doc__ and Explorer.__doc__
    assert toolkit.analysis.explore.explore is explore
