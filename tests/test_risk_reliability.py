import numpy as np
import pytest
from scipy.stats import binom

from toolkit.analysis import reliability
from toolkit.analysis.cache import from_arrays
from toolkit.analysis.operating import operating_point
from toolkit.analysis.risk import ltt_table, risk_controlled_threshold


def synthetic(N, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    lg = rng.normal(size=(N, 4, 2))
    lg[np.arange(N), :, y] += np.linspace(0.3, 2.5, 4)
    return from_arrays(lg, y, np.cumsum(np.ones((N, 4)), 1), meta={"split": "cal"})


def test_ltt_table_brute_force():
    c = synthetic(300, 0)
    t = ltt_table(c, 0.05)
    from toolkit.analysis.policies import early_exit

    for _, row in t.iloc[::17].iterrows():
        r = early_exit(c, row["threshold"])
        flips = int((c.correct[:, -1] & (r.prediction != c.labels)).sum())
        assert row["flips"] == flips
        assert row["p_value"] == pytest.approx(binom.cdf(flips, 300, 0.05))


def test_fixed_sequence_stops_at_first_failure():
    c = synthetic(500, 1)
    r = risk_controlled_threshold(c, delta=0.03, epsilon=0.1)
    t = ltt_table(c, 0.03)
    k = r["n_rejected"]
    assert (t["p_value"].iloc[:k] <= 0.1).all()
    assert k == len(t) or t["p_value"].iloc[k] > 0.1
    assert r["threshold"] == t["threshold"].iloc[k - 1]


def test_risk_control_holds_in_simulation():
    """Over many cal draws from one population, the chosen threshold's true risk exceeds delta in at most
    about epsilon of them."""
    pop = synthetic(200_000, 2)
    delta, eps, fails = 0.04, 0.2, 0
    rng = np.random.default_rng(3)
    trials = 60
    for _ in range(trials):
        cal = pop.subset(rng.integers(0, pop.n_examples, 400))
        r = risk_controlled_threshold(cal, delta, eps, test=pop)
        fails += r["test_risk"] > delta
    assert fails / trials <= eps + 0.1  # binomial slack for 60 trials


def test_bad_risk_args():
    c = synthetic(50, 0)
    with pytest.raises(ValueError, match="delta"):
        risk_controlled_threshold(c, delta=0)
    with pytest.raises(ValueError, match="epsilon"):
        risk_controlled_threshold(c, epsilon=1.5)


def test_operating_point_checks_and_runs():
    cal, test = synthetic(400, 4), synthetic(400, 5)
    test.meta["split"] = "test"
    op = operating_point(cal, test, rule="drop", max_drop=0.01)
    assert set(op) >= {"temperatures", "threshold", "cal", "test", "test_full_model"}
    assert op["cal"]["metric"] >= op["test_full_model"]["metric"] - 0.2
    op2 = operating_point(cal, test, rule="risk", delta=0.02)
    assert op2["test"]["speedup"] >= 1.0
    other = from_arrays(np.zeros((3, 2, 2)), [0, 1, 0], [1.0, 2.0], stages=["x", "y"])
    with pytest.raises(ValueError, match="different stages"):
        operating_point(cal, other)
    with pytest.raises(ValueError, match="fit on a cal cache"):
        operating_point(test, cal)


def test_reliability_reference():
    lg = np.log(np.array([[[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]],
                          [[0.6, 0.4], [0.7, 0.3], [0.8, 0.2]]]))
    c = from_arrays(lg, [0, 0], [1.0, 2.0, 3.0])
    assert reliability.agreement_with_final(c).tolist() == [0.5, 1.0, 1.0]
    ov = reliability.overthinking(c)
    assert ov["right_here_wrong_final"].tolist() == [0.5, 0.0, 0.0]
    assert ov.attrs["any_earlier_right_final_wrong"] == 0.5
    assert reliability.oracle_exits(c)["count"].tolist() == [2, 0, 0, 0]
    rc = reliability.risk_coverage(c, 0)
    assert rc["coverage"].tolist() == [0.5, 1.0] and rc["risk"].tolist() == [0.0, 0.0]
    ca = reliability.confident_accuracy(c, 0.75)
    assert ca["confident_share"].tolist() == [0.5, 0.5, 0.5]
    ag = reliability.agreement_at_thresholds(c, [0.85])
    assert ag["early_share"].tolist() == [0.5] and ag["early_agreement"].tolist() == [0.0]
