"""The README's SmolLM2 numbers (markdown) from the shipped caches, so the README states what the caches hold.

Run: python scripts/llm_readme_numbers.py [--readme] [data folder]   (--readme: write them into README.md between
the llm-numbers markers; tests/test_llm_shipped.py checks that the README is current)
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import toolkit
from toolkit.analysis import llm
from toolkit.analysis.llm_cache import concat_token_caches, load_llm_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_sections  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "llm-numbers"
START, END = readme_sections.markers(SECTION)
SETS = {"cal": ["agnews_headline", "sst2_sentiment"], "test": ["agnews_headline", "sst2_sentiment", "qnli_answer"]}


def render(data=ROOT / "data") -> str:
    data = Path(data)
    parts = {s: [load_llm_cache(data / "llm" / f"smollm2_{p}-{s}.parquet", verify_data=False) for p in names]
             for s, names in SETS.items()}
    cal, test = (concat_token_caches(parts[s]) for s in ("cal", "test"))
    fams = test.family_names
    out = ["Token caches (prompts / generated tokens / quality of the full model's answers):", ""]
    out += ["| cache | prompts | tokens | ended with EOS | quality |", "|---|---|---|---|---|"]
    for s in parts.values():
        for c in s:
            q = ", ".join(f"{k} {v:.3f}" for k, v in c.meta["quality"].items())
            out.append(f"| {c.meta['prompt_set']}-{c.meta['split']} | {c.n_examples} | {c.n_tokens} | "
                       f"{c.meta['decoding']['ended_with_eos']:.2f} | {q} |")
    rel = {f: llm.layer_reliability(test, f).set_index("layer") for f in fams}
    out += ["", f"Per-layer agreement with the full model's token and ECE of max-probability (test, {test.n_tokens} "
            "tokens):", "", "| layer | " + " | ".join(f"{f} agreement | {f} ECE" for f in fams) + " |",
            "|---|" + "---|---|" * len(fams)]
    for layer in (1, 5, 10, 15, 20, 25, 28, 29):
        out.append(f"| {layer} | " + " | ".join(f"{rel[f].agreement[layer]:.3f} | {rel[f].ece[layer]:.3f}"
                                                for f in fams) + " |")
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
    out += ["", "CALM-style exit (max-probability, exits checked at every third layer; threshold chosen on cal for "
            "the target agreement, reported on test):", "",
            "| family | rule | target | agreement | FLOPs speed-up | mean layers |", "|---|---|---|---|---|---|"]
    for f in fams:
        sc, st = llm.token_staged(cal, f, checked_layers=checked), llm.token_staged(test, f, checked_layers=checked)
        cc = llm.calm_sweep(sc)
        for target in (0.9, 0.95, 0.99):
            ok = cc[cc.agreement >= target]
            r = llm.calm_evaluate(st, [ok.threshold.iloc[ok.flops.argmin()]]).iloc[0]
            out.append(f"| {f} | global | {target} | {r.agreement:.3f} | {r.speedup:.2f}x | {r.mean_layers:.1f} |")
            r = llm.calm_evaluate(st, llm.calm_layer_thresholds(sc, [target])).iloc[0]
            out.append(f"| {f} | per layer | {target} | {r.agreement:.3f} | {r.speedup:.2f}x | {r.mean_layers:.1f} |")
        o = llm.calm_oracle(st)
        out.append(f"| {f} | oracle | – | 1.000 | {o['speedup']:.2f}x | {o['mean_layers']:.1f} |")
    out += ["", "Self-speculative decoding (exact; best pair on cal, reported on test):", "",
            "| family | draft layer | draft length | acceptance | tokens per block | FLOPs speed-up |",
            "|---|---|---|---|---|---|"]
    for f in fams:
        sc = llm.self_speculative(cal, f)
        b = sc.iloc[int(sc.speedup.argmax())]
        t = llm.self_speculative(test, f, layers=[int(b.layer)], draft_lengths=[int(b.draft_length)]).iloc[0]
        out.append(f"| {f} | {int(b.layer)} | {int(b.draft_length)} | {t.acceptance:.3f} | {t.tokens_per_block:.2f} "
                   f"| {t.speedup:.2f}x |")
    out += ["", "The LLM as a classifier (test accuracy per exit layer; the best layer chosen on cal, its test accuracy; "
            "GFLOPs per example):", "",
            "| cache | L1 | L10 | L20 | L25 | L30 | best layer on cal: test accuracy | GFLOPs at L30 |",
            "|---|---|---|---|---|---|---|---|"]
    for task in ("sst2", "agnews"):
        for fam in ("zs_lens", "zs_tuned", "probe"):
            p = data / task / f"smollm2_{fam}-test.parquet"
            if not p.exists():
                continue
            c = toolkit.load_cache(p, verify_data=False)
            cal_c = toolkit.load_cache(p.with_name(p.name.replace("-test", "-cal")), verify_data=False)
            acc = pd.Series(c.correct.mean(0), index=c.stages)
            best = c.stages[int(np.argmax(cal_c.correct.mean(0)))]
            out.append(f"| {task}/smollm2_{fam} (N={c.n_examples}) | " + " | ".join(
                f"{acc[s]:.3f}" for s in ("L1", "L10", "L20", "L25", "L30")) + f" | {best}: {acc[best]:.3f} | "
                f"{c.flops[:, -1].mean() / 1e9:.2f} |")
    files = [*sorted((data / "llm").glob("smollm2_*.parquet")),
             *sorted(p for p in data.glob("*/smollm2_*.parquet") if p.parent.name != "llm")]
    out += ["", f"Sizes: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.2f} MB in all (token caches "
            f"{sum(p.stat().st_size for p in files if p.parent.name == 'llm') / 1e6:.2f} MB)."]
    return f"{START}\n" + "\n".join(out) + f"\n{END}"


def main(argv) -> int:
    write = "--readme" in argv
    args = [a for a in argv if a != "--readme"]
    text = render(*args)
    print(text)
    return readme_sections.write(SECTION, text) if write else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
