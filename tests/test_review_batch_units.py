"""Hostile review of the batch > 1 curves and the 0.3 temperature fits (commits db4bb86, 5042b47).

- ``toolkit plot --profile --batch B --x flops``: the operating point's cost is the exact curve's predicted ms, so
  its unit must say so; it kept the view's ``FLOPs`` and was drawn at ms x 1e-9 (next to 0 on a ms axis).
- ``fit_stage_temperatures`` returned an array in 0.2: indexing and iterating it still give the temperatures.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "benchmarks" / "latency_profile_cpu.json"
EE = REPO / "data" / "sst2" / "minilm6_me-test.parquet"
CAL = REPO / "data" / "sst2" / "minilm6_me-cal.parquet"


def need(*paths):
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shipped files not here: {missing}")


def test_plot_point_at_a_batch_on_the_cost_axis_sits_at_its_predicted_ms(tmp_path):
    import matplotlib.pyplot as plt

    from toolkit.cli import build_parser
    from toolkit.cli.plot import figure

    need(PROFILE, EE, CAL)
    args = ["plot", str(EE), "--out", str(tmp_path / "f.png"), "--n-boot", "20", "--profile", str(PROFILE),
            "--batch", "8", "--rule", "drop", "--x", "flops"]
    fig, shown = figure(build_parser().parse_args(args))
    ms = shown["operating_point"]["test_flops"]
    assert 1 < ms < 1000  # predicted ms per example
    (curve,) = [x for x in fig.axes[0].lines if "the runtime's batches (exact)" in x.get_label()]
    lo, hi = curve.get_xdata().min(), curve.get_xdata().max()
    xs = [float(np.ravel(x.get_xdata())[0]) for x in fig.axes[0].lines if x is not curve and len(x.get_xdata())
          and x.get_label() != "_child0"]
    plt.close(fig)
    assert xs and all(lo <= x <= hi for x in xs), (xs, lo, hi)  # the point sits on the exact curve's cost range
    assert any(x == pytest.approx(ms) for x in xs), (xs, ms)


def test_plot_at_exact_gives_the_curves_cost_unit():
    from toolkit.analysis import engine
    from toolkit.analysis.cost import latency as lat
    from toolkit.caches.classification import load_cache
    from toolkit.cli.plot import at_exact

    need(PROFILE, EE)
    cache = load_cache(EE)
    prof = lat.load_profile(PROFILE)
    view = engine.staged(cache)
    curve = lat.encoder_time_sweep(view, prof, n_tokens=cache.n_tokens, models=lat.models_for(cache.meta, prof),
                                   batch_size=8)
    ev = at_exact(engine.evaluation(view, 0.9), curve)
    assert ev.cost_unit == curve.meta["cost_unit"] != "FLOPs"


def test_stage_temperature_fits_index_and_iterate_as_0_2s_array():
    from toolkit.analysis.metrics.calibration import fit_stage_temperatures
    from toolkit.caches.classification import load_cache

    need(CAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_stage_temperatures(load_cache(CAL))
    t = fits.temperatures
    assert fits[2] == t[2] and fits[-1] == t[-1]
    np.testing.assert_array_equal(fits[1:3], t[1:3])
    assert list(fits) == t.tolist() and len(list(fits)) == len(fits)


def test_token_view_refusal_at_a_batch_names_a_call_that_runs():
    """The refusal's suggested call must run as written: calm_time_sweep needs model= (it named no model)."""
    import re

    from toolkit.analysis import engine
    from toolkit.analysis.cost import latency as lat
    from toolkit.caches.kinds import kind_of

    tokens = REPO / "data" / "llm" / "smollm2_sst2_sentiment-test.parquet"
    need(PROFILE, tokens)
    view = engine.staged(kind_of(tokens).loader()(tokens), score="max_prob", temperature=1.0)
    prof = lat.load_profile(PROFILE)
    with pytest.raises(ValueError) as err:
        lat.with_predicted_time(view, prof, None, models=["SmolLM2-135M-Instruct"], batch=8)
    call = re.search(r"latency\.(calm_time_sweep\(.*?\))", str(err.value)).group(1)
    curve = eval(f"lat.{call}", {"lat": lat, "view": view, "profile": prof})
    assert "batch 8" in curve.meta["cost_unit"]


# ------------------------------------------------------------------------------------------------ seeds of one run
def _runs(n_runs=3, n=300):
    from toolkit.analysis import engine
    from toolkit.testing import random_classification_cache

    from toolkit.caches.classification import from_arrays

    y = random_classification_cache(n, 3, 2, seed=0).labels  # one test set, runs of different logits
    caches = [from_arrays(np.asarray(random_classification_cache(n, 3, 2, seed=s).logits), y,
                          np.cumsum(np.ones((n, 3)), 1) * 1e9, meta={"split": "test", "task": "synthetic",
                                                                     "metric": "accuracy"})
              for s in range(n_runs)]
    return ([engine.staged(c, score="max_prob") for c in caches], [engine.staged(c, score="margin") for c in caches])


def test_same_runs_compared_with_themselves_differ_by_exactly_zero():
    """One run scored one way on both sides: with the runs resampled together the difference is 0 in every
    resample; resampled apart (the default, for policies trained apart) the runs' spread enters it."""
    from toolkit.analysis import engine

    a, _ = _runs()
    b = [v.with_reference(v.reference_cost, v.reference) for v in a]  # the same runs, other objects
    for fn, kw in ((engine.compare, dict(budgets=(1.5,))), (engine.compare_speedups, dict(max_drop=0.02)),
                   (engine.compare_crossfit, dict(rule="budget", budget=1.5))):
        same = fn(a, b, n_boot=200, same_runs=True, **kw).frame.iloc[0]
        assert (same["lo"], same["hi"], same["difference"]) == (0.0, 0.0, 0.0), fn.__name__
        assert same["seeds"] == "3 / 3 (same runs)"
        apart = fn(a, b, n_boot=200, **kw).frame.iloc[0]
        assert apart["hi"] - apart["lo"] > 0 and apart["seeds"] == "3 / 3", fn.__name__


def test_same_runs_refuses_sides_of_different_run_counts():
    from toolkit.analysis import engine

    a, b = _runs()
    with pytest.raises(ValueError, match="sides hold 3 and 2 runs"):
        engine.compare(a, b[:2], budgets=(1.5,), n_boot=50, same_runs=True)


def test_claims_resample_one_runs_two_scorings_together():
    from toolkit.zoo import catalogue, claims

    if not catalogue.available("mrpc", "cascade") or len(catalogue.seeds_on_disk("mrpc", "cascade")) < 2:
        pytest.skip("MRPC cascade seeds not shipped here")
    (row,) = [r for r in claims.elang(tasks=("mrpc",)) if "encoders" in r["claim"]]
    assert row["seeds"].endswith("(same runs)")
