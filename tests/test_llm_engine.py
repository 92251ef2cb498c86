"""The LLM analyses on the engine: the ``target`` rule of ``engine.choose`` against a brute-force pick, and the
CALM operating points the retired ``calm_*`` helpers computed, reproduced through the engine."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis import engine
from toolkit.testing import small_token_cache


def brute_force_target(view, target: float):
    """Every candidate threshold (each distinct confidence, and +inf) evaluated on its own by a plain first-clearing
    stage rule; the cheapest whose mean agreement reaches the target. Returns (threshold, mean cost)."""
    S, E = view.confidence.shape
    best = None
    for t in np.unique(np.append(view.confidence[:, :-1].ravel(), np.inf)):
        clears = view.confidence[:, :-1] >= t
        stage = np.where(clears.any(1), clears.argmax(1), E - 1)
        agreement = view.stats[np.arange(S), stage, 0].mean()
        cost = view.cost[np.arange(S), stage].mean()
        if agreement >= target - 1e-12 and (best is None or cost < best[1]):
            best = (t, cost)
    return best


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), target=st.floats(0.0, 1.0), layers=st.sampled_from([None, [1, 3], [2]]))
def test_target_rule_is_the_cheapest_threshold_reaching_the_target(seed, target, layers):
    view = engine.staged(small_token_cache(N=5, seed=seed), family="lens", checked_layers=layers)
    op = engine.choose(view, rule="target", target=target, metric="agreement")
    _, flops = brute_force_target(view, target)
    assert op.cal.metrics["agreement"] >= target - 1e-12
    assert op.cal.flops == pytest.approx(flops, rel=1e-12)
    assert op.to_dict()["target"] == target and op.rule == "target"


def test_target_rule_refuses_what_no_threshold_reaches():
    from toolkit.caches.classification import from_arrays

    lg = np.log(np.array([[[0.6, 0.4], [0.9, 0.1]], [[0.7, 0.3], [0.8, 0.2]]]))  # example 1 wrong at every stage
    view = engine.from_classification(from_arrays(lg, [0, 1], [1.0, 2.0]))
    with pytest.raises(ValueError, match="no threshold reaches accuracy 0.9"):
        engine.choose(view, rule="target", target=0.9)
    with pytest.raises(ValueError, match="needs target="):
        engine.choose(view, rule="target")
    assert engine.choose(view, rule="target", target=0.5).cal.metrics["accuracy"] >= 0.5


def test_self_speculative_choice_is_the_best_memory_bound_pair_on_cal():
    import toolkit.analysis.llm.exits as llm
    c = small_token_cache(N=6, seed=4)
    c.meta["split"] = "cal"
    choice = llm.choose_self_speculative(c, "lens", draft_lengths=[1, 2, 3])
    best = max(((k, d) for k in range(1, c.n_layers) for d in (1, 2, 3)),
               key=lambda kd: llm.self_speculative(c, "lens", layers=[kd[0]], draft_lengths=[kd[1]])
               .memory_bound_speedup.iloc[0])
    assert (choice.layer, choice.draft_length) == best
    assert choice.to_dict()["cases"] == (c.n_layers - 1) * 3
    c.meta["split"] = "test"
    with pytest.raises(ValueError, match="not test"):
        llm.choose_self_speculative(c, "lens")


def test_calm_operating_points_are_the_engine_choice_evaluated_with_prompt_intervals():
    from toolkit.analysis.llm import intervals as li

    cal, test = small_token_cache(N=8, seed=1), small_token_cache(N=7, seed=2)
    cal.meta["split"] = "cal"
    w = li.prompt_weights(test.n_examples, n_boot=50, seed=0)
    pts = li.calm_operating_points(cal, {"test": (test, w)}, "lens", checked_layers=[1, 3], targets=(0.6, 0.8))
    for t in (0.6, 0.8):
        view_cal = engine.staged(cal, family="lens", checked_layers=[1, 3])
        op = engine.choose(view_cal, rule="target", target=t, metric="agreement")
        r = pts.point("global", t)
        ev = op.evaluate(engine.staged(test, family="lens", checked_layers=[1, 3]), transfer=True)
        assert r.threshold == op.threshold
        assert r.agreement == pytest.approx(ev.metrics["agreement"]) and r.speedup == pytest.approx(ev.speedup)
        assert r["agreement lo"] <= r.agreement <= r["agreement hi"]
        assert pts.point("per layer", t)["mean layers"] >= 1
    assert pts.point(li.ORACLE).agreement == 1.0
    with pytest.raises(KeyError, match="no 'global' point"):
        pts.point("global", 0.5)
