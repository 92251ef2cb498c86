"""Predicted time of CALM token views (issue 31): a token cache's CALM exit view costed in predicted ms per token
from a causal-LM profile, at batch 1 through the engine (exact) and in batches (a step runs to its deepest exit)
through ``latency.calm_time_sweep``; checked by hand, against a brute-force run of the runtime's accounting
(``calm_run_ms``) at every threshold, and against the pieces the real decoder calls on a tiny Llama."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis.cost import latency as lat
from toolkit.analysis.engine import choose, evaluation, staged, sweep, threshold_on_sweep
from toolkit.testing import random_token_cache

ROWS = [1, 2, 3, 4, 6, 8]  # every row count a test batch reaches is a grid point or between two


def grid(f, positions=(1.0,)):
    return {"batch": ROWS, "positions": list(positions), "ms": [[float(f(b, p)) for p in positions] for b in ROWS]}


def lm_profile(layers=4, translator=False):
    """A causal LM's pieces with distinct, known values (ms = a + c * rows)."""
    pieces = {"setup": grid(lambda b, p: 0.05 + 0.01 * b), "layer": grid(lambda b, p: 1 + 0.2 * b),
              "head": grid(lambda b, p: 3 + b), "exit": grid(lambda b, p: 2.5 + b),
              "confidence": grid(lambda b, p: 0.4 * b), "kv_propagation": grid(lambda b, p: 0.1 * b),
              "step_overhead": grid(lambda b, p: 0.7 + 0.03 * b)}
    if translator:
        pieces["translator"] = grid(lambda b, p: 0.3 + 0.02 * b)
    lm = {"kind": "causal_lm", "layers": layers, "context": 16, "pieces": pieces}
    return lat.load_profile({"format": lat.PROFILE_FORMAT, "threads": 1, "dtype": "float32",
                             "machine": {"host": "test"}, "models": {"lm": lm}})


def token_cache(n=120, layers=4, seed=0, split="cal"):
    return random_token_cache(n, layers=layers, families=("lens",), mean_length=6, seed=seed, split=split)


def per_prompt(cache, exit_layer):
    return [exit_layer[cache.offsets[p]:cache.offsets[p + 1]] for p in range(cache.n_examples)]


def exits_at(view, threshold):
    return np.asarray(view.layers, dtype=np.int64)[view.stage_of(threshold)]


# ---------------------------------------------------------------------------------------------- exact references

def test_calm_token_ms_by_hand():
    m = lm_profile().model("lm")
    P = m.pieces
    got = lat.calm_token_ms(m, [1, 2, 4])  # checked exits at layers 1 and 2; the last stage is the model's L=4
    one = lambda k: P[k](1, 1)  # noqa: E731
    s = one("setup") + one("step_overhead")
    exit1 = s + one("layer") + 3 * one("kv_propagation") + one("exit") + one("confidence")
    exit2 = s + 2 * one("layer") + 2 * one("kv_propagation") + 2 * (one("exit") + one("confidence"))
    full = s + 4 * one("layer") + 2 * (one("exit") + one("confidence")) + one("head")
    assert got == pytest.approx([float(exit1), float(exit2), float(full)])
    assert lat.greedy_step_ms(m, 1) == pytest.approx(float(2 * one("setup") + 4 * one("layer") + one("head")
                                                           + one("step_overhead")))
    # a batch step costs what its deepest row asks: two rows exiting at layers 1 and 4
    two = lat.calm_step_ms(m, [2, 1, 1, 1], 2, [1, 2])
    want = (P["setup"](2, 1) + P["layer"](2, 1) + 3 * P["layer"](1, 1) + 3 * P["kv_propagation"](1, 1)
            + P["exit"](2, 1) + P["confidence"](2, 1) + P["exit"](1, 1) + P["confidence"](1, 1) + P["head"](1, 1)
            + P["step_overhead"](2, 1))
    assert two == pytest.approx(float(want))
    assert two == pytest.approx(lat.calm_run_ms(m, [[1], [4]], [1, 2]))


def test_token_view_at_batch_one_sweeps_exactly_and_chooses_a_time_budget():
    prof, cache = lm_profile(), token_cache()
    m = prof.model("lm")
    view = lat.with_predicted_time(staged(cache, family="lens", checked_layers=[1, 2]), prof, None, models=["lm"])
    assert "predicted ms per token (batch 1" in view.meta["cost_unit"] and "test" in view.meta["cost_unit"]
    curve = sweep(view).frame
    S = cache.n_tokens
    greedy = sum(lat.greedy_run_ms(m, [n]) for n in cache.lengths)  # each prompt alone
    assert view.reference_cost.sum() == pytest.approx(greedy)
    for thr, ms in zip(curve["threshold"], curve["flops"]):  # brute force: every prompt decoded alone
        ex = per_prompt(cache, exits_at(view, thr))
        assert ms * S == pytest.approx(sum(lat.calm_run_ms(m, [e], [1, 2]) for e in ex))
    budget = float(np.quantile(curve["flops"], 0.4))
    op = choose(view, rule="budget", metric="agreement", budget=lat.time_budget_speedup(view, budget))
    assert op.cal.flops <= budget + 1e-9
    within = curve[curve["flops"] <= budget + 1e-9]
    assert op.cal["agreement"] == pytest.approx(within["agreement"].max())


@pytest.mark.parametrize("batch,by_length", [(1, False), (3, False), (3, True), (8, True)])
def test_batched_sweep_equals_the_runtime_accounting_at_every_threshold(batch, by_length):
    prof, cache = lm_profile(), token_cache()
    m = prof.model("lm")
    view = staged(cache, family="lens", checked_layers=[1, 2])
    lengths = cache.n_prompt if by_length else None
    curve = lat.calm_time_sweep(view, prof, model="lm", batch_size=batch, prompt_lengths=lengths)
    order = np.argsort(cache.n_prompt, kind="stable") if by_length else np.arange(cache.n_examples)
    groups = [order[s:s + batch] for s in range(0, len(order), batch)]
    ref = sum(lat.greedy_run_ms(m, [cache.lengths[p] for p in g]) for g in groups)
    assert curve.meta["reference_ms"] * cache.n_tokens == pytest.approx(ref)
    assert curve.exact and np.array_equal(curve.frame["threshold"], sweep(view).frame["threshold"])
    for thr, ms, sp in zip(curve.frame["threshold"], curve.frame["flops"], curve.frame["speedup"]):
        ex = per_prompt(cache, exits_at(view, thr))
        want = sum(lat.calm_run_ms(m, [ex[p] for p in g], [1, 2]) for g in groups)
        assert ms * cache.n_tokens == pytest.approx(want) and sp == pytest.approx(ref / want)
    if batch == 1:  # the engine's per-token view is the same schedule
        timed = lat.with_predicted_time(view, prof, None, models=["lm"])
        assert np.allclose(sweep(timed).frame["flops"], curve.frame["flops"])
    budget = float(np.median(curve.frame["flops"]))
    thr = threshold_on_sweep(curve, rule="budget", metric="agreement",
                             budget=lat.time_budget_speedup(curve, budget))
    row = curve.frame[curve.frame["threshold"] == thr].iloc[0]
    assert row["flops"] <= budget + 1e-9
    assert evaluation(view, thr)["agreement"] == pytest.approx(row["agreement"])


@pytest.mark.parametrize("batch", [1, 3])
def test_tuned_batched_sweep_pays_the_translator_at_every_threshold(batch):
    """A tuned-exit view's exact sweep is the runtime's accounting with the translator on every checked exit
    evaluated (calm_run_ms with exit_pieces), and dearer than the lens view's by exactly those translator calls."""
    prof = lm_profile(translator=True)
    m = prof.model("lm")
    cache = random_token_cache(120, layers=4, families=("lens", "tuned"), mean_length=6, split="cal")
    cache.families["tuned"] = {"kind": "tuned_exits"}
    view = staged(cache, family="tuned", checked_layers=[1, 2])
    curve = lat.calm_time_sweep(view, prof, model="lm", batch_size=batch)
    groups = [range(s, min(s + batch, cache.n_examples)) for s in range(0, cache.n_examples, batch)]
    tuned, lens = ("exit", "confidence", "translator"), ("exit", "confidence")
    for thr, ms in zip(curve.frame["threshold"], curve.frame["flops"]):
        ex = per_prompt(cache, exits_at(view, thr))
        want = sum(lat.calm_run_ms(m, [ex[p] for p in g], [1, 2], exit_pieces=tuned) for g in groups)
        assert ms * cache.n_tokens == pytest.approx(want)
    ex = per_prompt(cache, exits_at(view, np.inf))  # every token to L: both exits evaluated on every row
    extra = 0.0
    for g in groups:  # each step, both checked exits translate the rows still decoding
        n = np.array([len(ex[p]) for p in g])
        extra += sum(2 * float(m["translator"](int((n > s).sum()), 1)) for s in range(n.max()))
    plain = sum(lat.calm_run_ms(m, [ex[p] for p in g], [1, 2], exit_pieces=lens) for g in groups)
    assert curve.frame["flops"].iloc[0] * cache.n_tokens == pytest.approx(plain + extra, rel=1e-9)


def test_batches_pay_for_their_deepest_exit():
    """A row exiting at layer 1 beside a row that runs to layer 4 saves only what a layer at one row costs less
    than at two (here 0.2 ms a layer), not a whole layer (1.2 ms alone): the step runs to its deepest exit."""
    m = lm_profile().model("lm")
    alone = lat.calm_token_ms(m, [1, 4])
    saving_alone = alone[1] - alone[0]
    both_deep = lat.calm_step_ms(m, [2, 2, 2, 2], 2, [1])
    one_shallow = lat.calm_step_ms(m, [2, 1, 1, 1], 2, [1])
    saving_together = both_deep - one_shallow
    P = m.pieces
    assert saving_together == pytest.approx(float(3 * (P["layer"](2, 1) - P["layer"](1, 1) - P["kv_propagation"](1, 1))
                                                  + P["head"](2, 1) - P["head"](1, 1)))
    assert saving_together < saving_alone


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 9), st.lists(st.integers(1, 5), min_size=1, max_size=4, unique=True))
def test_batched_sweep_matches_brute_force_on_random_caches(seed, batch, checked):
    prof, cache = lm_profile(layers=6), token_cache(n=40, layers=6, seed=seed)
    m = prof.model("lm")
    checked = sorted(checked)
    view = staged(cache, family="lens", checked_layers=checked)
    curve = lat.calm_time_sweep(view, prof, model="lm", batch_size=batch)
    groups = [range(s, min(s + batch, cache.n_examples)) for s in range(0, cache.n_examples, batch)]
    rows = np.random.default_rng(seed).choice(len(curve.frame), size=min(6, len(curve.frame)), replace=False)
    for i in rows:
        ex = per_prompt(cache, exits_at(view, curve.frame["threshold"].iloc[i]))
        want = sum(lat.calm_run_ms(m, [ex[p] for p in g], checked) for g in groups)
        assert curve.frame["flops"].iloc[i] * cache.n_tokens == pytest.approx(want)


def test_time_curves_three_axes_and_their_plot():
    import matplotlib

    matplotlib.use("Agg")
    from toolkit.analysis.plots.llm import plot_calm_time

    prof, cache = lm_profile(), token_cache()
    view = staged(cache, family="lens", checked_layers=[1, 2])
    tc = lat.calm_time_curves(view, prof, model="lm", batch_sizes=(1, 3))
    f = tc.to_frame()
    assert list(f["cost"].unique()) == ["FLOPs", "predicted time, batch 1", "predicted time, batch 3"]
    n = len(sweep(view).frame)
    assert (f.groupby("cost", sort=False).size() == n).all()
    for name, curve in (("FLOPs", sweep(view)), ("predicted time, batch 3",
                                                 lat.calm_time_sweep(view, prof, model="lm", batch_size=3))):
        ok = curve.frame[curve.frame["agreement"] >= 0.6]
        assert tc.best_speedup(0.6)[name] == pytest.approx(ok["speedup"].max())
    assert "lens, checked layers 1,2" in tc.to_dict()["view"]
    fig = plot_calm_time({"a": tc})
    assert len(fig.axes[0].lines) == 3


def test_refusals_name_the_fix():
    prof, cache = lm_profile(), token_cache()
    view = staged(cache, family="lens", checked_layers=[1, 2])
    with pytest.raises(ValueError, match="calm_time_sweep"):
        lat.with_predicted_time(view, prof, None, models=["lm"], batch=4)
    with pytest.raises(ValueError, match="has 6 layers"):
        lat.with_predicted_time(view, lm_profile(layers=6), None, models=["lm"])
    tuned = random_token_cache(50, layers=4, families=("lens", "tuned"), mean_length=6, split="cal")
    tuned.families["tuned"] = {"kind": "tuned_exits"}
    tv = staged(tuned, family="tuned", checked_layers=[1, 2])
    with pytest.raises(ValueError, match="translator"):
        lat.calm_time_sweep(tv, prof, model="lm", batch_size=2)
    # with a translator piece, each checked exit evaluated pays it
    got = lat.with_predicted_time(tv, lm_profile(translator=True), None, models=["lm"]).cost[0]
    base = lat.calm_token_ms(prof.model("lm"), [1, 2, 4])
    tr = float(lm_profile(translator=True).model("lm")["translator"](1, 1))
    assert got == pytest.approx(base + tr * np.array([1, 2, 2]))
    with pytest.raises(ValueError, match="not a token view"):
        lat.calm_time_sweep(staged(random_classification()), prof, model="lm", batch_size=2)


def random_classification():
    from toolkit.testing import random_classification_cache

    return random_classification_cache(20, 3, 2)


def test_cli_sweep_token_cache_with_profile(tmp_path, capsys):
    from toolkit.caches.tokens import save_llm_cache
    from toolkit.cli import main

    path = tmp_path / "t.parquet"
    save_llm_cache(token_cache(), path)
    ppath = tmp_path / "prof.json"
    ppath.write_text(json.dumps(lm_profile().to_dict()))
    for batch in ("1", "3"):
        assert main(["sweep", str(path), "--profile", str(ppath), "--profile-model", "lm", "--checked-layers", "1",
                     "2", "--batch", batch, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert f"predicted ms per token (batch {batch}" in out["cost_unit"] and "prof.json" in out["latency profile"]


# ---------------------------------------------------------------------------------------------- the real decoder

@pytest.mark.parametrize("exits", ["lens", "tuned"])
def test_prediction_is_what_the_decoder_calls(monkeypatch, exits):
    """Every piece the CalmDecoder calls while decoding a batch (rows per call), priced by the profile, sums to
    calm_run_ms of the exits the decoder reports: the schedule is the runtime's own. Tuned exits: each exit call
    also runs its translator (``TunedExits.translate``), priced by the ``translator`` piece."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import toolkit.nn.causal.decode as decode
    from support.torch_models import M, prompts_of, tiny_llama

    model = tiny_llama()
    checked, thr = [2, 3, 5], [0.0158, 0.0156, 0.0154]  # thresholds that mix exits on this model
    prof = lm_profile(layers=6, translator=exits == "tuned")
    m = prof.model("lm")
    exit_fn = None
    if exits == "tuned":
        from toolkit.nn.causal.exits import TunedExits

        exit_fn = TunedExits(model).to(torch.float64)  # zero translators: the lens's logits, so exits still mix
    dec = decode.CalmDecoder(model, checked, thr, exit_fn=exit_fn)
    spent = [0.0]
    on = [False]

    def priced(piece, fn, rows_of):
        def call(*args, **kw):
            if on[0]:
                spent[0] += float(m[piece](rows_of(*args), 1))
            return fn(*args, **kw)
        return call

    st_ = dec.st
    translated = [0]
    if exits == "tuned":
        def rows_translated(k, h):
            translated[0] += 1
            return h.shape[0]
        monkeypatch.setattr(dec.exit, "translate", priced("translator", dec.exit.translate, rows_translated))
    monkeypatch.setattr(st_, "layer", priced("layer", st_.layer, lambda i, h, *a: h.shape[0]))
    monkeypatch.setattr(st_, "propagated_kv", priced("kv_propagation", st_.propagated_kv, lambda i, h, r: h.shape[0]))
    monkeypatch.setattr(st_, "head", priced("head", st_.head, lambda h: h.shape[0]))
    monkeypatch.setattr(dec, "exit", priced("exit", dec.exit, lambda k, h: h.shape[0]))
    monkeypatch.setattr(decode, "token_confidence", priced("confidence", decode.token_confidence,
                                                           lambda z, *a: z.shape[0]))
    step = dec._step

    def counted_step(bt):
        rows = len(bt)
        spent[0] += float(m["setup"](rows, 1) + m["step_overhead"](rows, 1))
        on[0] = True
        try:
            return step(bt)
        finally:
            on[0] = False

    monkeypatch.setattr(dec, "_step", counted_step)
    with torch.inference_mode():
        res = dec.generate(prompts_of((5, 9, 1, 13)), M)
    ex = np.concatenate(res.exit_layers)
    assert len(set(ex.tolist())) >= 3, f"thresholds should mix exits, got {np.unique(ex)}"
    pieces = ("exit", "confidence", "translator") if exits == "tuned" else ("exit", "confidence")
    assert (translated[0] > 0) == (exits == "tuned") and dec.exit_pieces == pieces
    assert spent[0] == pytest.approx(lat.calm_run_ms(m, res.exit_layers, checked, exit_pieces=pieces))
