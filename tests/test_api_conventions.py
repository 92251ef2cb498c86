"""The analysis side's calling conventions (docs/protocol.md, "Calling conventions"): data positional, options
keyword-only with the old positional form refused by a TypeError that shows the call to write; predictions first,
labels second, a visibly swapped call refused; one name per concept, old names warning for one release."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import toolkit
import toolkit._api
from toolkit._api import keyword_options

PACKAGES = ("toolkit.analysis", "toolkit.caches", "toolkit.imports")


def _modules():
    out = [importlib.import_module("toolkit.testing")]
    for root in PACKAGES:
        pkg = importlib.import_module(root)
        out += [pkg] + [importlib.import_module(m.name) for m in pkgutil.walk_packages(pkg.__path__, root + ".")]
    return out


def _public_functions():
    """(qualified name, function) of every public function and method defined on the analysis side."""
    seen = {}
    for mod in _modules():
        for name, obj in vars(mod).items():
            if name.startswith("_"):
                continue
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                for k, v in vars(obj).items():
                    v = getattr(v, "__func__", v)
                    if not k.startswith("_") and inspect.isfunction(v):
                        seen[f"{mod.__name__}.{obj.__name__}.{k}"] = v
            elif inspect.isfunction(obj) and obj.__module__ == mod.__name__:
                seen[f"{mod.__name__}.{name}"] = obj
    return seen


FUNCTIONS = _public_functions()
GUARDED = {k: v for k, v in FUNCTIONS.items() if hasattr(v, "__keyword_options__")}

# what the analysis side guards (the examples among them); a decorator dropped from one fails here
EXPECTED = {
    "toolkit.analysis.metrics.calibration." + n for n in (
        "bin_index", "ece", "confidence_ece", "nll_logits", "reliability_curve", "confidence_reliability_curve",
        "fit_temperature", "calibration_table")} | {
    "toolkit.analysis.metrics.task.confusion_matrix", "toolkit.analysis.metrics.task.task_metric",
    "toolkit.analysis.metrics.task.f1_from_confusion", "toolkit.analysis.metrics.generation.corpus_chrf",
    "toolkit.analysis.metrics.generation.corpus_score", "toolkit.analysis.engine.choose.halves",
    "toolkit.analysis.llm.exits.layer_confidence", "toolkit.analysis.llm.exits.self_speculative",
    "toolkit.analysis.reliability.risk_coverage", "toolkit.analysis.reliability.confident_accuracy",
    "toolkit.analysis.reliability.agreement_at_thresholds", "toolkit.analysis.scores.tokens.token_scores",
    "toolkit.analysis.plots.curves.reliability_grid", "toolkit.analysis.plots.curves.score_distributions",
    "toolkit.analysis.scores.tokens.aggregate", "toolkit.analysis.scores.tokens.sequence_confidence",
    "toolkit.caches.classification.from_arrays", "toolkit.caches.classification.verify_fingerprint"} | {
    "toolkit.analysis.scores.classification." + n for n in (
        "softmax", "max_prob", "margin", "entropy", "energy", "elang", "confidence", "stage_confidence")}


def _positional(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def test_every_expected_function_is_guarded():
    assert set(GUARDED) >= EXPECTED, sorted(EXPECTED - set(GUARDED))


@pytest.mark.parametrize("name", sorted(GUARDED))
def test_options_by_position_are_refused_naming_the_keyword(name):
    fn = GUARDED[name]
    data = _positional(fn)
    first = fn.__keyword_options__[0]
    with pytest.raises(TypeError, match=rf"takes its options by keyword since 0\.3: .*\b{first}=7\)$"):
        fn(*[object()] * len(data), 7)  # refused before the body runs: the data need not be real


@pytest.mark.parametrize("name", sorted(GUARDED))
def test_guarded_signatures_are_keyword_only(name):
    params = inspect.signature(GUARDED[name]).parameters.values()
    assert all(p.default is inspect.Parameter.empty for p in params
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)), f"{name} has a positional option"


# not options of an analysis: accessors whose argument names what to read (like ``frame[column]``), validators
# whose trailing arguments name the caller in their error, and text helpers for axis labels
EXEMPT = {
    "toolkit.analysis.engine.results.Evaluation.drop", "toolkit.analysis.engine.results.Evaluation.drop_interval",
    "toolkit.analysis.explore.app.Explorer.examples", "toolkit.analysis.explore.app.Explorer.reliability",
    "toolkit.analysis.explore.views.Point.at", "toolkit.analysis.explore.views.n_boot_for",
    "toolkit.analysis.llm.intervals.CalmPoints.point",
    "toolkit.analysis.engine.curves.check_bootstrap", "toolkit.caches.generation.check_temperatures",
    "toolkit.caches.io.check_regular_file", "toolkit.imports.records.field",
    "toolkit.analysis.plots.curves.speedup_label", "toolkit.analysis.plots.curves.cost_axis_label",
    "toolkit.caches.inputs.cost_label"}


def test_no_public_function_takes_a_defaulted_option_by_position():
    """Going forward: an option with a default after the data is keyword-only on the analysis side."""
    allowed = {"toolkit.analysis.cost.encoder.layer_flops"}  # attn_dim: a dimension of the layer, like hidden
    allowed |= EXEMPT
    bad = sorted(k for k, fn in FUNCTIONS.items() if k not in allowed and any(
        p.default is not inspect.Parameter.empty
        for p in inspect.signature(fn).parameters.values() if p.kind == p.POSITIONAL_OR_KEYWORD))
    assert not bad, bad


def test_the_refusal_shows_the_old_call_rewritten():
    from toolkit.analysis.metrics.calibration import ece

    p, y = np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 1])
    with pytest.raises(TypeError, match=r"^ece\(\) takes its options by keyword since 0\.3: "
                                        r"ece\(probs, labels, n_bins=10, binning='quantile'\)$"):
        ece(p, y, 10, "quantile")
    assert ece(p, y, n_bins=10, binning="quantile") == ece(p, y, binning="quantile", n_bins=10)
    with pytest.raises(TypeError, match=r"takes 2 data argument\(s\) \(probs, labels\) and its options by keyword"):
        ece(p, y, 1, 2, 3, 4, 5)


@given(n_data=st.integers(0, 3), n_options=st.integers(1, 3), extra=st.integers(0, 5))
def test_keyword_options_refuses_exactly_the_extra_positionals(n_data, n_options, extra):
    data = [f"d{i}" for i in range(n_data)]
    options = [f"o{i}" for i in range(n_options)]
    src = f"def f({', '.join(data + ['*'] + [o + '=None' for o in options])}):\n    return locals()"
    ns = {}
    exec(src, ns)
    f = keyword_options(ns["f"])
    args = list(range(n_data + extra))
    if extra == 0:
        assert f(*args) == {**dict(zip(data, args)), **dict.fromkeys(options)}
        return
    with pytest.raises(TypeError, match=r"^f\(\) takes") as err:
        f(*args)
    if extra <= n_options:
        shown = ", ".join(data + [f"{o}={v}" for o, v in zip(options, args[n_data:])])
        assert str(err.value) == f"f() takes its options by keyword since 0.3: f({shown})"


def test_keyword_options_needs_keyword_only_options():
    with pytest.raises(TypeError, match="none"):
        keyword_options(lambda a, b=1: a)


def test_docstring_examples_of_the_convention():
    assert doctest.testmod(toolkit._api).failed == 0


# ------------------------------------------------------------------------------------------------- argument order
def test_predictions_first_everywhere():
    from toolkit.analysis.metrics.calibration import confidence_ece, ece, fit_temperature, nll_logits
    from toolkit.analysis.metrics.task import confusion_matrix, task_metric

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    z = rng.normal(size=(60, 3)) + 2 * np.eye(3)[y]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    for call in (lambda: ece(y, p), lambda: fit_temperature(y, z), lambda: nll_logits(y, z),
                 lambda: ece(y, p[:, 1] / p[:, :2].sum(1)),
                 lambda: confidence_ece(p.argmax(1) == y, p.max(1))):
        with pytest.raises(TypeError, match="look swapped; the analysis side takes predictions first"):
            call()
    pred = z.argmax(1)
    cm = confusion_matrix(pred, y)
    assert cm[y[0], pred[0]] >= 1 and cm.sum() == 60
    np.testing.assert_array_equal(cm, confusion_matrix(y, pred).T)  # the one order a call cannot reveal
    for m in ("accuracy", "f1", "mcc"):  # symmetric: an old-order call gives the same number
        yb, pb = (y > 0).astype(int), (pred > 0).astype(int)
        assert task_metric(pb, yb, metric=m) == task_metric(yb, pb, metric=m)


# ------------------------------------------------------------------------------------------------- one name each
@pytest.mark.parametrize("module, old, new", [
    ("toolkit.analysis.metrics.calibration", "temperature_fit", "fit_temperature"),
    ("toolkit.analysis.metrics.calibration", "stage_temperature_fits", "fit_stage_temperatures"),
    ("toolkit.analysis.llm.exits", "confidence", "layer_confidence"),
    ("toolkit.analysis.llm", "confidence", "layer_confidence"),
    ("toolkit.analysis.operating", "CacheOperatingPoint", "OperatingPointReport"),
])
def test_old_names_warn_and_point_to_the_new_one(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{old} is renamed {new} since 0\.3"):
        obj = getattr(mod, old)
    assert obj is getattr(mod, new) or obj.__name__.lstrip("_") == old
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(mod, new)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        mod.no_such_name  # noqa: B018


def test_fit_temperature_is_the_one_fit():
    from toolkit.analysis.metrics.calibration import TemperatureFit, fit_temperature

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    z = rng.normal(size=(400, 3)) + 1.5 * np.eye(3)[y]
    fit = fit_temperature(z, y)
    assert isinstance(fit, TemperatureFit) and fit.reason is None and float(fit) == fit.temperature
    with pytest.warns(DeprecationWarning):
        from toolkit.analysis.metrics.calibration import temperature_fit
    assert temperature_fit(z, y) == fit


# per-stage temperatures of the shipped SST-2 MiniLM-L6 cal cache, as 0.2's fit_stage_temperatures returned them
SST2_CAL_TEMPERATURES = [1.0070932324961874, 1.0534618142987784, 1.0887129893403655, 1.1013181301769488,
                         1.1058953743750064, 1.1474440033343358]


def test_fit_stage_temperatures_is_the_one_per_stage_fit():
    from toolkit.analysis.metrics.calibration import (
        StageTemperatureFits,
        TemperatureFit,
        fit_stage_temperatures,
    )

    cal = toolkit.load_cache(Path(toolkit.__file__).parents[1] / "data" / "sst2" / "minilm6_me-cal.parquet",
                             verify_data=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no degenerate stage here, and the new name does not warn
        fits = fit_stage_temperatures(cal)
    assert isinstance(fits, StageTemperatureFits) and not hasattr(fits, "__float__")
    np.testing.assert_allclose(fits.temperatures, SST2_CAL_TEMPERATURES, rtol=1e-9)
    np.testing.assert_array_equal(np.asarray(fits), fits.temperatures)
    assert all(isinstance(f, TemperatureFit) and f.reason is None and f.n == cal.n_examples for f in fits.fits)
    assert fits.degenerate == () and len(fits) == cal.n_stages == len(fits.to_frame())
    assert list(fits.to_frame()["stage"]) == list(cal.stages) and fits.to_dict()["temperatures"] == list(fits.temperatures)
    with pytest.warns(DeprecationWarning, match="stage_temperature_fits is renamed fit_stage_temperatures"):
        from toolkit.analysis.metrics.calibration import stage_temperature_fits
    assert stage_temperature_fits(cal) == list(fits.fits)


def test_fit_stage_temperatures_names_each_degenerate_stage():
    from toolkit.analysis.metrics.calibration import DegenerateFitWarning, fit_stage_temperatures
    from toolkit.caches.classification import from_arrays

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    z = rng.normal(size=(200, 2)) + 2 * np.eye(2)[y]
    separable = 10 * (2 * np.eye(2)[y] - 1)  # every example right with a wide margin: T runs to its lower bound
    c = from_arrays(np.stack([z, separable], 1), y, [1.0, 2.0], stages=["s0", "s1"])
    with pytest.warns(DegenerateFitWarning, match="stage s1: temperature ran to its lower bound"):
        fits = fit_stage_temperatures(c)
    assert fits.fits[1].at_bound and not fits.fits[0].at_bound
    assert fits.degenerate == (f"stage s1: {fits.fits[1].reason}",) and "s1" in repr(fits)


def test_the_two_confidences_are_distinct_names():
    from toolkit.analysis.llm import exits
    from toolkit.analysis.scores import classification

    assert "layer_confidence" in vars(exits) and "confidence" not in vars(exits)
    assert callable(classification.confidence) and not hasattr(classification, "layer_confidence")
    assert toolkit.analysis.llm.layer_confidence is exits.layer_confidence
