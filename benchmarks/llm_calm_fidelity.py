"""CALM-style exit for real against its offline estimate, on the shipped SmolLM2 token caches.

The offline estimate (``toolkit.analysis.llm.exits``, the engine's view of a token cache) is teacher forced: each token's
exit is judged on the full model's own trajectory. A real decode (:class:`toolkit.nn.causal.decode.CalmDecoder`, KV
cache with state propagation) continues from its own tokens, so once an exited token differs, the rest can differ.
This measures that gap on the 120 test prompts of ``data/llm/smollm2_{agnews_headline,sst2_sentiment}-test``:

* operating points chosen on the cal caches: per exit family (logit lens; tuned exits from ``--tuned``) and design
  (exits checked at every third layer; one exit at layer 3), the cheapest global max-probability threshold whose cal
  agreement with the full model is at least 0.95 (``engine.choose``, rule ``drop``, ``max_drop=0.05``);
* offline on test: agreement and FLOPs speed-up (teacher forced, ``engine.evaluation``);
* real on test: position-wise agreement with the full model's output, the share of identical outputs, where the two
  first part, whether that is where the offline estimate predicts the first disagreement, the FLOPs speed-up of the
  exits actually taken (same cost model), and the answers' quality (SST-2: the label word's accuracy; AG News: chrF
  against the title) against the full model's.

Resumable: one result file per (family, design, cache) under ``runs/llm_calm_fidelity/``; the summary goes to
``benchmarks/llm_calm_fidelity.json``.

Run: PYTHONPATH=. python benchmarks/llm_calm_fidelity.py [--batch-size 8] [--threads 1]
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

OUT = REPO / "runs" / "llm_calm_fidelity"
CACHES = ("smollm2_agnews_headline", "smollm2_sst2_sentiment")
DESIGNS = {"every 3rd layer": list(range(3, 30, 3)), "layer 3 only": [3]}
TARGET = 0.95


def first_difference(a: np.ndarray, b: np.ndarray) -> int:
    """First position where two outputs differ (-1: identical)."""
    n = min(len(a), len(b))
    d = np.flatnonzero(a[:n] != b[:n])
    return int(d[0]) if len(d) else (-1 if len(a) == len(b) else n)


def run_one(lm, exits, family, checked, threshold, cache, prompts, frame, ps, batch) -> dict:
    from toolkit.analysis import engine
    from toolkit.analysis.cost.causal import calm_token_flops, full_token_flops
    from toolkit.analysis.llm.exits import from_llm_tokens
    from toolkit.nn.causal.collect import answer_quality
    from toolkit.nn.causal.decode import CalmDecoder

    view = from_llm_tokens(cache, family=family, checked_layers=checked)
    ev = engine.evaluation(view, threshold)
    stage = view.stage_of(threshold)  # [S] the checked stage each token exits at, teacher forced
    agrees = view.stats[np.arange(view.n_examples), stage, 0] > 0
    dec = CalmDecoder(lm.model, checked, threshold, score="max_prob", exit_fn=exits)
    t0 = time.perf_counter()
    tokens, layers = [None] * cache.n_examples, [None] * cache.n_examples
    for start in range(0, cache.n_examples, batch):
        rows = list(range(start, min(start + batch, cache.n_examples)))
        res = dec.generate([prompts[i] for i in rows], int(cache.max_new_tokens[rows[0]]))
        for j, i in enumerate(rows):
            tokens[i], layers[i] = np.asarray(res.tokens[j]), np.asarray(res.exit_layers[j])
    seconds = time.perf_counter() - t0
    full = [cache.tokens[cache.offsets[i]:cache.offsets[i + 1]] for i in range(cache.n_examples)]
    first = np.array([first_difference(tokens[i], full[i]) for i in range(cache.n_examples)])
    # the offline estimate's first disagreement: the first teacher-forced exit whose token differs (-1: none)
    predicted = np.array([int(np.argmin(a)) if not a.all() else -1
                          for a in np.split(agrees, cache.offsets[1:-1])])
    n = [min(len(tokens[i]), len(full[i])) for i in range(cache.n_examples)]
    positionwise = float(sum((tokens[i][:n[i]] == full[i][:n[i]]).sum() for i in range(cache.n_examples)) / sum(n))
    dims = cache.dims
    ctx = [cache.n_prompt[i] + np.arange(len(tokens[i])) for i in range(cache.n_examples)]
    real_cost = sum(float(calm_token_flops(c, lay, dims, checked_layers=checked).sum()) for c, lay in zip(ctx, layers))
    real_full = sum(float(full_token_flops(c, dims).sum()) for c in ctx)
    texts = lm.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    _, quality = answer_quality(ps, texts, frame)
    return {"offline": {"agreement": float(ev.metrics["agreement"]), "flops_speedup": float(ev.speedup),
                        "outputs_without_disagreement": float(np.mean(predicted == -1))},
            "real": {"positionwise_agreement": positionwise, "identical_outputs": float(np.mean(first == -1)),
                     "first_difference_where_predicted": float(np.mean(first == predicted)),
                     "mean_first_difference": float(first[first >= 0].mean()) if (first >= 0).any() else None,
                     "flops_speedup": real_full / real_cost, "mean_exit_layer": float(np.concatenate(layers).mean()),
                     "tokens": int(sum(len(t) for t in tokens)), "quality": quality, "seconds": seconds},
            "full_model": {"quality": cache.meta.get("quality"), "tokens": int(cache.n_tokens)}}


def main(argv: list[str] | None = None) -> None:
    ap = fidelity_parser(__doc__)
    a = ap.parse_args(argv)
    from toolkit.analysis import engine
    from toolkit.analysis.llm.exits import from_llm_tokens
    from toolkit.caches.tokens import concat_token_caches, load_llm_cache

    lm, families = smollm2_with_exits(a.tuned, a.threads)
    cal = concat_token_caches([load_llm_cache(REPO / "data" / "llm" / f"{c}-cal.parquet") for c in CACHES])
    tests = shipped_token_caches(lm, CACHES)
    OUT.mkdir(parents=True, exist_ok=True)
    for family, exits in families.items():
        for design, checked in DESIGNS.items():
            op = engine.choose(from_llm_tokens(cal, family=family, checked_layers=checked), rule="drop",
                               metric="agreement", max_drop=1 - TARGET)
            for name, (cache, prompts, frame, ps) in tests.items():
                path = OUT / f"{name}-{family}-{design.replace(' ', '_')}-b{a.batch_size}.json"
                r = resumable_result(path, lambda: {
                    "cache": name, "family": family, "design": design, "checked_layers": checked,
                    "threshold": float(op.threshold), "target_agreement_on_cal": TARGET, "batch": a.batch_size,
                    **run_one(lm, exits, family, checked, float(op.threshold), cache, prompts, frame, ps,
                              a.batch_size)})
                o, re_ = r["offline"], r["real"]
                print(f"{name} {family} {design} thr {r['threshold']:.3f}: offline agreement {o['agreement']:.3f} "
                      f"at {o['flops_speedup']:.2f}x | real positionwise {re_['positionwise_agreement']:.3f}, "
                      f"identical {re_['identical_outputs']:.2f}, first difference where predicted "
                      f"{re_['first_difference_where_predicted']:.2f}, {re_['flops_speedup']:.2f}x, quality "
                      f"{re_['quality']} (full {r['full_model']['quality']})", flush=True)
    gather_results(OUT, REPO / "benchmarks" / "llm_calm_fidelity.json", lm, a.threads)


if __name__ == "__main__":
    main()
