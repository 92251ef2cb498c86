"""The shipped SmolLM2 caches: they load, hold ids and model outputs only, stay small, and their FLOPs are the
causal-LM cost model's."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from toolkit.analysis.cost.causal import CausalLMDims, prefill_exit_flops
from toolkit.caches.classification import load_cache
from toolkit.caches.tokens import load_llm_cache

DATA = Path(__file__).resolve().parents[1] / "data"
TOKEN_CACHES = sorted((DATA / "llm").glob("smollm2_*.parquet"))
CLASSIFIER_CACHES = sorted(p for p in DATA.glob("*/smollm2_*.parquet") if p.parent.name != "llm")
pytestmark = pytest.mark.skipif(not TOKEN_CACHES, reason="no shipped LLM caches")


def test_llm_files_stay_small():
    total = sum(p.stat().st_size for p in [*TOKEN_CACHES, *CLASSIFIER_CACHES])
    assert total < 6.3e6, f"LLM caches in data/ hold {total / 1e6:.2f} MB"


@pytest.mark.parametrize("path", TOKEN_CACHES, ids=lambda p: p.name)
def test_token_caches_load_and_hold_no_text(path):
    c = load_llm_cache(path)
    assert "Q4_1" in c.model["origin"] and "dequantized" in c.model["origin"]
    assert set(c.family_names) >= {"lens"} and c.n_layers == 30
    fixed = {"example_id", "label", "n_prompt", "tokens"}
    for n in pq.read_schema(path).names:  # ids, token ids, exit statistics and quality numbers: no text column
        assert n in fixed or n.startswith("q/") or n.split("/")[-1] in ("top1", "stats"), n
    assert all(i.startswith(f"{c.meta['task']}:") for i in c.example_ids)
    assert c.meta["split"] in ("cal", "test") and c.meta["data"]["fingerprint"]
    for f in c.family_names:
        assert c.agreement(f)[:, -1].all()


@pytest.mark.parametrize("path", CLASSIFIER_CACHES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_classifier_cache_flops_are_the_cost_model(path):
    c = load_cache(path)
    dims = CausalLMDims(**c.meta["llm"]["dims"])
    layers = [s["layer"] for s in c.stage_info]
    want = prefill_exit_flops(c.n_tokens, layers, dims, exit_head_flops=c.meta["exit_head_flops"])
    np.testing.assert_allclose(c.flops, want, rtol=1e-12)
    assert "Q4_1" in c.meta["llm"]["origin"] and c.split in ("cal", "test")


def test_readme_llm_numbers_are_current():
    from toolkit.zoo import llm_numbers, readme

    current = readme.current(llm_numbers.SECTION)
    assert current is not None, "docs/results/llm.md has no SmolLM2 numbers section"
    assert current == llm_numbers.render(), "docs/results/llm.md's SmolLM2 numbers are stale: run `python " \
        "scripts/llm_readme_numbers.py --readme`"


def brute_force_reads_speedup(cache, family: str, k: int, d: int) -> float:
    """Weight-read speed-up of self-speculative decoding, walked prompt by prompt in plain Python, independent of
    the library's walk: a block drafts d' tokens through layers 1..k and the exit, then verifies by running the last
    draft token through layers 1..k and all d' + 1 positions through layers k+1..L: every layer once, plus one
    head. Weights from the dims: a layer's q, k, v, o and gated MLP matrices; the head H x V; a tuned exit's
    translator H x H (+ bias)."""
    m = cache.dims
    H, q, kv = m.hidden, m.heads * m.head_dim, m.kv_heads * m.head_dim
    layer = 2 * (H * q + 2 * H * kv + q * H + 3 * H * m.intermediate)  # 2 x parameters: FLOPs at one position
    head = 2 * H * m.vocab
    exit_ = head + (2 * H * H if cache.families[family]["kind"] == "tuned_exits" else 0)
    L, agree = m.layers, cache.agreement(family)[:, k - 1]
    reads = 0.0
    for i in range(cache.n_examples):
        a_i = agree[cache.offsets[i]:cache.offsets[i + 1]]
        T, budget, p = len(a_i), int(cache.max_new_tokens[i]), 0
        while p < T:
            dd = min(d, budget - 1 - p)
            acc = 0
            while acc < dd and p + acc < T and a_i[p + acc]:
                acc += 1
            reads += dd * (k * layer + exit_) + L * layer + head  # d' drafts, then every layer once and the head
            p += acc + (p + acc < T)
    return cache.n_tokens * (L * layer + head) / reads


@pytest.mark.parametrize("family,k,want", [("tuned", 29, 0.92), ("tuned", 2, None), ("lens", 29, 0.75)])
def test_self_speculative_weight_reads_equal_an_independent_walk(family, k, want):
    """The published memory-bound speed-up counts the verify pass through every layer (it once left out layers
    1..k of the last draft token and claimed 1.50x for tuned exits at (29, 1))."""
    import toolkit.analysis.llm.exits as llm
    from toolkit.caches.tokens import concat_token_caches

    test = concat_token_caches([load_llm_cache(DATA / "llm" / f"smollm2_{p}-test.parquet", verify_data=False)
                                for p in ("agnews_headline", "sst2_sentiment")])
    if family not in test.family_names:
        pytest.skip(f"the shipped caches hold no {family!r} exits")
    row = llm.self_speculative(test, family, layers=[k], draft_lengths=[1]).iloc[0]
    assert row.memory_bound_speedup == pytest.approx(brute_force_reads_speedup(test, family, k, 1), rel=0.01)
    if want is not None:
        assert row.memory_bound_speedup == pytest.approx(want, abs=0.01)
