"""A batch size is an integer >= 1, checked in one place (``toolkit._api.check_batch``) wherever a public function
takes one: the explorer (``explore(..., batch=)``), the latency pricing (``with_predicted_time``, ``time_sweep``,
``encoder_time_sweep``, ``calm_time_sweep``, ``encoder_example_ms``, ``cascade_example_ms``, the schedules) and the
encoder runtimes. Before, ``batch=True`` ran as batch 1 (a bool is an int to Python), ``batch_size=2.5`` as 2, and
``explore(..., batch=8)`` without ``profile=`` was silently costed in FLOPs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit._api import check_batch
from toolkit.analysis.cost import latency as lat
from toolkit.analysis.engine import staged
from toolkit.caches.classification import from_arrays
from toolkit.testing import random_token_cache, synthetic_latency_profile

HOSTILE = [True, False, np.bool_(True), 2.5, 8.0, np.float32(4), "8", None, b"8", [8], 1 + 0j]


def cache(N, seed, split):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    lg = rng.normal(size=(N, 3, 2)).astype(np.float32)
    lg[np.arange(N), :, y] += np.linspace(0.3, 2.0, 3, dtype=np.float32)
    return from_arrays(lg, y, np.cumsum(np.ones((N, 3)), 1), n_tokens=rng.integers(3, 40, N),
                       meta={"split": split, "task": "toy"})


# ---------------------------------------------------------------------------------------------- the one check
@given(st.one_of(st.integers(1, 2**62), st.integers(1, 2**31).map(np.int64), st.integers(1, 255).map(np.uint8)))
def test_integers_from_one_up_pass_as_int(v):
    got = check_batch(v)
    assert got == v and type(got) is int


@given(st.one_of(st.booleans(), st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3),
                 st.none(), st.integers(-5, 0).map(np.int64)))
def test_everything_else_is_refused_naming_the_option(v):
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1 \(rows per batch\), got "):
        check_batch(v, name="batch_size")


@pytest.mark.parametrize("v", [True, np.bool_(False)])
def test_a_bool_is_named_as_such(v):
    with pytest.raises(ValueError, match="a bool is not a batch size.*e.g. batch=1"):
        check_batch(v)


# ---------------------------------------------------------------------------------------------- its callers
@pytest.mark.parametrize("bad", HOSTILE, ids=repr)
def test_latency_pricing_refuses_a_bad_batch(bad):
    prof, test = synthetic_latency_profile(), cache(30, 1, "test")
    tokens = random_token_cache(12, layers=4, families=("lens",), mean_length=5, seed=0, split="test")
    enc = prof.model("enc")
    calls = [
        lambda: lat.with_predicted_time(staged(test), prof, test.n_tokens, models=["enc"], batch=bad),
        lambda: lat.with_predicted_time(staged(tokens, family="lens"), prof, None, models=["lm"], batch=bad),
        lambda: lat.encoder_time_sweep(test, prof, models=["enc"], batch_size=bad),
        lambda: lat.time_sweep(staged(tokens, family="lens"), prof, models=["lm"], batch_size=bad),
        lambda: lat.calm_time_sweep(staged(tokens, family="lens"), prof, model="lm", batch_size=bad),
        lambda: lat.encoder_example_ms(enc, test.n_tokens, batch=bad),
        lambda: lat.cascade_example_ms([prof.model("small"), enc], test.n_tokens, batch=bad),
        lambda: lat.encoder_full_ms(enc, test.n_tokens, batch_size=bad),
        lambda: lat.cascade_ms([prof.model("small"), enc], test.n_tokens, np.zeros((1, 30), int), batch_size=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"(batch|batch_size) must be an integer >= 1"):
            call()


def test_the_pricing_is_unchanged_for_integers():
    prof, test = synthetic_latency_profile(), cache(30, 1, "test")
    a = lat.encoder_time_sweep(test, prof, models=["enc"], batch_size=np.int64(4)).frame
    b = lat.encoder_time_sweep(test, prof, models=["enc"], batch_size=4).frame
    assert a.equals(b) and lat.with_predicted_time(staged(test), prof, test.n_tokens, models=["enc"],
                                                   batch=np.int64(1)).meta["batch"] == 1


def test_explorer_refuses_a_bool_batch_and_a_batch_without_a_profile():
    pytest.importorskip("ipywidgets")
    from toolkit.analysis.explore.app import explore

    prof, cal, test = synthetic_latency_profile(), cache(60, 0, "cal"), cache(30, 1, "test")
    for bad in (True, 2.0, 0):
        with pytest.raises(ValueError, match="batch must be an integer >= 1"):
            explore(cal, test, profile=prof, profile_models=["enc"], batch=bad, n_boot=0)
    with pytest.raises(ValueError, match=r"batch=8 prices the runtime's batches in predicted time and needs "
                                         r"profile="):
        explore(cal, test, batch=8, n_boot=0)
    with pytest.raises(ValueError, match=r"profile_models=\['enc'\] names the profile's models and needs profile="):
        explore(cal, test, profile_models=["enc"], n_boot=0)
    assert "batch 4" in explore(cal, test, profile=prof, profile_models=["enc"], batch=4, n_boot=0).cost_unit
    assert "batch 1" in explore(cal, test, profile=prof, profile_models=["enc"], n_boot=0).cost_unit
    assert explore(cal, test, n_boot=0).cost_unit == "FLOPs"


def test_encoder_runtimes_refuse_a_bool_batch_size(tmp_path_factory, tokenizer_dir):
    """EarlyExitRunner.run / run_full and CascadeRunner (through predict_logits) on a tiny model from a config."""
    torch = pytest.importorskip("torch")
    import pandas as pd
    from transformers import AutoModel, AutoTokenizer

    from conftest import tiny_config
    from toolkit.nn.common.inference import predict_logits
    from toolkit.nn.encoder.models import MultiExitModel
    from toolkit.nn.encoder.runtime import CascadeRunner, EarlyExitRunner

    torch.manual_seed(0)
    enc = tmp_path_factory.mktemp("enc")
    AutoModel.from_config(tiny_config("bert", 2)).save_pretrained(enc)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = MultiExitModel.from_backbone(enc, num_labels=2, exit_layers=[1, 2], seed=0).eval()
    texts = ["the movie was good", "bad", "the plot was bad and long"]
    runner = EarlyExitRunner(model, tok, [0.9])
    assert len(runner.run(texts, batch_size=2).exit_stage) == 3
    cascade = CascadeRunner([model, model], [tok, tok], [0.9])
    for bad in (True, 2.0, 0):
        for call in (lambda: runner.run(texts, batch_size=bad), lambda: runner.run_full(texts, batch_size=bad),
                     lambda: cascade.run(texts, batch_size=bad),
                     lambda: predict_logits(model, tok, pd.DataFrame({"text_a": texts, "text_b": None}), bad)):
            with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
                call()


@pytest.mark.parametrize("bad", [True, 2.5, "4", np.float64(4.0)], ids=repr)
def test_calm_time_curves_refuses_a_bad_batch_size(bad):
    """calm_time_curves took int(b) of each batch size before calm_time_sweep's check: True ran as batch 1, 2.5 as
    2, '4' as 4, silently, keyed by the coerced size."""
    prof = synthetic_latency_profile()
    view = staged(random_token_cache(12, layers=4, families=("lens",), mean_length=5, seed=0, split="test"),
                  family="lens")
    with pytest.raises(ValueError, match=r"batch_sizes must be an integer >= 1"):
        lat.calm_time_curves(view, prof, model="lm", batch_sizes=(1, bad))
    ok = lat.calm_time_curves(view, prof, model="lm", batch_sizes=(1, np.int64(4)))
    assert list(ok.timed) == [1, 4] and all(type(b) is int for b in ok.timed)
