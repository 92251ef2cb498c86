"""The LLM token cache and its offline analyses (numpy only): exact references, brute force, hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis import engine
from toolkit.analysis.cost.causal import (
    CausalLMDims,
    full_token_flops,
    head_flops,
    layer_flops,
    prefill_exit_flops,
    self_speculative_block_flops,
)
from toolkit.analysis.llm.exits import (
    _speculate,
    acceptance_counts,
    calm_layer_thresholds,
    layer_confidence,
    layer_reliability,
    self_speculative,
)
from toolkit.analysis.metrics.calibration import confidence_ece
from toolkit.caches.classification import CacheError, from_arrays
from toolkit.caches.compose import cascade_caches
from toolkit.caches.tokens import LLMTokenCache, concat_token_caches, load_llm_cache, save_llm_cache
from toolkit.testing import small_token_cache

DIMS = CausalLMDims(layers=5, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=50)


def _layer_shapes(dims):
    """Weight shapes of one gated Llama layer: q, k, v, o, gate, up, down."""
    H, q, kv, inter = dims.hidden, dims.q_dim, dims.kv_dim, dims.intermediate
    return [(H, q), (H, kv), (H, kv), (q, H), (H, inter), (H, inter), (inter, H)]


def speculate_by_hand(agree_k, length, max_new, d):
    """Plain loop over one continuation: accepted count per block."""
    p, out = 0, []
    while p < length:
        d_eff = min(d, max_new - 1 - p)  # leaves room for the verifier's token
        a = 0
        while a < d_eff and p + a < length and agree_k[p + a]:
            a += 1
        out.append(a)
        p += a + (1 if p + a < length else 0)
    return out


# ------------------------------------------------------------------------------------------------- cache
def test_cache_round_trip_and_views(tmp_path):
    c = small_token_cache(stats_dtype="float16")
    c.stats["lens"] = c.stats["lens"].astype(np.float16).astype(np.float32)
    c.quality = {"chrf": np.arange(c.n_examples, dtype=np.float64)}
    path = save_llm_cache(c, tmp_path / "c.parquet")
    d = load_llm_cache(path)
    for a in ("example_ids", "labels", "n_prompt", "tokens", "offsets"):
        np.testing.assert_array_equal(getattr(c, a), getattr(d, a))
    np.testing.assert_array_equal(c.top1["lens"], d.top1["lens"])
    np.testing.assert_array_equal(c.stats["lens"], d.stats["lens"])
    np.testing.assert_array_equal(d.quality["chrf"], c.quality["chrf"])
    assert d.temperatures == (1.0,) and d.stats_dtype == "float16" and d.dims == c.dims
    # positions: the first token is predicted from the prompt's last position, which attends to n_prompt positions
    assert d.positions[0] == c.n_prompt[0] and d.positions[1] == c.n_prompt[0] + 1
    np.testing.assert_array_equal(d.agreement("lens")[:, -1], True)
    assert d.example_index[d.offsets[1]] == 1 and d.steps[d.offsets[1]] == 0


def test_cache_refuses_bad_input(tmp_path):
    c = small_token_cache()
    bad = dict(c.__dict__)
    top1 = c.top1["lens"].copy()
    top1[0, -1] = (top1[0, -1] + 1) % 50
    with pytest.raises(CacheError, match="last layer's top-1 differs"):
        LLMTokenCache(**{**bad, "top1": {"lens": top1}})
    with pytest.raises(CacheError, match="stats have shape"):
        LLMTokenCache(**{**bad, "stats": {"lens": c.stats["lens"][:, :, :3]}})
    with pytest.raises(CacheError, match="NaN"):
        st_ = c.stats["lens"].copy()
        st_[0, 0, 0] = np.nan
        LLMTokenCache(**{**bad, "stats": {"lens": st_}})
    with pytest.raises(CacheError, match="offsets"):
        LLMTokenCache(**{**bad, "offsets": c.offsets[::-1]})
    with pytest.raises(CacheError, match="layers"):
        LLMTokenCache(**{**bad, "model": {"dims": {**c.model["dims"], "layers": 7}}})
    path = save_llm_cache(c, tmp_path / "c.parquet")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CacheError, match="not a readable Parquet"):
        load_llm_cache(path)
    with pytest.raises(CacheError, match="no such cache"):
        load_llm_cache(tmp_path / "absent.parquet")
    with pytest.raises(KeyError, match="exit family 'tuned'"):
        c.agreement("tuned")


# ------------------------------------------------------------------------------------------------- self-speculative
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(1, 6), max_new=st.integers(1, 10))
def test_speculation_equals_plain_loop(seed, d, max_new):
    c = small_token_cache(N=5, seed=seed, max_new=max_new)
    agree = c.agreement("lens")
    for k in range(1, c.n_layers):
        got = acceptance_counts(c, "lens", k, d)
        for i in range(c.n_examples):
            a = agree[c.offsets[i]:c.offsets[i + 1], k - 1]
            want = speculate_by_hand(a, len(a), max_new, d)
            assert got[i].tolist() == want


def test_self_speculative_frame_and_flops_by_hand():
    c = small_token_cache(N=4, seed=3)
    frame = self_speculative(c, "lens", draft_lengths=[1, 3])
    assert len(frame) == (c.n_layers - 1) * 2
    row = frame[(frame.layer == 2) & (frame.draft_length == 3)].iloc[0]
    agree = c.agreement("lens")[:, 1]
    flops, accepted, drafted, blocks, reads = 0.0, 0, 0, 0, 0.0
    L = c.n_layers
    w = 2.0 * sum(np.prod(s) for s in _layer_shapes(c.dims))  # 2 x a layer's projection parameters
    h = 2.0 * c.dims.hidden * c.dims.vocab
    for i in range(c.n_examples):
        a = agree[c.offsets[i]:c.offsets[i + 1]]
        p = 0
        for acc in speculate_by_hand(a, len(a), 9, 3):
            d_eff = min(3, 9 - 1 - p)
            flops += float(self_speculative_block_flops(c.n_prompt[i] - 1 + p, 2, d_eff, c.dims) if d_eff
                           else full_token_flops(c.n_prompt[i] + p, c.dims))  # one budget token left: a plain step
            # weights read: d' drafts through layers 1..2 and the head, then the verify pass: the last draft token
            # through layers 1..2, all d' + 1 positions through layers 3..L, and the head once
            reads += d_eff * (2 * w + h) + L * w + h if d_eff else L * w + h
            accepted, drafted, blocks = accepted + acc, drafted + d_eff, blocks + 1
            p += acc + 1
    ref = float(full_token_flops(c.positions, c.dims).sum())
    assert row.blocks == blocks
    assert row.acceptance == pytest.approx(accepted / drafted)
    assert row.speedup == pytest.approx(ref / flops, rel=1e-12)
    assert row.tokens_per_block == pytest.approx(c.n_tokens / blocks)
    assert row.memory_bound_speedup == pytest.approx(c.n_tokens * (L * w + h) / reads, rel=1e-12)


def test_perfect_and_useless_drafts():
    c = small_token_cache(N=5, p_agree=(1.0,), seed=1)
    tot, _ = _speculate(c, "lens", np.array([1]), np.array([4]))
    # every block but the last emits d + 1 tokens: the verifier's bonus token after d accepted ones
    assert tot["blocks"][0, 0] == np.ceil(c.lengths / 5).sum() and tot["emitted"][0, 0] == c.n_tokens
    # a block adds a verifier token unless its accepted drafts end the continuation: only an end-of-sequence ending
    # (T < budget) not a multiple of d + 1; drafts never reach the budget (they leave room for the verifier)
    no_bonus = ((c.lengths % 5 != 0) & (c.lengths < c.max_new_tokens)).sum()
    assert 0 < no_bonus < c.n_examples
    assert tot["accepted"][0, 0] == c.n_tokens - (tot["blocks"][0, 0] - no_bonus)
    never = small_token_cache(N=5, p_agree=(0.0,), seed=1)
    row = self_speculative(never, "lens", layers=[1], draft_lengths=[3]).iloc[0]
    assert row.acceptance == 0 and row.blocks == never.n_tokens and row.speedup < 1
    with pytest.raises(ValueError, match="draft layers"):
        self_speculative(c, "lens", layers=[c.n_layers])


# ------------------------------------------------------------------------------------------------- CALM
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), score=st.sampled_from(["max_prob", "margin", "entropy", "energy"]))
def test_calm_sweep_equals_evaluating_each_threshold(seed, score):
    c = small_token_cache(N=7, seed=seed)
    s = engine.staged(c, family="lens", score=score)
    sw = engine.sweep(s).to_frame()
    S, E = s.confidence.shape
    for t, a, f, m in zip(sw.threshold, sw.agreement, sw.flops, sw.mean_layers):  # each threshold by hand
        clears = s.confidence[:, :-1] >= t
        stage = np.where(clears.any(1), clears.argmax(1), E - 1)
        assert a == pytest.approx(s.stats[np.arange(S), stage, 0].mean())
        assert f == pytest.approx(s.cost[np.arange(S), stage].mean(), rel=1e-12)
        assert m == pytest.approx(s.layers[stage].mean())
    assert sw.agreement.iloc[0] == 1.0 and sw.final_share.iloc[0] == 1.0
    assert (np.diff(sw.flops) <= 1e-6).all()  # lower thresholds exit earlier: never more FLOPs
    oracle = engine.oracle(s)  # the earliest agreeing layer of each token
    assert oracle.flops == pytest.approx(s.cost[np.arange(S), s.stats[:, :, 0].argmax(1)].mean(), rel=1e-12)
    assert oracle.flops <= sw.flops[sw.agreement == 1.0].min() + 1e-6


def test_calm_cost_counts_layers_heads_and_propagation():
    c = small_token_cache(N=2, seed=5)
    s = engine.staged(c, family="lens", checked_layers=[2, 4])
    assert s.stage_names == ("L2", "L4", "L5")
    pos = c.positions[0]
    # exit at layer 4: four layers, the heads at 2 and 4, one skipped layer's K/V
    assert s.cost[0, 1] == pytest.approx(4 * layer_flops(pos, c.dims) + 2 * head_flops(c.dims)
                                         + 4 * c.dims.hidden * c.dims.kv_dim)
    assert s.cost[0, 2] == pytest.approx(full_token_flops(pos, c.dims) + 2 * head_flops(c.dims))
    assert s.reference_cost[0] == pytest.approx(full_token_flops(pos, c.dims))
    # a tuned family pays its translator (2H^2) before each intermediate exit it evaluates, not at the last layer
    c.families = {"lens": {"kind": "tuned_exits"}}
    t = engine.staged(c, family="lens", checked_layers=[2, 4])
    np.testing.assert_allclose(t.cost - s.cost, 2 * c.dims.hidden ** 2 * np.array([1, 2, 2]) * np.ones_like(s.cost))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.5, 1.0))
def test_layer_thresholds_reach_the_target_on_cal(seed, alpha):
    c = small_token_cache(N=12, seed=seed)
    s = engine.staged(c, family="lens")
    th = calm_layer_thresholds(s, [alpha])[0]
    assert np.isinf(th[-1])
    for e in range(len(th) - 1):  # brute force: the lowest distinct confidence whose clearing tokens reach alpha
        conf, agree = s.confidence[:, e], s.stats[:, e, 0]
        ok = [v for v in np.unique(conf) if agree[conf >= v].mean() >= alpha - 1e-12]
        assert th[e] == (min(ok) if ok else np.inf)
    # the engine applies them as per-stage thresholds: each token stops at the first layer clearing its own
    ev = engine.evaluation(s, th)
    clears = s.confidence[:, :-1] >= th[None, :-1]
    stage = np.where(clears.any(1), clears.argmax(1), len(th) - 1)
    assert ev.metrics["agreement"] == pytest.approx(s.stats[np.arange(len(stage)), stage, 0].mean())


def test_reliability_against_references():
    from sklearn.metrics import roc_auc_score

    c = small_token_cache(N=20, seed=7)
    rel = layer_reliability(c, "lens")
    conf = layer_confidence(c, "lens")
    st_ = c.stats["lens"]
    np.testing.assert_allclose(conf, np.exp(st_[..., 0] - st_[..., 2]), rtol=1e-6)
    agree = c.agreement("lens")
    for e in range(c.n_layers - 1):
        assert rel.agreement[e] == pytest.approx(agree[:, e].mean())
        assert rel.ece[e] == pytest.approx(confidence_ece(conf[:, e], agree[:, e]))
        assert rel.auroc[e] == pytest.approx(roc_auc_score(agree[:, e], conf[:, e]))


def test_confidence_ece_by_hand():
    # two bins: [0, .5) holds .25, .25 (both wrong: gap .25), [.5, 1] holds .55, .75, .75 (all right: gap 1-.6833)
    assert confidence_ece([.25, .25, .55, .75, .75], [0, 0, 1, 1, 1], n_bins=2) == pytest.approx(
        (2 * .25 + 3 * (1 - (.55 + .75 + .75) / 3)) / 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_ece([1.5], [1])


# ------------------------------------------------------------------------------------------------- cost, compose
def test_prefill_exit_flops_by_hand():
    n = np.array([3, 5])
    got = prefill_exit_flops(n, [2, 5], DIMS, exit_head_flops=7.0)
    for i, m in enumerate(n):
        per_layer = sum(float(layer_flops(j, DIMS)) for j in range(1, m + 1))  # token j attends to j positions
        assert got[i, 0] == pytest.approx(2 * per_layer + 7.0)
        assert got[i, 1] == pytest.approx(5 * per_layer + 14.0)
    with pytest.raises(ValueError, match="increase"):
        prefill_exit_flops(n, [3, 2], DIMS, exit_head_flops=0.0)


def test_cascade_caches_align_by_example_id():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 8)
    a = from_arrays(rng.normal(size=(8, 2, 3)), y, np.array([1.0, 2.0]), stages=["L1", "L2"],
                    example_ids=[f"t:x:{i}" for i in range(8)], meta={"task": "t", "split": "test"})
    perm = rng.permutation(8)[:6]
    b = from_arrays(rng.normal(size=(6, 1, 3)), y[perm], np.array([10.0]), stages=["L30"],
                    example_ids=[f"t:x:{i}" for i in perm], meta={"task": "t", "split": "test"})
    with pytest.raises(CacheError, match="different examples"):  # only when asked for
        cascade_caches([a, b], names=["enc", "llm"])
    c = cascade_caches([a, b], names=["enc", "llm"], subset=True)
    assert c.stages == ["enc:L1", "enc:L2", "llm:L30"] and c.n_examples == 6
    assert set(c.example_ids) == {f"t:x:{i}" for i in perm}
    np.testing.assert_array_equal(c.flops[:, 2], 12.0)
    for j, e in enumerate(c.example_ids):
        np.testing.assert_array_equal(c.logits[j, 2], b.logits[list(b.example_ids).index(e), 0])
        np.testing.assert_array_equal(c.logits[j, :2], a.logits[list(a.example_ids).index(e)])
    assert [s["model_index"] for s in c.stage_info] == [0, 0, 1]
    wrong = from_arrays(b.logits, (b.labels + 1) % 3, np.array([10.0]), stages=["L30"], example_ids=b.example_ids,
                        meta={"task": "t", "split": "test"})
    with pytest.raises(CacheError, match="labels"):
        cascade_caches([a, wrong], subset=True)
    other = from_arrays(b.logits, b.labels, np.array([10.0]), example_ids=b.example_ids,
                        meta={"task": "t", "split": "cal"})
    with pytest.raises(CacheError, match="different splits"):
        cascade_caches([a, other], subset=True)


def test_concatenated_caches_keep_each_prompts_budget():
    a, b = small_token_cache(N=3, seed=1, max_new=9), small_token_cache(N=4, seed=2, max_new=6)
    b.example_ids = np.array([f"u:test:{i}" for i in range(4)])
    c = concat_token_caches([a, b])
    assert c.n_examples == 7 and c.n_tokens == a.n_tokens + b.n_tokens
    np.testing.assert_array_equal(c.max_new_tokens, [9, 9, 9, 6, 6, 6, 6])
    both = self_speculative(c, "lens", layers=[2], draft_lengths=[5]).iloc[0]
    parts = [self_speculative(x, "lens", layers=[2], draft_lengths=[5]).iloc[0] for x in (a, b)]
    assert both.blocks == sum(p.blocks for p in parts)  # each prompt drafts within its own budget
    with pytest.raises(CacheError, match="different exit families"):
        concat_token_caches([a, LLMTokenCache(**{**b.__dict__, "top1": {"x": b.top1["lens"]},
                                                 "stats": {"x": b.stats["lens"]}})])


def test_a_malformed_token_cache_is_refused_naming_the_file(tmp_path):
    import pyarrow.parquet as pq

    from toolkit.caches.io import read_header, write_cache_table

    c = small_token_cache(N=4, seed=2)
    good = save_llm_cache(c, tmp_path / "good.parquet")
    table = pq.read_table(good)
    head = {k: v for k, v in read_header(good).items() if k != "integrity"}
    bad_head = {**head, "meta": {**head["meta"], "decoding": {**head["meta"].get("decoding", {}),
                                                               "max_new_tokens": [9, 9]}}}
    for name, tbl, hd, match in (("no_layers", table, {k: v for k, v in head.items() if k != "layers"}, "layers"),
                                 ("no_prompts", table.drop(["n_prompt"]), head, "'n_prompt' is missing"),
                                 ("budgets", table, bad_head, "max_new_tokens")):
        path = tmp_path / f"{name}.parquet"
        write_cache_table(tbl.replace_schema_metadata(None), path, hd)
        with pytest.raises(CacheError, match=match) as err:
            load_llm_cache(path)
        assert str(path) in str(err.value)
