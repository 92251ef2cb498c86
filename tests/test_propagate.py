"""CALM's K/V state propagation is a setting of how a token view is costed: the view records it, shows it, an
operating point chosen on it holds only for views built the same way, and a policy made from that point carries it
to the runtime, which refuses a setting it cannot run (before: the view did not record it, so a threshold chosen on
a view costed without propagation became a policy the propagating decoder ran without a word)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.analysis import engine as E
from toolkit.caches.tokens import load_llm_cache
from toolkit.policy import Policy, PolicyError

CAL = Path(__file__).resolve().parents[1] / "data" / "llm" / "smollm2_sst2_sentiment-cal.parquet"
SHA = "a" * 64


@pytest.fixture(scope="module")
def cal():
    return load_llm_cache(CAL)


def _point(cal, propagate):
    view = E.staged(cal, family="lens", checked_layers=[10, 20, 25], propagate=propagate)
    return view, E.choose(view, metric="agreement", max_drop=0.1)


def test_the_view_records_and_shows_propagate(cal):
    on, _ = _point(cal, True)
    off, _ = _point(cal, False)
    assert on.meta["propagate"] is True and off.meta["propagate"] is False
    assert "propagate=False" in repr(off) and "family='lens'" in repr(off)
    assert "propagate" in off._repr_html_()
    assert (off.cost <= on.cost).all() and (off.cost < on.cost).any()  # the setting changes the costs
    with pytest.raises(TypeError, match="propagate must be True or False"):
        E.staged(cal, family="lens", propagate="no")


def test_a_point_chosen_without_propagation_holds_only_for_such_views(cal):
    on, op_on = _point(cal, True)
    off, op_off = _point(cal, False)
    assert op_off.meta["propagate"] is False and op_off.to_dict()["propagate"] is False
    with pytest.raises(ValueError, match="propagate=False.*propagate=True"):
        op_off.evaluate(on)
    with pytest.raises(ValueError, match="propagate=True.*propagate=False"):
        op_on.evaluate(off)


def test_the_policy_carries_propagate_and_old_files_default_to_it(cal, tmp_path):
    _, op_on = _point(cal, True)
    _, op_off = _point(cal, False)
    on = Policy.from_operating_point(op_on, models="SmolLM2-135M-Instruct", exit="lens")
    off = Policy.from_operating_point(op_off, models="SmolLM2-135M-Instruct", exit="lens")
    assert on.params["propagate"] is True and off.params["propagate"] is False
    assert Policy.load(off.save(tmp_path / "off.json")).params["propagate"] is False
    assert Policy.calm("m", checked_layers=[3], thresholds=[0.9]).params["propagate"] is True  # default
    with pytest.raises(PolicyError, match="propagate"):
        Policy.calm("m", checked_layers=[3], thresholds=[0.9], propagate="yes")


def test_the_runtime_refuses_a_policy_without_propagation(tmp_path, tokenizer_dir):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from conftest import tiny_causal_lm
    from toolkit.nn.causal.decode import CalmDecoder, decoder_from_policy
    from toolkit.nn.causal.models import load_causal_lm
    from toolkit.nn.common.parts import weights_sha256

    lm = load_causal_lm(tiny_causal_lm(tmp_path / "m", tokenizer_dir, seed=0))
    sha = weights_sha256(lm.model)
    ok = Policy.calm(str(tmp_path / "m"), checked_layers=[1], thresholds=[0.9], weights=sha)
    assert decoder_from_policy(ok, lm.model).propagate is True
    off = Policy.calm(str(tmp_path / "m"), checked_layers=[1], thresholds=[0.9], weights=sha, propagate=False)
    with pytest.raises(PolicyError, match=r"^p.json: key 'propagate' is False: the CALM decoder always propagates"):
        decoder_from_policy(off, lm.model, source="p.json")
    with pytest.raises(ValueError, match="always propagates"):
        CalmDecoder(lm.model, [1], 0.9, propagate=False)


def test_predicted_time_refuses_a_view_without_propagation(cal):
    from toolkit.analysis.cost import latency as lat
    from toolkit.testing import synthetic_latency_profile as synthetic_profile

    off, _ = _point(cal, False)
    with pytest.raises(ValueError, match="built with propagate=False"):
        lat.with_predicted_time(off, synthetic_profile(), None, models=["lm"])
