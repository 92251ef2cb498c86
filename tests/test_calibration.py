import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from conftest import random_cache
from toolkit.analysis.metrics.calibration import (
    DegenerateFitWarning,
    bin_index,
    brier,
    calibration_table,
    ece,
    fit_stage_temperatures,
    fit_temperature,
    nll,
    nll_logits,
    reliability_curve,
)


def test_torchmetrics_binary_reference():
    p, y = np.array([.25, .25, .55, .75, .75]), np.array([0, 0, 1, 1, 1])
    assert ece(p, y, n_bins=2) == pytest.approx(0.29)
    assert ece(np.stack([1 - p, p], 1), y, n_bins=2) == pytest.approx(0.29)


def test_torchmetrics_multiclass_reference():
    p = np.array([[.25, .20, .55], [.55, .05, .40], [.10, .30, .60], [.90, .05, .05]])
    y = np.array([0, 1, 2, 0])
    assert ece(p, y, n_bins=3) == pytest.approx(0.20)
    # l2 and max by hand: bins [1/3,2/3): conf .5667 acc 1/3 (3 ex), [2/3,1]: conf .9 acc 1 (1 ex)
    g1, g2 = abs(1 / 3 - (0.55 + 0.55 + 0.60) / 3), 0.1
    assert ece(p, y, n_bins=3, norm="max") == pytest.approx(max(g1, g2))
    assert ece(p, y, n_bins=3, norm="l2") == pytest.approx(np.sqrt(0.75 * g1 ** 2 + 0.25 * g2 ** 2))


def test_edge_conventions():
    # a confidence on a bin edge goes to the upper bin; 1.0 goes to the last bin
    idx, _ = bin_index(np.array([0.5, 0.4999, 1.0, 0.0, 0.3]), n_bins=10)
    assert idx.tolist() == [5, 4, 9, 0, 3]
    p = np.array([[0.5, 0.5], [0.0, 1.0]])
    y = np.array([0, 1])
    # top-label: first row conf .5 correct (argmax 0), second conf 1.0 correct -> bins 1 and last, gaps .5 and 0
    assert ece(p, y, n_bins=2) == pytest.approx(0.25)


def test_multiclass_with_two_labels_present_stays_multiclass():
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(size=(40, 3)), axis=1)
    y = rng.choice([0, 2], 40)
    cw = ece(p, y, n_bins=10, mode="classwise")
    per = [ece(np.stack([1 - p[:, k], p[:, k]], 1), (y == k).astype(int), n_bins=10, mode="classwise") for k in range(3)]
    # classwise averages over all 3 classes, including the absent class 1
    manual = []
    for k in range(3):
        conf, acc = p[:, k], (y == k).astype(float)
        idx = np.minimum((conf * 10).astype(int), 9)
        manual.append(sum(abs(acc[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
                          for b in range(10) if (idx == b).any()))
    assert cw == pytest.approx(np.mean(manual))
    # each class's one-vs-rest ECE is the binary problem's classwise ECE; the absent class 1 counts as well
    np.testing.assert_allclose(per, manual)
    assert cw != pytest.approx(np.mean([manual[0], manual[2]]))


def test_brier_nll_reference():
    p, y = np.array([[0.8, 0.2], [0.4, 0.6]]), np.array([0, 0])
    assert brier(p, y) == pytest.approx(((0.2 ** 2 * 2) + (0.6 ** 2 * 2)) / 2)
    assert nll(p, y) == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)


def test_quantile_bins_equal_mass():
    conf = np.linspace(0.5, 1.0, 100, endpoint=False)
    idx, _ = bin_index(conf, n_bins=4, binning="quantile")
    assert np.bincount(idx).tolist() == [25, 25, 25, 25]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.2, 2.5))
def test_fit_temperature_is_nll_minimiser(seed, scale):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 200)
    z = rng.normal(size=(200, 3)) * scale
    z[np.arange(200), y] += 1.0
    t = fit_temperature(z, y).temperature
    ref = minimize_scalar(lambda lt: nll_logits(z, y, temperature=np.exp(lt)), bounds=(np.log(0.01), np.log(100)),
                          method="bounded", options={"xatol": 1e-10})
    assert nll_logits(z, y, temperature=t) <= nll_logits(z, y, temperature=np.exp(ref.x)) + 1e-9
    for tt in (max(t * 0.99, 0.01), min(t * 1.01, 100.0)):  # neighbours inside the search bounds
        assert nll_logits(z, y, temperature=t) <= nll_logits(z, y, temperature=tt) * (1 + 1e-7) + 1e-12


def test_fit_temperature_at_bound_when_logits_carry_no_signal():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(500, 3)) * 5, rng.integers(0, 3, 500)
    with pytest.warns(DegenerateFitWarning, match="upper bound 100: the logits carry no signal"):
        assert fit_temperature(z, y).temperature == pytest.approx(100.0, rel=1e-3)  # NLL falls towards log 3 as T grows


def test_degenerate_temperature_fits_warn_and_say_why():
    # a tiny separable cal set: every example right, so the NLL falls as T shrinks; the old code returned 0.01
    # silently and an operating point chosen with it lost points on test
    z, y = np.array([[3.0, 0.0], [0.0, 2.0], [1.5, 0.2], [0.1, 0.9]]), np.array([0, 1, 0, 1])
    with pytest.warns(DegenerateFitWarning, match="lower bound 0.01: the cal set is separable at this stage"):
        fit = fit_temperature(z, y)
    assert fit.temperature == pytest.approx(0.01, rel=1e-3) and float(fit) == fit.temperature
    assert fit.at_bound and fit.n == 4 and "separable" in fit.reason
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 20)
    z = rng.normal(size=(20, 2)) + np.eye(2)[y]  # some signal, some errors: an interior optimum on 20 examples
    with pytest.warns(DegenerateFitWarning, match="only 20 examples"):
        fit = fit_temperature(z, y)
    assert not fit.at_bound and "only 20 examples" in fit.reason
    with pytest.warns(DegenerateFitWarning, match="stage s1: temperature"):
        from toolkit.caches.classification import from_arrays

        c = from_arrays(np.stack([z, z * 0 + [[3.0, 0.0]]], 1), y, [1.0, 2.0], stages=["s0", "s1"])
        fit_stage_temperatures(c)
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    z = rng.normal(size=(400, 3)) + 1.5 * np.eye(3)[y]
    assert fit_temperature(z, y).reason is None


def test_bad_inputs():
    with pytest.raises(ValueError, match="sum to 1"):
        ece(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels must be integers"):
        ece(np.array([[0.5, 0.5]]), np.array([3]))
    with pytest.raises(ValueError, match="NaN"):
        ece(np.array([[np.nan, 0.5]]), np.array([0]))
    with pytest.raises(ValueError, match="unknown binning"):
        ece(np.array([[0.5, 0.5]]), np.array([0]), binning="adaptive")
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))


def test_reliability_curve_and_table():
    c = random_cache(200, 3, 2, ties=False)
    rc = reliability_curve(softmax(c.logits[:, 0], axis=1), c.labels, n_bins=10)
    assert rc["count"].sum() == 200 and len(rc) == 10
    tab = calibration_table(c, temperatures=[1.0, 1.0, 1.0])
    assert list(tab["stage"]) == c.stages and (tab["ece"] >= 0).all()
