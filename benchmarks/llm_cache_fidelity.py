"""The real self-speculative decoder against the shipped SmolLM2 token caches, prompt by prompt.

For each shipped test cache (``data/llm/smollm2_agnews_headline-test``, ``smollm2_sst2_sentiment-test``: 120 prompts),
each exit family (logit lens; tuned exits from ``--tuned``, default ``runs/llm/smollm2_tuned``, made by
``scripts/build_llm_caches.sh exits``) and each (draft layer, draft length): decode the cache's prompts with
:class:`toolkit.nn.causal.decode.SelfSpeculativeDecoder` (KV cache, batched) and check that

* its output equals the cached greedy output token for token, and
* its accepted count of every block equals :func:`toolkit.analysis.llm.exits.acceptance_counts` on the cache, and
* (one row at a time) the FLOPs and weight reads it counts for every block (its recorded passes) equal the offline
  walk's (:func:`toolkit.analysis.llm.exits.self_speculative_blocks`).

The pairs: for each family, the one with the best memory-bound speed-up on the cal caches (``self_speculative``,
the criterion notebook 10 and the README use), the deep pair (layer 29, length 1) and a shallow one (layer 10,
length 2) that rejects often. Resumable: one result file per (cache, family, k, d, batch) under
``runs/llm_cache_fidelity/``; the summary (merged with the results already in it) goes to
``benchmarks/llm_cache_fidelity.json``.

Run: PYTHONPATH=. python benchmarks/llm_cache_fidelity.py [--batch-size 8] [--threads 1]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_setup import (  # noqa: E402
    REPO,
    fidelity_parser,
    gather_results,
    resumable_result,
    shipped_token_caches,
    smollm2_with_exits,
)

OUT = REPO / "runs" / "llm_cache_fidelity"
CACHES = ("smollm2_agnews_headline", "smollm2_sst2_sentiment")


def chosen_pairs(family: str) -> list[tuple[int, int]]:
    """The best (layer, length) on cal by the memory-bound speed-up, the deep pair and a shallow pair."""
    return sorted({best_pair(family), (29, 1), (10, 2)})


def best_pair(family: str) -> tuple[int, int]:
    """The pair chosen on cal (the best memory-bound speed-up)."""
    import toolkit.analysis.llm.exits as llm
    from toolkit.caches.tokens import concat_token_caches, load_llm_cache

    cal = concat_token_caches([load_llm_cache(REPO / "data" / "llm" / f"{c}-cal.parquet") for c in CACHES])
    choice = llm.choose_self_speculative(cal, family)
    return choice.layer, choice.draft_length


def run_one(lm, exits, cache, prompts, k: int, d: int, batch: int) -> dict:
    from toolkit.analysis.llm.exits import self_speculative_blocks
    from toolkit.nn.causal.decode import SelfSpeculativeDecoder

    blocks = self_speculative_blocks(cache, exits.family, k, d)
    offline = blocks.by_prompt("accepted")
    flops, reads = blocks.by_prompt("flops"), blocks.by_prompt("reads")
    costs_equal = 0
    dec = SelfSpeculativeDecoder(lm.model, k, d, exits)
    budgets = cache.max_new_tokens
    tokens_equal, accepted_equal, first_bad = 0, 0, []
    t0 = time.perf_counter()
    for start in range(0, cache.n_examples, batch):
        rows = list(range(start, min(start + batch, cache.n_examples)))
        if len(set(budgets[rows])) != 1:
            raise ValueError("prompts of one batch need one decoding budget")
        res = dec.generate([prompts[i] for i in rows], int(budgets[rows[0]]))
        for j, i in enumerate(rows):
            want = cache.tokens[cache.offsets[i]:cache.offsets[i + 1]]
            ok_tokens = np.array_equal(res.tokens[j], want)
            ok_acc = np.array_equal(res.accepted[j], offline[i])
            tokens_equal += ok_tokens
            accepted_equal += ok_acc
            if batch == 1:  # one row: the block costs it counted are the offline walk's, block by block
                costs_equal += (len(res.passes) == len(flops[i]) and np.allclose(res.block_flops, flops[i], rtol=1e-12)
                                and np.allclose(res.block_reads, reads[i], rtol=1e-12))
            if not (ok_tokens and ok_acc):
                n = min(len(want), len(res.tokens[j]))
                diff = np.flatnonzero(res.tokens[j][:n] != want[:n])
                first_bad.append({"prompt": i, "tokens_equal": bool(ok_tokens), "accepted_equal": bool(ok_acc),
                                  "first_token_difference": int(diff[0]) if len(diff) else n})
    return {"prompts": cache.n_examples, "tokens": int(cache.n_tokens), "tokens_equal": int(tokens_equal),
            "accepted_equal": int(accepted_equal), "mismatches": first_bad,
            **({"block_costs_equal_offline": int(costs_equal)} if batch == 1 else {}),
            "blocks": int(sum(len(a) for a in offline)), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    ap = fidelity_parser(__doc__)
    ap.add_argument("--pairs", choices=("all", "chosen"), default="all",
                    help="'chosen': only each family's pair chosen on cal")
    a = ap.parse_args(argv)
    lm, families = smollm2_with_exits(a.tuned, a.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (cache, prompts, _, _) in shipped_token_caches(lm, CACHES).items():
        for family, exits in families.items():
            for k, d in (chosen_pairs(family) if a.pairs == "all" else [best_pair(family)]):
                path = OUT / f"{name}-{family}-k{k}-d{d}-b{a.batch_size}.json"
                r = resumable_result(path, lambda: {
                    "cache": name, "family": family, "layer": k, "draft_length": d, "batch": a.batch_size,
                    **run_one(lm, exits, cache, prompts, k, d, a.batch_size)})
                print(f"{name} {family} k={k} d={d} batch {a.batch_size}: tokens equal {r['tokens_equal']}/"
                      f"{r['prompts']}, accepted counts equal {r['accepted_equal']}/{r['prompts']} "
                      f"({r['blocks']} blocks, {r['seconds']:.0f} s)", flush=True)
    # every (cache, family, pair, batch) checked so far, this run's and earlier runs' (other batch sizes)
    gather_results(OUT, REPO / "benchmarks" / "llm_cache_fidelity.json", lm, a.threads)


if __name__ == "__main__":
    main()
