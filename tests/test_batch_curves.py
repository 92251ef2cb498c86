"""Predicted time above batch 1 is one truth everywhere (issue 31): ``toolkit plot``, the explorer and ``toolkit
sweep`` draw and print the exact curve of the runtime's batches (``latency.time_sweep``: ``encoder_time_sweep`` for
encoder early exit and cascades, ``calm_time_sweep`` for CALM token caches), and ``with_predicted_time`` refuses a
batch above 1 (each row's share of a full batch misprices the batches), naming the exact sweep.

On the shipped SST-2 caches (MiniLM-L6 multi-exit, the MiniLM-L2 -> L6 cascade), the shipped SmolLM2 token cache and
the shipped CPU latency profile; skipped where they are not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.analysis import engine
from toolkit.analysis.cost import latency as lat
from toolkit.caches.kinds import kind_of

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "benchmarks" / "latency_profile_cpu.json"
EE = REPO / "data" / "sst2" / "minilm6_me-test.parquet"
TOKENS = REPO / "data" / "llm" / "smollm2_sst2_sentiment-test.parquet"


def need(*paths):
    missing = [str(p) for p in (PROFILE, *paths) if not p.exists()]
    if missing:
        pytest.skip(f"shipped files not here: {missing}")


def exact_of(path, batch, **view_options):
    """The exact curve of the runtime's batches for a shipped cache, as the library gives it."""
    kind = kind_of(path)
    cache = kind.loader()(path)
    prof = lat.load_profile(PROFILE)
    if kind.name == "llm_tokens":
        view = engine.staged(cache, score="max_prob", temperature=1.0)
        return lat.calm_time_sweep(view, prof, model="SmolLM2-135M-Instruct", batch_size=batch)
    view = engine.staged(cache, score="max_prob", **view_options)
    return lat.encoder_time_sweep(view, prof, n_tokens=cache.n_tokens, models=lat.models_for(cache.meta, prof),
                                  batch_size=batch)


def row_shares(path, batch):
    """Speed-ups of the old pricing (each row's share of a full batch) at the exact curve's thresholds: the tests
    below must be able to tell it from the exact curve."""
    cache = kind_of(path).loader()(path)
    prof = lat.load_profile(PROFILE)
    m = prof.model(lat.models_for(cache.meta, prof)[0])
    cost, ref = lat.encoder_example_ms(m, cache.n_tokens, batch=batch)
    view = engine.staged(cache)
    stage = view.stage_of(engine.sweep(view).frame["threshold"].to_numpy()[:, None])
    return ref.mean() / np.take_along_axis(cost, stage.T, axis=1).mean(0)


# ------------------------------------------------------------------------------------------------ toolkit plot
@pytest.mark.parametrize("path", [EE, TOKENS], ids=["early-exit", "calm"])
def test_plot_at_a_batch_draws_the_exact_curve(tmp_path, path):
    import matplotlib.pyplot as plt

    from toolkit.cli import build_parser
    from toolkit.cli.plot import figure

    need(path)
    args = ["plot", str(path), "--out", str(tmp_path / "f.png"), "--n-boot", "20", "--cal", "none",
            "--profile", str(PROFILE), "--batch", "8"]
    fig, shown = figure(build_parser().parse_args(args))
    (line,) = [x for x in fig.axes[0].lines if "the runtime's batches (exact)" in x.get_label()]
    curve = exact_of(path, 8)
    f = curve.frame.sort_values("speedup")
    np.testing.assert_array_equal(line.get_xdata(), f["speedup"].to_numpy())
    np.testing.assert_array_equal(line.get_ydata(), f[curve.metric].to_numpy())
    assert shown["cost_unit"] == curve.meta["cost_unit"] and shown["reference"] == curve.reference
    assert "batch 8" in fig.axes[0].get_xlabel()
    plt.close(fig)
    if path == EE:  # the old pricing differs visibly: this test fails on it
        assert np.abs(row_shares(path, 8) / curve.frame["speedup"].to_numpy() - 1).max() > 0.02


@pytest.mark.parametrize("rule", ["risk", "drop", "budget"])
def test_plot_operating_point_at_a_batch_is_on_the_exact_curves(tmp_path, capsys, rule):
    """The point is chosen on cal's exact curve (cost rules: drop, budget) and drawn at test's exact speed-up."""
    from toolkit.cli import main

    cal = EE.with_name("minilm6_me-cal.parquet")
    need(EE, cal)
    args = ["plot", str(EE), "--out", str(tmp_path / "f.png"), "--n-boot", "20", "--profile", str(PROFILE),
            "--batch", "8", "--rule", rule, "--json", *(["--budget", "1.8"] if rule == "budget" else [])]
    assert main(args) == 0
    op = json.loads(capsys.readouterr().out)["operating_point"]
    test_curve, cal_curve = exact_of(EE, 8), exact_of(cal, 8)
    if rule != "risk":
        want = engine.threshold_on_sweep(cal_curve, rule=rule, metric="accuracy", max_drop=0.01, budget=1.8)
        assert op["threshold"] == want
    thr = np.inf if op["threshold"] is None else op["threshold"]
    row = int(np.searchsorted(-test_curve.frame["threshold"].to_numpy()[1:], -thr, side="right"))
    assert op["test_speedup"] == test_curve.frame["speedup"].iloc[row]
    assert op["test_flops"] == test_curve.frame["flops"].iloc[row]
    cal_row = int(np.searchsorted(-cal_curve.frame["threshold"].to_numpy()[1:], -thr, side="right"))
    assert op["cal_speedup"] == cal_curve.frame["speedup"].iloc[cal_row]
    if rule == "budget":
        assert op["cal_speedup"] >= 1.8


# ------------------------------------------------------------------------------------------------ explorer
def test_explorer_at_a_batch_shows_the_exact_curve():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import _thin, explore

    cal_path = EE.with_name("minilm6_me-cal.parquet")
    need(EE, cal_path)
    from toolkit.caches.classification import load_cache

    cal, test = load_cache(cal_path), load_cache(EE)
    ex = explore(cal, test, temperature="none", profile=PROFILE, batch=8, n_boot=60)
    ones = np.ones(test.n_stages)
    curves = {"test": exact_of(EE, 8, temperature=ones), "cal": exact_of(cal_path, 8, temperature=ones)}
    for split, curve in curves.items():
        p, f = ex.points[split], curve.frame
        row = ex.pre(split).row(ex.threshold)
        assert (p.speedup, p.flops) == (f["speedup"].iloc[row], f["flops"].iloc[row])
        np.testing.assert_array_equal(ex.pre(split).columns["speedup"], f["speedup"].to_numpy())
    drawn = ex._figure.ax_curve.lines[0]  # the test curve
    idx = _thin(len(curves["test"].frame))
    np.testing.assert_array_equal(drawn.get_xdata(), curves["test"].frame["speedup"].to_numpy()[idx])
    assert ex.cost_unit == curves["test"].meta["cost_unit"] and ex.reference == curves["test"].reference
    # a resample forms other batches: intervals and the band cover the metrics only
    assert "speedup" not in ex.interval() and "accuracy" in ex.interval()
    assert "speedup_lo" not in ex.band() and "accuracy_lo" in ex.band()
    nums = ex.numbers()
    assert np.isnan(nums.loc[nums["key"] == "speedup", "test_lo"]).all()
    # the budget slider's rule runs on cal's exact curve
    ex.controls["speedup"].value = 1.8
    want = engine.threshold_on_sweep(curves["cal"], rule="budget", metric="accuracy", budget=1.8)
    assert ex.threshold == want
    assert np.abs(row_shares(EE, 8) / curves["test"].frame["speedup"].to_numpy() - 1).max() > 0.02


def test_explorer_at_a_batch_on_a_token_cache_is_the_calm_decoders_curve():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import explore

    cal_path = TOKENS.with_name("smollm2_sst2_sentiment-cal.parquet")
    need(TOKENS, cal_path)
    cal, test = (kind_of(x).loader()(x) for x in (cal_path, TOKENS))
    ex = explore(cal, test, profile=PROFILE, batch=8, n_boot=50)
    prof = lat.load_profile(PROFILE)
    for split in ("cal", "test"):
        curve = lat.calm_time_sweep(ex.pre(split).view, prof, model="SmolLM2-135M-Instruct", batch_size=8)
        np.testing.assert_array_equal(ex.pre(split).columns["speedup"], curve.frame["speedup"].to_numpy())
        row = ex.pre(split).row(ex.threshold)
        assert ex.points[split].speedup == curve.frame["speedup"].iloc[row]
    assert ex.reference == curve.reference and "batch 8" in ex.cost_unit
    assert set(ex.interval()) == {"agreement"}


def test_explorer_refuses_a_bad_batch():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import explore
    from toolkit.testing import random_classification_cache

    cal = random_classification_cache(50, 3, 2, seed=1, split="cal")
    test = random_classification_cache(40, 3, 2, seed=2, split="test")
    need()
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        explore(cal, test, profile=PROFILE, batch=0)


# ------------------------------------------------------------------------------------------------ refusals, CLI
def test_with_predicted_time_refuses_a_batch_naming_the_exact_sweep():
    need(EE)
    cache = kind_of(EE).loader()(EE)
    prof = lat.load_profile(PROFILE)
    with pytest.raises(ValueError, match=r"latency\.time_sweep.*batch_size=8"):
        lat.with_predicted_time(engine.staged(cache), prof, cache.n_tokens, models=["all-MiniLM-L6-v2"], batch=8)
    one = lat.with_predicted_time(engine.staged(cache), prof, cache.n_tokens, models=["all-MiniLM-L6-v2"], batch=1)
    np.testing.assert_allclose(engine.sweep(one).frame["flops"],
                               exact_of(EE, 1).frame["flops"], rtol=1e-9)  # batch 1: no batch effect


def test_sweep_and_plot_share_the_profile_flags(capsys):
    from toolkit.cli import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None) and "plot" in a.choices)
    flags = {}
    for name in ("sweep", "plot"):
        acts = {a.dest: a for a in sub.choices[name]._actions if a.dest in ("profile", "profile_model", "batch")}
        flags[name] = {k: (a.option_strings, a.help, a.default, a.type, a.nargs) for k, a in acts.items()}
    assert flags["sweep"].keys() == {"profile", "profile_model", "batch"}
    assert {k: v[2:] for k, v in flags["sweep"].items()} == {k: v[2:] for k, v in flags["plot"].items()}
    assert flags["sweep"]["batch"][1] == flags["plot"]["batch"][1]  # one help text: exact at every threshold
    need(EE)
    assert main(["sweep", str(EE), "--profile", str(PROFILE), "--batch", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    curve = exact_of(EE, 8)
    assert out["cost_unit"] == curve.meta["cost_unit"] and out["reference_cost"] == curve.meta["reference_ms"]
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(EE), "--profile", str(PROFILE), "--batch", "0"])
    assert e.value.code == 2 and "--batch: '0' must be >= 1" in capsys.readouterr().err
