import numpy as np
import pytest

from conftest import exit_cache
from toolkit.analysis import reliability
from toolkit.analysis.operating import operating_point
from toolkit.caches.classification import from_arrays


def test_operating_point_checks_and_runs():
    cal, test = exit_cache(400, 4), exit_cache(400, 5, "test")
    op = operating_point(cal, test, rule="drop", max_drop=0.01)
    assert op.point.rule == "drop" and op.point.metric == "accuracy" and op.point.cal.drop() <= 0.01 + 1e-12
    assert len(op.temperatures) == 4 and op.test.split == "test" and op.test.n == 400
    # the test evaluation is the chosen threshold applied to test with the cal temperatures, nothing refitted
    from toolkit.analysis import engine as en

    again = en.evaluation(en.staged(test, temperature=op.temperatures), op.point.threshold)
    assert again.metrics == op.test.metrics and again.speedup == op.test.speedup
    risk = operating_point(cal, test, rule="risk", delta=0.02)
    assert risk.point.threshold == en.certify(en.staged(cal, temperature=risk.temperatures), delta=0.02,
                                              epsilon=0.05).threshold
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
    rc = reliability.risk_coverage(c, stage=0)
    assert rc["coverage"].tolist() == [0.5, 1.0] and rc["risk"].tolist() == [0.0, 0.0]
    ca = reliability.confident_accuracy(c, 0.75)
    assert ca["confident_share"].tolist() == [0.5, 0.5, 0.5]
    ag = reliability.agreement_at_thresholds(c, [0.85])
    assert ag["early_share"].tolist() == [0.5] and ag["early_agreement"].tolist() == [0.0]
