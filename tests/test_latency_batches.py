"""Encoder runtimes' batches in predicted time (issue 31): ``latency.encoder_time_sweep`` prices, at every threshold
of the engine's sweep, what EarlyExitRunner and CascadeRunner run at a batch size (sorted dynamic padding, rows
leaving a batch, a batch running to its deepest exit, a cascade re-batching the examples that reach each member).
Checked against a plain-Python simulation of the runtimes' batches per threshold (hypothesis), against the exact
batch-1 view, and, on tiny models built from a config, against the (rows, padded length) of every layer and forward
the runtimes really run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis.cost import latency as lat
from toolkit.caches.classification import from_arrays
from toolkit.testing import synthetic_latency_profile


def early_exit_cache(N, seed, E=3, split="cal", max_len=40):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    lg = rng.normal(size=(N, E, 2))
    lg[np.arange(N), :, y] += np.linspace(0.3, 2.0, E)
    lg = lg.round(1).astype(np.float32)  # ties: several examples move at one threshold
    return from_arrays(lg, y, np.cumsum(np.ones((N, E)), 1), n_tokens=rng.integers(3, max_len, N),
                       meta={"split": split, "task": "toy"})


# ---------------------------------------------------------------------------------------------- brute force

def simulate_early_exit(m, n_tokens, stage, b):
    """EarlyExitRunner's batches in plain Python: sorted by length (stable), cut every ``b``, padded to the longest;
    each layer on the rows still in the batch, each exit on the rows reaching it, the batch stops when empty."""
    exits = list(m.info["exit_layers"])
    order = sorted(range(len(n_tokens)), key=lambda i: (n_tokens[i], i))
    ms = 0.0
    for s in range(0, len(order), b):
        rows = order[s:s + b]
        w = max(n_tokens[i] for i in rows)
        ms += float(m["inputs"](len(rows), w) + m["embed"](len(rows), w))
        alive = list(rows)
        for layer in range(1, exits[-1] + 1):
            ms += float(m["layer"](len(alive), w))
            if layer in exits:
                ms += float(m["exit"](len(alive), w))
                alive = [i for i in alive if stage[i] > exits.index(layer)]
                if not alive:
                    break
    return ms


def sample_rows(frame, k=12):
    return frame.iloc[np.unique(np.linspace(0, len(frame) - 1, k).astype(int))]


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 60), b=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_early_exit_sweep_equals_simulated_batches(N, b, seed):
    from toolkit.analysis.engine import staged

    prof = synthetic_latency_profile()
    cache = early_exit_cache(N, seed)
    view = staged(cache)
    curve = lat.encoder_time_sweep(cache, prof, models=["enc"], batch_size=b)
    m = prof.model("enc")
    n = cache.n_tokens.tolist()
    for _, row in sample_rows(curve.frame).iterrows():
        want = simulate_early_exit(m, n, view.stage_of(row["threshold"]).tolist(), b)
        assert row["flops"] * N == pytest.approx(want, rel=1e-9)
    full = sum(float(lat.forward_ms(m, len(r), max(n[i] for i in r)))
               for order in [sorted(range(N), key=lambda i: (n[i], i))] for r in
               (order[s:s + b] for s in range(0, N, b)))
    assert curve.meta["reference_ms"] * N == pytest.approx(full)


@pytest.mark.parametrize("block", [1, 7, 1 << 22])
def test_sweep_stages_are_the_engines_stops_in_any_block_size(block):
    from toolkit.analysis.engine import staged, sweep

    view = staged(early_exit_cache(50, 3, E=4))
    thr = sweep(view).frame["threshold"].to_numpy()
    got = np.concatenate([s for _, s in lat.sweep_stages(view, block=block * view.n_examples)])
    assert got.shape == (len(thr), view.n_examples)
    assert all(np.array_equal(got[i], view.stage_of(t)) for i, t in enumerate(thr))


def test_batch_one_equals_the_exact_view():
    """At batch 1 no batch effect exists: the runtime's schedule equals the per-example view of with_predicted_time."""
    from toolkit.analysis.engine import staged, sweep

    prof = synthetic_latency_profile()
    cache = early_exit_cache(80, 1)
    a = lat.encoder_time_sweep(cache, prof, models=["enc"], batch_size=1).frame
    bv = sweep(lat.with_predicted_time(staged(cache), prof, cache.n_tokens, models=["enc"])).frame
    np.testing.assert_allclose(a["flops"], bv["flops"], rtol=1e-12)
    np.testing.assert_allclose(a["speedup"], bv["speedup"], rtol=1e-12)


def test_refusals_name_the_fix():
    from toolkit.analysis.engine import staged

    prof = synthetic_latency_profile()
    cache = early_exit_cache(20, 0)
    with pytest.raises(ValueError, match="toolkit collect"):
        lat.encoder_time_sweep(staged(cache), prof, n_tokens=np.zeros(20, dtype=int), models=["enc"], batch_size=4)
    with pytest.raises(ValueError, match="n_tokens"):
        lat.encoder_time_sweep(staged(cache), prof, models=["enc"], batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        lat.encoder_time_sweep(cache, prof, models=["enc"], batch_size=0)
    with pytest.raises(ValueError, match="exits after layers"):
        lat.encoder_time_sweep(cache, prof, models=["small"], batch_size=4)
    with pytest.raises(ValueError, match="not exits of"):
        lat.encoder_run_ms(prof.model("enc"), [4, 5], [1, 4], batch_size=2)


# ---------------------------------------------------------------------------------------------- the real runtimes

WORDS = ["the", "movie", "was", "good", "bad", "great", "fine", "plot", "acting"]


def _texts(n, seed):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(k))) for k in rng.integers(1, 20, n)]


def _multi_exit(tmp_path_factory, tokenizer_dir, layers, exit_layers, seed):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from conftest import tiny_config
    from toolkit.nn.encoder.models import MultiExitModel

    torch.manual_seed(seed)
    enc = tmp_path_factory.mktemp("enc")
    AutoModel.from_config(tiny_config("bert", layers)).save_pretrained(enc)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(enc)
    m = MultiExitModel.from_backbone(enc, num_labels=2, exit_layers=exit_layers, seed=seed)
    with torch.no_grad():
        for h in m.heads:
            h.weight.mul_(40.0)  # confidences spread across exits
    return m.eval(), AutoTokenizer.from_pretrained(tokenizer_dir)


def _thresholds(model, tok, texts, quantiles):
    """Per non-final exit, a threshold at that quantile of its max-prob confidence (midway between values)."""
    import pandas as pd

    from toolkit.analysis.scores.classification import stage_confidence
    from toolkit.nn.common.inference import predict_logits
    from toolkit.nn.encoder.runtime import midpoint_threshold

    lg, _ = predict_logits(model, tok, pd.DataFrame({"text_a": texts, "text_b": None}), 8, 128, "cpu")
    conf = stage_confidence(lg, score="max_prob")
    return [midpoint_threshold(conf[:, e], float(np.quantile(conf[:, e], q))) for e, q in enumerate(quantiles)]


def test_early_exit_runtime_runs_the_predicted_batches(tmp_path_factory, tokenizer_dir):
    """Every encoder layer call of EarlyExitRunner, as (batch, layer, rows, padded length), equals the schedule the
    prediction is priced from (latency.early_exit_batches of the runner's own exits)."""
    from toolkit.nn.encoder.runtime import EarlyExitRunner

    model, tok = _multi_exit(tmp_path_factory, tokenizer_dir, 4, [1, 2, 4], 0)
    texts = _texts(37, 0)
    n = np.array([len(x) for x in tok(texts)["input_ids"]])
    calls = []
    layers = model.backbone.encoder.layer
    hooks = [layer.register_forward_hook(lambda mod, args, out, i=i: calls.append((i + 1, *args[0].shape[:2])))
             for i, layer in enumerate(layers)]
    thr = _thresholds(model, tok, texts, [0.5, 0.5])
    try:
        for b in (1, 5, 8):
            calls.clear()
            res = EarlyExitRunner(model, tok, thr).run(texts, batch_size=b)
            assert len(np.unique(res.exit_stage)) == 3  # every exit used
            reach, rows, width = lat.early_exit_batches(n, res.exit_stage[None], batch_size=b, n_stages=3)
            seg = np.searchsorted([1, 2, 4], np.arange(1, 5))  # the exit segment of each layer
            want = [(i, int(reach[0, k, seg[i - 1]]), int(width[k])) for k in range(len(width))
                    for i in range(1, 5) if reach[0, k, seg[i - 1]] > 0]
            assert calls == want
            assert rows.sum() == len(texts)
    finally:
        for h in hooks:
            h.remove()


def test_cascade_runtime_runs_the_predicted_batches(tmp_path_factory, tokenizer_dir):
    """Every forward CascadeRunner runs, per member, as (rows, padded length), equals latency.cascade_batches of the
    runner's own exits: the escalated examples re-sorted and re-batched, the last batch partial."""
    from toolkit.nn.encoder.runtime import CascadeRunner

    small, tok = _multi_exit(tmp_path_factory, tokenizer_dir, 1, [1], 1)
    big, _ = _multi_exit(tmp_path_factory, tokenizer_dir, 2, [2], 2)
    texts = _texts(41, 1)
    n = np.array([len(x) for x in tok(texts)["input_ids"]])
    thr = _thresholds(small, tok, texts, [0.5])
    calls = {0: [], 1: []}
    hooks = [m.register_forward_pre_hook(lambda mod, args, kw, e=e: calls[e].append(tuple(kw["input_ids"].shape)),
                                         with_kwargs=True) for e, m in enumerate([small, big])]
    try:
        for b in (1, 6, 32):
            calls[0].clear(), calls[1].clear()
            res = CascadeRunner([small, big], [tok, tok], thr).run(texts, batch_size=b)
            assert 0 < (res.exit_stage == 1).mean() < 1
            for e in (0, 1):
                full, last_rows, last_width = lat.cascade_batches(n, res.exit_stage[None], e, batch_size=b)
                ns = np.sort(n, kind="stable")
                want = [(b, int(w)) for w in ns[full[0]]] + ([(int(last_rows[0]), int(last_width[0]))]
                                                             if last_rows[0] else [])
                assert calls[e] == want
    finally:
        for h in hooks:
            h.remove()
