import numpy as np
import pandas as pd
import pytest

from conftest import random_cache
from toolkit.analysis import engine as en
from toolkit.analysis import policies
from toolkit.analysis.scores.classification import stage_confidence


def test_patience_matches_brute_force():
    c = random_cache(60, 6, 3, seed=3)
    df = policies.patience_sweep(c).frame
    assert df["patience"].tolist() == [1, 2, 3, 4, 5, 6]
    pred = c.predictions
    for _, row in df.iterrows():
        P = int(row["patience"])
        st = []
        for n in range(c.n_examples):
            cnt, stop = 0, c.n_stages - 1
            for e in range(1, c.n_stages):
                cnt = cnt + 1 if pred[n, e] == pred[n, e - 1] else 0
                if cnt >= P:
                    stop = e
                    break
            st.append(stop)
        st = np.array(st)
        assert row["accuracy"] == pytest.approx((pred[np.arange(60), st] == c.labels).mean())
        assert row["flops"] == pytest.approx(c.flops[np.arange(60), st].mean())


def test_policies_brute_force_and_oracle():
    c = random_cache(80, 4, 2, seed=5)
    r = policies.early_exit(c, 0.8)
    conf = stage_confidence(c.logits, score="max_prob")
    for n in range(80):
        e = next((e for e in range(3) if conf[n, e] >= 0.8), 3)
        assert r.exit_stage[n] == e
    per = policies.early_exit(c, [0.9, 0.7, 0.95])
    assert ((per.exit_stage == 1) <= (conf[:, 1] >= 0.7)).all()
    o = policies.oracle(c)
    cor = c.correct
    assert (cor[np.arange(80), o.exit_stage] | ~cor.any(1)).all()
    view = en.staged(c)
    assert o.evaluate(view)["accuracy"] == pytest.approx(cor.any(1).mean())
    assert en.oracle(view)["accuracy"] == pytest.approx(cor.any(1).mean())
    np.testing.assert_allclose(en.oracle(view).flops, o.flops.mean())
    assert policies.patience(c, 10).exit_stage.tolist() == [3] * 80
    with pytest.raises(ValueError):
        policies.patience(c, 0)


def test_hybrid_routes_through_swift_then_super():
    info = [{"name": f"s{i}", "model_index": 0} for i in range(3)] + [{"name": "super", "model_index": 1}]
    c = random_cache(100, 4, 2, seed=1)
    c.stage_info = info
    r = policies.hybrid(c, swift_threshold=0.9, escalate_threshold=0.6)
    conf = stage_confidence(c.logits, score="max_prob")
    expect = np.where(conf[:, 0] >= 0.9, 0, np.where(conf[:, 1] >= 0.9, 1, np.where(conf[:, 2] >= 0.6, 2, 3)))
    assert (r.exit_stage == expect).all()
    view = en.staged(c)
    assert r.evaluate(view).escalated == pytest.approx((expect == 3).mean())
    # the same hybrid through the engine's per-stage thresholds
    t = policies.hybrid_thresholds(view.model_index, 0.9, 0.6)
    row = en.evaluate(view, t[None, :-1]).frame.iloc[0]
    assert row["escalated"] == pytest.approx((expect == 3).mean())
    assert row["accuracy"] == pytest.approx(c.correct[np.arange(100), expect].mean())


def test_pareto_and_summary_reference():
    df = pd.DataFrame({"threshold": [np.inf, 3, 2, 1], "accuracy": [0.90, 0.895, 0.91, 0.80],
                       "flops": [4.0, 2.0, 3.0, 1.0], "speedup": [1.0, 2.0, 4 / 3, 4.0]})
    curve = en.Curve(df, "accuracy", "last exit", 100)
    fr = en.pareto_front(curve)
    assert fr["flops"].tolist() == [1.0, 2.0, 3.0]
    s = en.summarize(curve)
    assert s.final == 0.90 and s.speedup_at_drop_upper_bound == 2.0
    assert s.metric_at_upper_bound == {2.0: 0.895, 3.0: 0.80, 4.0: 0.80}
    assert s.to_dict()["accuracy_at_4x_upper_bound"] == 0.80 and s.best_upper_bound == 0.91
    # frontier by speed-up: (1.333, .91), (2, .895), (4, .80); AUC = trapezoid / range
    expect = (0.5 * (0.91 + 0.895) * (2 - 4 / 3) + 0.5 * (0.895 + 0.80) * 2) / (4 - 4 / 3)
    assert s.auc == pytest.approx(expect)
    with pytest.raises(ValueError, match="not a column"):
        en.summarize(curve, metric="f1")
    # a drop rule names its metric and defaults to accuracy, whatever the curve's headline metric
    f1 = en.Curve(df.assign(f1=[0.5, 0.2, 0.6, 0.1]), "f1", "last exit", 100)
    assert en.summarize(f1).metric == "accuracy" and en.summarize(f1).speedup_at_drop_upper_bound == 2.0
    assert en.summarize(f1, metric="f1").final == 0.5
    assert en.summarize(f1, metric="f1").speedup_at_drop_upper_bound == pytest.approx(4 / 3)


def test_threshold_grid_spans_the_sweep():
    s = en.staged(random_cache(300, 4, 2, seed=2))
    thr = en.threshold_grid(s, n=20)
    sw = en.sweep(s).frame["threshold"].to_numpy()
    assert thr[0] == np.inf and len(thr) <= 21 and set(thr[1:]) <= set(sw[1:])
    assert thr[1] == sw[1] and thr[-1] == sw[-1]
