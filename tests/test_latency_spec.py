"""Predicted time of self-speculative decoding (``latency.self_speculative_run_ms``) against the pieces the real
:class:`~toolkit.nn.causal.decode.SelfSpeculativeDecoder` calls on a tiny Llama, for a logit-lens and a tuned draft
exit: every call priced by the profile at the rows and positions it ran on sums to the estimate."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.analysis.cost import latency as lat

ROWS, POSITIONS = [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0, 5.0]  # every batch and pass width the decodes below reach


def grid(f):
    return {"batch": ROWS, "positions": POSITIONS, "ms": [[float(f(b, p)) for p in POSITIONS] for b in ROWS]}


def lm_profile(layers=6):
    """A causal LM's pieces with distinct, known values (ms), the translator's among them."""
    pieces = {"setup": grid(lambda b, p: 0.05 * p + 0.01 * b), "layer": grid(lambda b, p: 1 + 0.2 * b * p),
              "head": grid(lambda b, p: 3 + b * p), "exit": grid(lambda b, p: 2.5 + b),
              "translator": grid(lambda b, p: 0.3 + 0.02 * b), "step_overhead": grid(lambda b, p: 0.7 + 0.03 * b)}
    return lat.load_profile({"format": lat.PROFILE_FORMAT, "threads": 1, "dtype": "float64",
                             "machine": {"host": "test"},
                             "models": {"lm": {"kind": "causal_lm", "layers": layers, "context": 16,
                                               "pieces": pieces}}})


@pytest.mark.parametrize("exits", ["lens", "tuned"])
def test_prediction_is_what_the_decoder_calls(monkeypatch, exits):
    """Each pass's set-up (one attention mask each: a block with no draft sets up layers 1..k and k+1..L apart),
    each layer and LM head at its rows and positions, each draft exit at one position per row and, for a tuned
    exit, its translator (``TunedExits.translate``) before it, plus the loop's overhead per block: priced by the
    profile, they sum to self_speculative_run_ms of the blocks the decoder accepted."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import toolkit.nn.causal.decode as decode
    from support.torch_models import M, prompts_of, tiny_llama

    model = tiny_llama()
    k, d = 2, 3  # blocks of every draft length 0..3 on these prompts, batched and alone
    m = lm_profile().model("lm")
    exit_fn = None
    if exits == "tuned":
        from toolkit.nn.causal.exits import TunedExits

        exit_fn = TunedExits(model).to(torch.float64)
        with torch.no_grad():  # small translators: drafts still agree with the full model some of the time
            for t in exit_fn.translators:
                t.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    dec = decode.SelfSpeculativeDecoder(model, k, d, exit_fn)
    spent, on, calls = [0.0], [False], {"translator": 0, "setup": 0}

    def priced(piece, fn, shape_of):
        def call(*args, **kw):
            if on[0]:
                spent[0] += float(m[piece](*shape_of(*args)))
                calls[piece] = calls.get(piece, 0) + 1
            return fn(*args, **kw)
        return call

    st_ = dec.st
    if exits == "tuned":
        monkeypatch.setattr(dec.exit, "translate", priced("translator", dec.exit.translate,
                                                          lambda i, h: (h.shape[0], 1)))
    monkeypatch.setattr(st_, "mask", priced("setup", st_.mask, lambda valid, q: (valid.shape[0], q)))
    monkeypatch.setattr(st_, "layer", priced("layer", st_.layer, lambda i, h, *a: (h.shape[0], h.shape[1])))
    monkeypatch.setattr(st_, "head", priced("head", st_.head, lambda h: (h.shape[0], h.shape[1])))
    monkeypatch.setattr(st_, "exit", priced("exit", st_.exit, lambda fn, i, h: (h.shape[0], 1)))
    block = dec._block

    def counted_block(bt, D, caps):
        spent[0] += float(m["step_overhead"](len(bt), 1))
        on[0] = True
        try:
            return block(bt, D, caps)
        finally:
            on[0] = False

    monkeypatch.setattr(dec, "_block", counted_block)
    res = dec.generate(prompts_of((5, 9, 1, 13)), M)
    acc = np.concatenate(res.accepted)
    assert acc.min() == 0 and acc.max() > 0, f"drafts should be accepted sometimes, got {np.unique(acc)}"
    assert any(p[0].exits == 0 for p in res.passes), "some block should have one token of budget left (no draft)"
    pieces = ("exit", "translator") if exits == "tuned" else ("exit",)
    assert dec.exit_pieces == pieces
    assert calls["translator"] == (calls["exit"] if exits == "tuned" else 0) and calls["exit"] > 0
    assert spent[0] == pytest.approx(lat.self_speculative_run_ms(m, res.accepted, k, d, M, exit_pieces=pieces))
    if exits == "tuned":  # the translator is priced: the lens pieces alone fall short by exactly its calls
        short = spent[0] - lat.self_speculative_run_ms(m, res.accepted, k, d, M)
        assert short > 0 and short == pytest.approx(sum(float(m["translator"](len(ids), 1)) * sum(q.exits for q in p)
                                                        for p, ids in zip(res.passes, res.block_row_ids)))
