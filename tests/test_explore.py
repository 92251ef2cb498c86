"""The explorer's Python side: set a control, check the displayed numbers against the sweep engine, exactly.

Every expectation here comes from :mod:`toolkit.analysis.engine` (or :mod:`toolkit.analysis.operating`, which is
built on it), computed independently of the explorer: views built the way the explorer documents, their exact sweep,
``evaluation`` at the threshold, and ``choose(...).evaluate(...)`` for the rules that place the point.
"""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ipywidgets")

import toolkit  # noqa: E402
from conftest import random_cache  # noqa: E402
from toolkit.analysis import engine  # noqa: E402
from toolkit.analysis.engine import curves  # noqa: E402
from toolkit.analysis.explore import views as explore_views
from toolkit.analysis.explore.app import SNAPSHOT_CLASS, Explorer, explore, format_value  # noqa: E402
from toolkit.analysis.metrics.calibration import fit_stage_temperatures, reliability_curve  # noqa: E402
from toolkit.analysis.operating import operating_point  # noqa: E402
from toolkit.analysis.routing import references  # noqa: E402
from toolkit.analysis.scores.classification import softmax  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
FITTED, NONE, GLOBAL = explore_views.TEMPERATURE_MODES


def pair(N=300, E=4, C=3, metric="accuracy"):
    cal, test = random_cache(N, E, C, seed=1, metric=metric), random_cache(N // 2, E, C, seed=2, metric=metric)
    cal.meta["split"] = "cal"
    return cal, test


def views(cal, test, *, score="max_prob", temperature=None, reference="last"):
    """The engine's views of both splits, built as the explorer documents (temperatures: ``[E]`` per stage)."""
    t = np.ones(cal.n_stages) if temperature is None else temperature
    return [engine.staged(c, score=score, temperature=t, reference=reference) for c in (cal, test)]


def shown(ex, split, key):
    """The number printed in the numbers table (the HTML the browser shows)."""
    m = re.search(rf'data-split="{split}" data-key="{re.escape(key)}"[^>]*>([^<]*)<', ex._numbers_html.value)
    assert m, f"no {split}/{key} cell in the numbers table"
    return m.group(1)


def check_point(ex, view, split):
    """The explorer's point on ``split`` is the engine's sweep row at its threshold and what the engine's
    evaluation of that threshold gives; the printed numbers are the engine's, formatted."""
    p = ex.points[split]
    frame = engine.sweep(view).frame
    row = int((frame["threshold"].to_numpy()[1:] >= p.threshold).sum())
    assert p.row == row
    r = frame.iloc[row]
    assert p.metrics == {m: r[m] for m in view.metric_names}
    assert (p.flops, p.speedup, p.escalated, p.final_share) == (r["flops"], r["speedup"], r["escalated"],
                                                                r["final_share"])
    ev = engine.evaluation(view, p.threshold)
    assert p.metrics == ev.metrics  # sums of integer counts: exact
    assert (p.escalated, p.final_share) == (ev.escalated, ev.final_share)
    assert p.flops == pytest.approx(ev.flops, rel=1e-12) and p.speedup == pytest.approx(ev.speedup, rel=1e-12)
    stage = view.stage_of(p.threshold)
    assert p.exit_share == tuple(np.bincount(stage, minlength=view.n_stages) / view.n_examples)
    assert ex.reference == view.reference and ex.metric == view.metric
    want = {"threshold": format_value("threshold", p.threshold), "metric": format_value("metric", ev[view.metric]),
            "speedup": format_value("speedup", ev.speedup), "gflops": format_value("gflops", ev.flops * 1e-9),
            **({"escalated": format_value("escalated", ev.escalated)} if view.model_index.max() > 0 else {}),
            **{f"exit {s}": format_value(f"exit {s}", np.mean(stage == e)) for e, s in enumerate(view.stage_names)}}
    if view.metric != "accuracy" and "accuracy" in view.metric_names:
        want["accuracy"] = format_value("accuracy", ev["accuracy"])
    assert {k: shown(ex, split, k) for k in want} == want
    assert list(ex.numbers()["key"]) == ["threshold", "metric", *(["accuracy"] if "accuracy" in want else []),
                                         "speedup", "gflops", *(["escalated"] if "escalated" in want else []),
                                         *[f"exit {s}" for s in view.stage_names]]


def test_default_point_is_operating_points_drop_rule_on_accuracy():
    cal, test = pair(metric="mcc")  # headline mcc: the rule still looks at accuracy, as the engine's does
    ex = explore(cal, test)
    op = operating_point(cal, test)  # drop rule, accuracy, max_drop 0.01, temperatures fitted on cal
    cal_view, test_view = views(cal, test, temperature=fit_stage_temperatures(cal).temperatures)
    assert engine.choose(cal_view, rule="drop", metric="mcc").threshold != op.point.threshold  # the test can tell
    assert ex.rule_metric == "accuracy" and ex.metric == "mcc"
    assert ex.threshold == op.point.threshold
    assert ex.points["cal"].metrics == op.point.cal.metrics and ex.points["test"].metrics == op.test.metrics
    assert ex.points["test"].speedup == pytest.approx(op.test.speedup, rel=1e-12)
    assert shown(ex, "test", "speedup") == format_value("speedup", op.test.speedup)
    assert shown(ex, "test", "accuracy") == format_value("accuracy", op.test["accuracy"])
    assert "drop rule" in ex._message_html.value
    check_point(ex, cal_view, "cal")
    check_point(ex, test_view, "test")
    by_mcc = explore(cal, test, rule_metric="mcc")
    assert by_mcc.threshold == operating_point(cal, test, metric="mcc").point.threshold


def test_slider_text_and_budget_move_the_point_to_the_engines_numbers():
    cal, test = pair()
    ex = explore(cal, test, temperature=NONE)
    cal_view, test_view = views(cal, test)
    thresholds = engine.sweep(cal_view).column("threshold")
    for row in (0, 5, len(thresholds) // 2, len(thresholds) - 1):
        ex.controls["position"].value = row
        assert ex.threshold == thresholds[row] and ex.points["cal"].row == row
        check_point(ex, cal_view, "cal")
        check_point(ex, test_view, "test")
    before = shown(ex, "test", "metric")
    ex.controls["threshold"].value = "0.7"
    assert ex.threshold == 0.7 and ex.controls["position"].value == ex.points["cal"].row
    assert shown(ex, "test", "metric") != before
    check_point(ex, test_view, "test")
    ex.controls["threshold"].value = "inf"
    assert ex.points["test"].exit_share[-1] == 1.0 and ex.points["test"].row == 0
    check_point(ex, test_view, "test")
    # the budget rule is the engine's (best cal accuracy among thresholds reaching the target), not merely the most
    # conservative threshold reaching it: pick a target where the two differ
    speed = engine.sweep(cal_view).column("speedup")
    targets = [t for t in np.round(np.arange(1.05, speed.max(), 0.05), 2)
               if engine.choose(cal_view, rule="budget", budget=t).threshold != thresholds[np.argmax(speed >= t)]]
    assert targets, "no target tells the engine's budget rule apart; change the fixture"
    ex.controls["speedup"].value = targets[0]
    op = engine.choose(cal_view, rule="budget", budget=targets[0])
    assert ex.threshold == op.threshold and "budget rule" in ex._message_html.value
    assert ex.points["test"].metrics == op.evaluate(test_view).metrics
    check_point(ex, test_view, "test")


@pytest.mark.slow
def test_score_and_temperature_controls_recompute_the_sweep():
    cal, test = pair(metric="mcc")
    ex = explore(cal, test)
    ex.controls["score"].value = "entropy"
    check_point(ex, views(cal, test, score="entropy", temperature=fit_stage_temperatures(cal).temperatures)[1], "test")
    ex.controls["temperature"].value = GLOBAL
    ex.controls["global_temperature"].value = 2.5
    check_point(ex, views(cal, test, score="entropy", temperature=np.full(cal.n_stages, 2.5))[1], "test")
    ex.controls["temperature"].value = NONE
    ex.controls["threshold"].value = "-0.5"
    check_point(ex, views(cal, test, score="entropy")[1], "test")
    assert "mcc" in ex.numbers().index and "accuracy" in ex.numbers().index
    ex2 = explore(cal, test, score="energy", temperature=GLOBAL, global_temperature=0.5, threshold=2.0)
    cal_view, test_view = views(cal, test, score="energy", temperature=np.full(cal.n_stages, 0.5))
    check_point(ex2, cal_view, "cal")
    check_point(ex2, test_view, "test")


def test_a_threshold_move_does_not_sweep_again(monkeypatch):
    cal, test = pair()
    ex = explore(cal, test)
    calls = []
    real = curves.sweep_totals  # every exact sweep of the engine goes through it (sweep, choose)
    monkeypatch.setattr(curves, "sweep_totals", lambda *a: calls.append(1) or real(*a))
    for row in (3, 9, 27):
        ex.controls["position"].value = row
    ex.controls["threshold"].value = "0.8"
    ex.controls["speedup"].value = 1.3  # the budget rule on the kept cal sweep
    ex.controls["stage"].value = cal.stages[2]
    ex.controls["global_temperature"].value = 3.0  # not in use (temperatures fitted on cal): nothing to sweep
    assert calls == []
    ex.controls["score"].value = "margin"
    assert len(calls) == 2  # cal and test, once
    ex.controls["score"].value = "max_prob"  # seen before: kept
    assert len(calls) == 2


def test_cascade_speedup_is_against_the_engines_reference():
    cal = toolkit.load_cache(DATA / "sst2" / "cascade-cal.parquet")
    test = toolkit.load_cache(DATA / "sst2" / "cascade-test.parquet")
    ex = explore(cal, test, temperature=NONE, threshold=0.8)
    cal_view, test_view = views(cal, test)
    assert ex.reference == test_view.reference == "mpnet alone"
    alone = (test.flops[:, 2] - test.flops[:, 1]).mean()  # mpnet's own FLOPs, not the members before it
    p = ex.points["test"]
    assert p.speedup == pytest.approx(alone / p.flops, rel=1e-12)
    check_point(ex, test_view, "test")
    check_point(ex, cal_view, "cal")
    assert p.escalated == pytest.approx(1 - p.exit_share[0], abs=1e-12)
    every = explore(cal, test, temperature=NONE, threshold=0.8, reference="all")
    check_point(every, views(cal, test, reference="all")[1], "test")
    assert every.reference == "every stage in turn" and every.points["test"].speedup > p.speedup  # every member in turn costs more than mpnet alone


def test_shipped_multi_exit_cache_budget_target_is_operating_points_budget_rule():
    cal = toolkit.load_cache(DATA / "sst2" / "minilm6_me-cal.parquet")
    test = toolkit.load_cache(DATA / "sst2" / "minilm6_me-test.parquet")
    ex = explore(cal, test, speedup=2.0)
    op = operating_point(cal, test, rule="budget", budget=2.0)
    assert ex.threshold == op.point.threshold and ex.reference == "last exit (L6)"
    assert ex.points["test"].metrics == op.test.metrics
    assert shown(ex, "test", "speedup") == format_value("speedup", op.test.speedup)
    check_point(ex, views(cal, test, temperature=op.temperatures)[1], "test")


def test_examples_exit_at_the_chosen_stage_least_confident_first():
    cal, test = pair()
    ex = explore(cal, test, temperature=NONE, threshold=0.6, stage=1, n_examples=5)
    view = views(cal, test)[1]
    conf, stage = view.confidence, view.stage_of(0.6)
    here = np.flatnonzero(stage == 1)
    order = here[np.argsort(conf[here, 1], kind="stable")][:5]
    frame = ex.examples("test")
    assert list(frame["example_id"]) == list(test.example_ids[order])
    assert (frame["exit"] == test.stages[1]).all()
    assert list(frame["confidence"]) == list(conf[order, 1])
    assert list(frame["right"]) == list(test.predictions[order, 1] == test.labels[order])
    ex.controls["order"].value = "most confident first"
    assert list(ex.examples("test")["confidence"]) == sorted(conf[here, 1])[::-1][:5]
    assert f"{len(here):,} of {test.n_examples:,} test examples exit at" in ex._examples_html.value


def test_text_is_joined_from_the_data_folder_only_on_request(glue_dir, tmp_path):
    from toolkit.data.tasks import load_split

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
    assert html.escape(frame["text"].iloc[0]) in ex._examples_html.value
    assert "text_a" not in ex.snapshot_html() and frame["text"].iloc[0] not in ex.snapshot_html()
    absent = explore(cache, cache, data_dir=tmp_path / "nowhere", temperature=NONE, threshold=0.5, show_text=True)
    assert absent.examples()["text"].str.contains("no data folder").all()


def test_reliability_panel_matches_the_calibration_module():
    cal, test = pair()
    ex = explore(cal, test, stage=2)
    everyone, here, _ = ex.reliability()
    t = fit_stage_temperatures(cal).temperatures[2]
    rc = reliability_curve(softmax(test.logits[:, 2], temperature=t), test.labels, n_bins=15)
    np.testing.assert_array_equal(everyone["count"], rc["count"])
    np.testing.assert_allclose(everyone["accuracy"], rc["accuracy"], rtol=0, atol=0, equal_nan=True)
    assert here["count"].sum() == round(ex.points["test"].exit_share[2] * test.n_examples)


@pytest.mark.slow
def test_generation_cache_routes_like_the_engine():
    cal = toolkit.load_generation_cache(DATA / "sst2" / "t2t-cal.parquet")
    test = toolkit.load_generation_cache(DATA / "sst2" / "t2t-test.parquet")

    def gen_views(score, how, metric="exact_match"):
        return [engine.from_generation(c, models=["swift", "super"], score=score, how=how, metric=metric)
                for c in (cal, test)]

    ex = explore(cal, test)  # defaults: energy, mean; the drop rule on the shown metric (no accuracy here)
    cal_view, test_view = gen_views("energy", "mean")
    assert ex.view.stage_names == ("swift", "super") and ex.reference == "super alone" == test_view.reference
    assert ex.rule_metric == "exact_match"
    op = engine.choose(cal_view, rule="drop", metric="exact_match")
    assert ex.threshold == op.threshold and ex.points["test"].metrics == op.evaluate(test_view).metrics
    ex.controls["aggregation"].value = "first"
    ex.controls["score"].value = "max_prob"
    cal_view, test_view = gen_views("max_prob", "first")
    for tau in (0.9, 0.99):
        ex.controls["threshold"].value = str(tau)
        check_point(ex, test_view, "test")
        check_point(ex, cal_view, "cal")
        assert ex.points["test"].exit_share[1] == np.mean(test_view.confidence[:, 0] < tau)
    ex.controls["threshold"].value = "inf"
    refs = references(test_view)
    assert ex.points["test"].value == refs.loc["all to super", "exact_match"]
    assert ex.points["test"].speedup == pytest.approx(refs.loc["all to super", "speedup"], rel=1e-12)
    assert {"swift output", "super output"} <= set(ex.examples().columns)


def test_generation_metric_control_and_corpus_bleu():
    from toolkit.testing import random_generation_cache  # Swift/Super with sacrebleu-style statistics

    cal, test = random_generation_cache(150, seed=0, metric="bleu"), random_generation_cache(60, seed=1, metric="bleu")
    test.meta["split"] = "test"
    for c in (cal, test):
        for g in c.models.values():  # a second metric, so the metric control has a choice
            g.quality["exact_match"] = (g.quality["bleu"] > 60).astype(float)
    ex = explore(cal, test, temperature=2.0)
    assert ex.metric == "bleu" and ex.rule_metric == "bleu"
    cal_view, test_view = [engine.from_generation(c, temperature=2.0) for c in (cal, test)]
    assert ex.threshold == engine.choose(cal_view, rule="drop", metric="bleu").threshold
    check_point(ex, cal_view, "cal")
    check_point(ex, test_view, "test")
    ex.controls["metric"].value = "exact_match"
    ex.controls["threshold"].value = "-1.5"
    check_point(ex, engine.from_generation(test, temperature=2.0, metric="exact_match"), "test")
    assert ex.points["test"].metrics["bleu"] == test_view.metrics(
        test_view.stats[np.arange(60), test_view.stage_of(-1.5)].sum(0), 60)["bleu"]


def test_snapshot_and_display_without_a_kernel(monkeypatch):
    import IPython.display

    cal, test = pair()
    ex = explore(cal, test)
    snap = ex.snapshot_html()
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", snap).group(1))
    assert png == ex.figure_png() and png.startswith(b"\x89PNG")
    assert SNAPSHOT_CLASS in snap and ex._numbers_table_html() in snap
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
    with pytest.raises(ValueError, match="different stages"):
        explore(random_cache(100, 3, 3, seed=5), test)
    with pytest.raises(ValueError, match="fit on a cal cache and report on a test cache"):
        explore(test, cal)  # swapped: a point chosen on test is not an operating point
    with pytest.raises(ValueError, match="rule_metric='f1' is not one of"):
        explore(cal, test, rule_metric="f1")  # three classes: no F1
    few = random_cache(50, 4, 3, seed=3)
    few.meta["split"] = "cal"
    small = explore(few, test)  # too few cal examples for the drop rule at 0.01: it says so, starts at inf
    assert small.threshold == np.inf and "needs at least 100 cal examples" in small._message_html.value
    ex = explore(cal, test)
    before = ex.threshold
    ex.controls["threshold"].value = "abc"
    assert ex.threshold == before and "not a number" in ex._message_html.value
    top = engine.sweep(views(cal, test, temperature=fit_stage_temperatures(cal).temperatures)[0]).column("speedup").max()
    ex.controls["speedup"].value = ex.controls["speedup"].max
    assert ex.controls["speedup"].max > top and "out of reach" in ex._message_html.value
    assert ex.points["cal"].speedup == top


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), tau=st.floats(0.0, 1.0), E=st.integers(1, 5))
def test_point_lookup_equals_the_engines_evaluation(seed, tau, E):
    view = engine.staged(random_cache(60, E, 3, seed=seed))
    p = explore_views.Point.at(explore_views.precompute(view), "test", tau)
    ev = engine.evaluation(view, tau)
    assert p.metrics == ev.metrics and p.flops == pytest.approx(ev.flops, rel=1e-12)
    assert (p.escalated, p.final_share) == (ev.escalated, ev.final_share)
    assert p.exit_share == tuple(np.bincount(view.stage_of(tau), minlength=E) / 60)


def test_explorer_is_the_public_entry_point():
    assert explore.__doc__ and Explorer.__doc__
    assert toolkit.analysis.explore.app.explore is explore


@pytest.mark.slow
@pytest.mark.parametrize("flag", [{}, {"TOOLKIT_REQUIRE_BROWSER": "1"}, {"CI": "true"}])
def test_browser_test_fails_without_chromium_only_where_required(flag, tmp_path):
    """Developers without Chromium get a skip; CI (CI=true, or TOOLKIT_REQUIRE_BROWSER=1 set by .ci/run) a failure."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TOOLKIT_REQUIRE_BROWSER")}
    env.update(TOOLKIT_CHROMIUM=str(tmp_path / "no-chromium"), PYTHONPATH=str(REPO), **flag)
    required = bool(flag)
    r = subprocess.run([sys.executable, "-m", "pytest", str(REPO / "tests" / "test_explore_browser.py"), "-q", "-rs",
                        "-p", "no:cacheprovider", "-k", "static_snapshot"], env=env, capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    if required:
        assert r.returncode == 1 and "no Chromium at" in r.stdout and "1 error" in r.stdout, r.stdout[-2000:]
    else:
        assert r.returncode == 0 and "1 skipped" in r.stdout and "no Chromium at" in r.stdout, r.stdout[-2000:]
    assert 'export TOOLKIT_REQUIRE_BROWSER=1' in (REPO / ".ci" / "run").read_text()


def test_llm_token_cache_exits_per_token_like_the_engine():
    from toolkit.analysis.llm.exits import from_llm_tokens, layer_confidence
    from toolkit.caches.tokens import load_llm_cache

    cal = load_llm_cache(DATA / "llm" / "smollm2_sst2_sentiment-cal.parquet")
    test = load_llm_cache(DATA / "llm" / "smollm2_sst2_sentiment-test.parquet")
    checked = [4, 8, 16]
    ex = explore(cal, test, family="tuned", checked_layers=checked)
    assert ex.view.stage_names == ("L4", "L8", "L16", "L30") and ex.view.n_examples["test"] == test.n_tokens

    def views(family, score="max_prob"):
        return [from_llm_tokens(c, family=family, score=score, checked_layers=checked) for c in (cal, test)]

    cal_view, test_view = views("tuned")
    op = engine.choose(cal_view, rule="drop", metric="agreement")  # within 1 point of the full model's agreement
    assert ex.threshold == op.threshold and ex.points["test"].metrics == op.evaluate(test_view).metrics
    ex.controls["family"].value = "lens"
    ex.controls["score"].value = "margin"
    cal_view, test_view = views("lens", "margin")
    for tau in (0.5, 5.0):
        ex.controls["threshold"].value = str(tau)
        check_point(ex, test_view, "test")
        check_point(ex, cal_view, "cal")
    ex.controls["speedup"].value = 0.5  # below 1x: every policy here pays for its exit heads
    assert ex.points["cal"].speedup >= 0.5
    frame = ex.examples()
    assert set(frame["exit"]) <= set(ex.view.stage_names)
    layer = int(frame["exit"].iloc[0][1:])
    assert (frame["agrees"] == (frame["exit token id"] == frame["full model token id"])).all()
    conf, outcome, _, _ = ex.view.reliability("test", ex.view.stage_names.index(f"L{layer}"), ex.settings)
    np.testing.assert_array_equal(conf, layer_confidence(test, "lens", score="max_prob")[:, layer - 1])
    np.testing.assert_array_equal(outcome, test.agreement("lens")[:, layer - 1])
    with pytest.raises(ValueError, match="checked_layers"):
        explore(cal, test, checked_layers=[30])
