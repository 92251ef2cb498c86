"""Offline LLM analyses: every self-speculative (family, draft layer, draft length) case at once, vectorised, against
a plain Python walk over each continuation's blocks; and the exact CALM sweep.

Prints wall times and their ratio, measured side by side in one run, on the shipped SmolLM2 test caches (or on a
synthetic cache of the given size when they are absent).
Run: python benchmarks/bench_llm.py [data folder]
"""

import sys
import time
from pathlib import Path

from toolkit.analysis import engine, llm
from toolkit.analysis.cost.causal import full_token_flops, self_speculative_block_flops
from toolkit.caches.tokens import concat_token_caches, load_llm_cache


def walk_by_hand(cache, family, layers, draft_lengths):
    """The reference: a Python loop over examples and blocks for each (layer, draft length)."""
    agree = cache.agreement(family)
    ref = float(full_token_flops(cache.positions, cache.dims).sum())
    out = {}
    for k in layers:
        for d in draft_lengths:
            flops = 0.0
            for i in range(cache.n_examples):
                a_ = agree[cache.offsets[i]:cache.offsets[i + 1], k - 1]
                T, p, budget = len(a_), 0, int(cache.max_new_tokens[i])
                while p < T:
                    d_eff = min(d, budget - 1 - p)  # room for the verifier's token, as the real decoder drafts
                    a = 0
                    while a < d_eff and p + a < T and a_[p + a]:
                        a += 1
                    flops += float(self_speculative_block_flops(cache.n_prompt[i] - 1 + p, k, d_eff, cache.dims)
                                   if d_eff else full_token_flops(cache.n_prompt[i] + p, cache.dims))
                    p += a + (1 if p + a < T else 0)
            out[(k, d)] = ref / flops
    return out


def main(data="data"):
    files = sorted(Path(data, "llm").glob("smollm2_*-test.parquet"))
    if not files:
        sys.exit(f"no token caches in {data}/llm: build them with scripts/build_llm_caches.sh")
    cache = concat_token_caches([load_llm_cache(f, verify_data=False) for f in files])
    fams = cache.family_names
    D = range(1, 9)
    print(f"{len(files)} caches: {cache.n_examples} prompts, {cache.n_tokens} generated tokens, {cache.n_layers} "
          f"layers, families {fams}")
    llm.self_speculative(cache, fams[0], draft_lengths=D)  # warm-up
    t0 = time.perf_counter()
    frames = [llm.self_speculative(cache, f, draft_lengths=D) for f in fams]
    t_vec = time.perf_counter() - t0
    n_cases = sum(len(f) for f in frames)
    layers = [1, cache.n_layers // 2, cache.n_layers - 1]  # the by-hand walk on 3 layers, scaled to all
    t0 = time.perf_counter()
    by_hand = walk_by_hand(cache, fams[0], layers, D)
    t_hand = (time.perf_counter() - t0) * (cache.n_layers - 1) / len(layers) * len(fams)
    f0 = frames[0].set_index(["layer", "draft_length"])
    worst = max(abs(f0.speedup[k] - v) / v for k, v in by_hand.items())
    t0 = time.perf_counter()
    for f in fams:
        engine.sweep(engine.staged(cache, family=f))
    t_calm = time.perf_counter() - t0
    print(f"self-speculative, all {n_cases} cases (vectorised):  {t_vec:8.3f} s")
    print(f"plain walk per example and block (scaled):      {t_hand:8.3f} s  (3 of {cache.n_layers - 1} layers timed)")
    print(f"ratio walk / vectorised:                         {t_hand / t_vec:8.1f}x  (max relative speed-up difference "
          f"{worst:.1e})")
    print(f"CALM exact sweep, every layer checked, {len(fams)} families: {t_calm:8.3f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
