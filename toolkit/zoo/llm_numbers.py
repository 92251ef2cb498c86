"""The SmolLM2 numbers (markdown) from the shipped caches, so docs/results/llm.md states what the caches hold:
token caches, per-layer agreement and ECE, CALM operating points (on the engine: ``rule="target"`` on cal,
per-layer thresholds, the oracle), the self-speculative choice by the memory-bound proxy (weights read as the
decoder runs its passes) and the LLM-as-classifier table. ``python scripts/llm_readme_numbers.py --readme`` writes
it between the ``llm-numbers`` markers; ``tests/test_llm_shipped.py`` checks that the page is current.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import toolkit.analysis.llm.exits as llm
from toolkit.analysis.llm import intervals as li
from toolkit.caches.classification import load_cache
from toolkit.caches.tokens import concat_token_caches, load_llm_cache
from toolkit.zoo import readme

DATA = Path(__file__).resolve().parents[2] / "data"
SECTION = "llm-numbers"

SETS = {"cal": ["agnews_headline", "sst2_sentiment"], "test": ["agnews_headline", "sst2_sentiment", "qnli_answer"]}
N_BOOT, SEED = 1000, 0


def render(data=DATA) -> str:
    """The section, markers included, computed from the caches under ``data``."""
    data = Path(data)
    parts = {s: [load_llm_cache(data / "llm" / f"smollm2_{p}-{s}.parquet", verify_data=False) for p in names]
             for s, names in SETS.items()}
    cal = concat_token_caches(parts["cal"])
    test = concat_token_caches([c for c in parts["test"] if c.meta["prompt_set"] in SETS["cal"]])  # as cal
    qnli = next(c for c in parts["test"] if c.meta["prompt_set"] == "qnli_answer")
    fams = test.family_names
    out = ["Token caches (prompts / generated tokens / quality of the full model's answers):", ""]
    out += ["| cache | prompts | tokens | ended with EOS | quality |", "|---|---|---|---|---|"]
    for s in parts.values():
        for c in s:
            q = ", ".join(f"{k} {v:.3f}" for k, v in c.meta["quality"].items())
            out.append(f"| {c.meta['prompt_set']}-{c.meta['split']} | {c.n_examples} | {c.n_tokens} | "
                       f"{c.meta['decoding']['ended_with_eos']:.2f} | {q} |")
    W = li.prompt_weights(test.n_examples, n_boot=N_BOOT, seed=SEED)
    Wq = li.prompt_weights(qnli.n_examples, n_boot=N_BOOT, seed=SEED)

    def fmt(row, m, f="{:.3f}"):
        return f"{f.format(row[m])} [{f.format(row[m + ' lo'])}, {f.format(row[m + ' hi'])}]"

    def ci(draws, fmt="{:.3f}", scale=1.0):
        v, lo, hi = li.interval(np.asarray(draws) * scale)
        return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"

    rel = {f: li.layer_reliability_draws(test, f, W) for f in fams}
    out += ["", f"Per-layer agreement with the full model's token and ECE of max-probability (test: "
            f"{' + '.join(SETS['cal'])}, {test.n_examples} prompts, {test.n_tokens} tokens; 95% intervals over "
            f"prompts, {N_BOOT} resamples, seed {SEED}):", "",
            "| layer | " + " | ".join(f"{f} agreement | {f} ECE" for f in fams) + " |", "|---|" + "---|---|" * len(fams)]
    for layer in (1, 5, 10, 15, 20, 25, 28, 29):
        out.append(f"| {layer} | " + " | ".join(f"{ci(rel[f]['agreement'][:, layer - 1])} | "
                                                f"{ci(rel[f]['ece'][:, layer - 1])}" for f in fams) + " |")
    tuned = test.families.get("tuned", {})
    if tuned.get("training"):
        t = tuned["training"]
        out += ["", f"Tuned exits: ridge start on {t.get('ridge_positions')} positions, then {t['positions_trained']} "
                f"positions of KL training ({t['steps']} Adam steps), {t['wall_s'] / 60:.0f} min in all on shared "
                f"CPUs; {t['train_sequences']} train-split prompts with the model's answers, "
                f"{t['heldout_sequences']} held out. Held-out mean KL(final || exit) over layers: lens "
                f"{np.mean(tuned['heldout']['lens']['kl']):.2f}, ridge start "
                f"{np.mean(tuned['heldout']['start']['kl']):.2f}, trained {np.mean(tuned['heldout']['end']['kl']):.2f} "
                f"nats."]
    checked = list(range(3, test.n_layers, 3))
    out += ["", "CALM-style exit (max-probability, exits checked at every third layer; each threshold chosen on cal "
            "for its target agreement, reported on test, and at the 0.95 target on QNLI answers, a prompt set cal "
            "does not contain; speed-up = the full model's FLOPs / the policy's, per generated token; 95% intervals "
            "over prompts):", "",
            "| family | rule | target (cal) | evaluated on | agreement | FLOPs speed-up | mean layers |",
            "|---|---|---|---|---|---|---|"]
    for f in fams:
        pts = li.calm_operating_points(cal, {"test": (test, W), "QNLI (transfer)": (qnli, Wq)}, f,
                                       checked_layers=checked, targets=(0.9, 0.95, 0.99),
                                       only_at={"QNLI (transfer)": (0.95,)}, transfer=("QNLI (transfer)",))
        for target in (0.9, 0.95, 0.99):
            for rule in ("global", "per layer"):
                for name in ("test", "QNLI (transfer)"):
                    if name != "test" and (target != 0.95 or rule != "global"):
                        continue
                    r = pts.point(rule, target, name)
                    out.append(f"| {f} | {rule} | {target} | {name} | {fmt(r, 'agreement')} | "
                               f"{fmt(r, 'speedup', '{:.2f}x')} | {r['mean layers']:.1f} |")
        o = pts.point(li.ORACLE)
        out.append(f"| {f} | oracle (upper bound) | – | test | 1.000 | {o.speedup:.2f}x | {o['mean layers']:.1f} |")
    out += ["", "Self-speculative decoding (exact: the output is the full model's). FLOPs cannot rank it (every pair "
            "is below 1x: every token still passes all layers, plus the draft and verify heads); the pair is chosen "
            "on cal by the memory-bound proxy (model weights read per generated token, in full-model reads: what "
            "decoding time follows when it is memory-bound; a block reads layers 1..k and the exit once per draft, "
            "then every layer and the head once, as the decoder runs it) and reported on test with 95% intervals "
            "over prompts; the deep pair (layer 29, length 1) beside it:",
            "", "| family | pair | draft layer | draft length | acceptance | tokens per block | memory-bound speed-up | "
            "FLOPs speed-up | cases above 1x on cal (memory-bound) |", "|---|---|---|---|---|---|---|---|---|"]
    best = {}
    for f in fams:
        choice = llm.choose_self_speculative(cal, f)
        best[f] = choice.row
        for label, (k, dl) in (("chosen on cal", (choice.layer, choice.draft_length)), ("deep", (29, 1))):
            d = li.self_speculative_draws(test, f, k, dl, W)
            out.append(f"| {f} | {label} | {k} | {dl} | {ci(d['acceptance'])} | "
                       f"{ci(d['tokens_per_block'], '{:.2f}')} | {ci(d['memory_bound_speedup'], '{:.2f}x')} | "
                       f"{ci(d['speedup'], '{:.2f}x')} | "
                       + (f"{choice.cases_above_one} of {len(choice.table)} |" if label != "deep" else "– |"))
    ceiling = llm.memory_bound_ceiling(test, "lens", 29, 1)
    out += ["", "With these exits self-speculative decoding does not pay on SmolLM2. The best pair on cal has a "
            "memory-bound speed-up of " + ", ".join(
                f"{best[f].memory_bound_speedup:.2f}x ({f}, layer {int(best[f].layer)}, length "
                f"{int(best[f].draft_length)})" for f in fams)
            + " on cal: at most a few percent, only where decoding time is all weight reads, and at a FLOPs cost "
            "(table). Even an exit at layer 29 whose every draft were accepted would reach "
            f"{ceiling:.3f}x at length 1 (logit lens): the verify pass runs the last draft token through layers 1..k "
            "again, so a block reads every layer once besides its drafts. What would pay is a shallow exit that "
            "agrees with the last layer far more often, as a checkpoint trained for it (LayerSkip-style layer "
            "dropout and early-exit loss) has; these are post-hoc exits on a model trained without them."]
    out += ["", "The LLM as a classifier (test accuracy per exit layer; the best layer chosen on cal, its test accuracy; "
            "GFLOPs per example):", "",
            "| cache | L1 | L10 | L20 | L25 | L30 | best layer on cal: test accuracy | GFLOPs at L30 |",
            "|---|---|---|---|---|---|---|---|"]
    for task in ("sst2", "agnews"):
        for fam in ("zs_lens", "zs_tuned", "probe"):
            p = data / task / f"smollm2_{fam}-test.parquet"
            if not p.exists():
                continue
            c = load_cache(p, verify_data=False)
            cal_c = load_cache(p.with_name(p.name.replace("-test", "-cal")), verify_data=False)
            acc = pd.Series(c.correct.mean(0), index=c.stages)
            best = c.stages[int(np.argmax(cal_c.correct.mean(0)))]
            out.append(f"| {task}/smollm2_{fam} (N={c.n_examples}) | " + " | ".join(
                f"{acc[s]:.3f}" for s in ("L1", "L10", "L20", "L25", "L30")) + f" | {best}: {acc[best]:.3f} | "
                f"{c.flops[:, -1].mean() / 1e9:.2f} |")
    files = [*sorted((data / "llm").glob("smollm2_*.parquet")),
             *sorted(p for p in data.glob("*/smollm2_*.parquet") if p.parent.name != "llm")]
    out += ["", f"Sizes: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB in all (token caches "
            f"{sum(p.stat().st_size for p in files if p.parent.name == 'llm') / 1e6:.2f} MB)."]
    start, end = readme.markers(SECTION)
    return f"{start}\n" + "\n".join(out) + f"\n{end}"
