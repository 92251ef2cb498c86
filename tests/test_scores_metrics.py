import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

import toolkit.analysis.scores.classification as scores
from toolkit.analysis.metrics.task import accuracy, f1, mcc, task_metric


def test_exact_values():
    z = np.array([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(scores.max_prob(z), [1 / (1 + np.exp(-2)), 0.5])
    np.testing.assert_allclose(scores.margin(z), [np.tanh(1.0), 0.0], atol=1e-12)
    np.testing.assert_allclose(scores.entropy(z)[1], np.log(2))
    np.testing.assert_allclose(scores.energy(z), [-np.log(np.exp(2) + 1), -np.log(2)])
    np.testing.assert_allclose(scores.energy(z, temperature=2.0), [-2 * np.log(np.exp(1) + 1), -2 * np.log(2)])
    np.testing.assert_allclose(scores.max_prob(z, temperature=2.0)[0], 1 / (1 + np.exp(-1)))


def test_confidence_orientation():
    z = np.array([[3.0, 0.0], [0.5, 0.0]])
    for s in scores.SCORES:
        c = scores.confidence(z, score=s)
        assert c[0] > c[1], s


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (20, 2), elements=st.floats(-8, 8)))
def test_elang_ranks_like_max_prob_for_two_classes(z):
    a, b = scores.elang(z), scores.max_prob(z)
    # a strictly increasing function of max-prob for C = 2: same order (up to float ties)
    order = np.argsort(b, kind="stable")
    assert (np.diff(a[order]) >= -1e-12).all()


def test_energy_is_not_max_prob_ranking():
    z = np.array([[5.0, 4.0], [1.0, -1.0]])  # higher logsumexp but lower max-prob
    assert scores.max_prob(z)[1] > scores.max_prob(z)[0]
    assert scores.confidence(z, score="energy")[0] > scores.confidence(z, score="energy")[1]


def test_errors():
    with pytest.raises(ValueError, match="unknown score"):
        scores.confidence(np.zeros((2, 2)), score="bogus")
    with pytest.raises(ValueError, match="NaN"):
        scores.max_prob(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="temperature"):
        scores.max_prob(np.zeros((2, 2)), temperature=0)
    with pytest.raises(ValueError, match="size >= 2"):
        scores.max_prob(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="3 temperatures for 2 stages"):
        scores.stage_confidence(np.zeros((4, 2, 2)), score="max_prob", temperature=[1, 1, 1])


def test_metric_reference_values():
    y, p = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert accuracy(p, y) == 0.75
    assert f1(p, y) == pytest.approx(2 / 3)
    assert mcc(p, y) == pytest.approx(1 / np.sqrt(3))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_metrics_match_sklearn(C, seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, C, 50), rng.integers(0, C, 50)
    assert task_metric(p, y, metric="accuracy", n_classes=C) == pytest.approx(accuracy_score(y, p))
    assert task_metric(p, y, metric="mcc", n_classes=C) == pytest.approx(matthews_corrcoef(y, p), abs=1e-12)
    if C == 2:
        assert task_metric(p, y, metric="f1", n_classes=C) == pytest.approx(f1_score(y, p, zero_division=0))
