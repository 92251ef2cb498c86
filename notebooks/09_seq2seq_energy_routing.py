# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Seq2seq Swift/Super routing: energy over generated tokens (E-LANG for encoder-decoders)
#
# E-LANG also routes encoder-decoder generation: Swift generates; when its token-level energies, aggregated over the
# generated sequence, say it is unsure, Super generates instead. No pretrained seq2seq checkpoint is installable on
# these machines, so both models are warm-started encoder-decoders (`toolkit.nn.seq2seq.models.warm_start`) fine-tuned
# text-to-text on SST-2 to generate the label word, as E-LANG did with T5 on GLUE:
#
# - **Swift**: all-MiniLM-L6-v2 encoder -> all-MiniLM-L6-v2 decoder (new cross-attention and LM-head transform);
# - **Super**: all-mpnet-base-v2 encoder -> the same MiniLM-L6 decoder.
#
# Their recipes are printed below. Splits: `cal`, a seeded hold-out of SST-2's training file; `test`, the GLUE dev
# set. Greedy decoding. Quality: exact match of the generated text with the label word (the accuracy of a
# text-to-text classifier: every rule below is on exact match). Cost: generation FLOPs
# (`toolkit.analysis.cost.seq2seq`: encoder, every decoder step with its KV cache, and the LM head per generated
# token); a routed example pays Swift's run and Super's. Speed-ups against Super alone (the last member). The caches
# keep per-step statistics (top-2 logits, logsumexp and entropy at a few temperatures), not the vocabulary logits.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.analysis.routing import area_gain, compare_routers, references
from toolkit.zoo import catalogue

report.setup()
sets = catalogue.load_seeds("sst2", "t2t")
cal, test = sets.first()
display(catalogue.recipe("sst2", "t2t"))

# %%
# NBVAL_CHECK_OUTPUT
print(test)
print(test.summary().round(4).to_string())
for name, g in test.models.items():
    outs = {k: int(v) for k, v in pd.Series(g.text).value_counts().sort_index().items()}
    steps = {int(k): int(v) for k, v in pd.Series(g.n_steps).value_counts().sort_index().items()}
    print(f"{name}: outputs {outs}; tokens per output {steps}")
print("cached temperatures:", list(test.temperatures))

# %% [markdown]
# Both models always generate a label word followed by `[SEP]`, so the sequence is short and the first token carries
# the decision. Super is several times Swift's cost; the question is how much of Super's exact match routing keeps,
# and at what cost.
#
# ## Routing curves: score x aggregation
#
# Token scores are aggregated over the generated tokens by mean, max, min, sum or the first token, then oriented so
# that higher = more confident (E-LANG's "max energy" is the least confident token, i.e. `min` of the oriented
# confidence). Curves that coincide exactly are drawn once and named together in the legend.

# %%
refs = references(engine.staged(test))
display(refs.round(4))
ROUTERS = [("energy", "mean"), ("energy", "max"), ("energy", "first"), ("energy", "sum"), ("max_prob", "mean"),
           ("max_prob", "first"), ("entropy", "mean")]
curves = {f"{s} ({h})": engine.sweep(engine.staged(test, score=s, how=h)) for s, h in ROUTERS}
drawn = report.merge_identical(curves)
fig, ax = plt.subplots(figsize=(7.5, 4.8))
# curves that nearly coincide stay visible: each later one thinner and dashed differently
styles = [dict(lw=2.2), dict(lw=2.2), dict(lw=5, alpha=0.35), dict(lw=1.8, ls="--"), dict(lw=1.4, ls=":")]
for i, (label, c) in enumerate(drawn.items()):
    plots.plot_curve(c, ax=ax, label=label, color=f"C{i}", **styles[i % len(styles)])
for name, style in (("super", ":"), ("swift", "--")):
    ax.axhline(refs.loc[f"{name} alone", "exact_match"], color="gray", ls=style, lw=1, label=f"{name} alone")
reference = next(iter(curves.values())).reference
ax.set_xlabel(plots.speedup_label(reference))
plots.speedup_axis(ax, reference=reference)  # log base 2 (1x 2x 4x), the region below 1x shaded and named
ax.set_ylabel("SST-2 test exact match")
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="upper right", title=f"{len(curves)} routers, {len(drawn)} distinct curves\n(overlaps: "
          "thick pale, dashed and dotted lines)", title_fontsize=7)
print(f"{len(curves)} routers give {len(drawn)} distinct curves:", list(drawn))
report.show(fig, alt=f"SST-2 test exact match of Swift/Super text-to-text routing against speed-up over Super alone, for "
                 f"{len(curves)} routers (score and aggregation) that give {len(drawn)} distinct curves, each named "
                 f"in the legend with the routers it stands for. Max-probability and entropy curves nearly coincide "
                 f"and are drawn with different widths and dashes; horizontal lines mark Super alone "
                 f"({refs.loc['super alone', 'exact_match']:.3f}) and Swift alone "
                 f"({refs.loc['swift alone', 'exact_match']:.3f}). The speed-up axis is logarithmic (each doubling "
                 f"equally spaced); the shaded region below 1x is where routing costs more than Super alone.")

# %% [markdown]
# `area_gain`: share of the oracle router's advantage over random routing recovered, on the curve of quality
# against routed share (1 = oracle, 0 = random). `speedup_at_drop_upper_bound`: largest speed-up whose test exact
# match is within 0.5 point of Super alone (the best threshold for test itself: test-selected, in-sample); `escalated_at_drop`:
# share sent to Super there.

# %%
# NBVAL_CHECK_OUTPUT
table = compare_routers(test, scores=("energy", "max_prob", "entropy", "margin"), max_drop=0.005)
table = table.round(3).sort_values(["area_gain", "score", "aggregation"], ascending=[False, True, True])
print(table.to_string(index=False))

# %% [markdown]
# ## Temperature
#
# Energy depends on T (`-T logsumexp(z/T)`); max-probability's ranking does not change with a single token but does
# once tokens are aggregated. Area gain of the mean-aggregated scores at each cached temperature:

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for t in test.temperatures:
    row = {"T": t}
    for s in ("energy", "max_prob", "entropy"):
        view = engine.staged(test, score=s, how="mean", temperature=t)
        row[s] = area_gain(view, engine.sweep(view))
    rows.append(row)
temps = pd.DataFrame(rows).set_index("T")
print(temps.round(3).to_string())

# %% [markdown]
# ## Energy against max-probability, with intervals
#
# On the first token (the label word) and averaged over the tokens: the best exact match at 1.5x, 2x and 3x
# (`engine.compare`) and the speed-up that keeps Super's exact match within 0.5 point (`engine.compare_speedups`),
# each a difference with a 95% paired bootstrap interval over test examples.

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for h in ("first", "mean"):
    e = [engine.staged(t, score="energy", how=h) for t in sets.test]
    m = [engine.staged(t, score="max_prob", how=h) for t in sets.test]
    c = engine.compare(e, m, budgets=(1.5, 2, 3), metric="exact_match", n_boot=catalogue.N_BOOT, seed=catalogue.SEED).frame
    for _, r in c.iterrows():
        rows.append({"aggregation": h, "statistic": f"exact match at {r['budget']}", "energy": r["a"],
                     "max-prob": r["b"], "difference": r["difference"], "lo": r["lo"], "hi": r["hi"]})
    c = engine.compare_speedups(e, m, max_drop=0.005, metric="exact_match", n_boot=catalogue.N_BOOT, seed=catalogue.SEED).frame
    rows.append({"aggregation": h, "statistic": "speed-up within 0.5 point of Super", "energy": c["a"].iloc[0],
                 "max-prob": c["b"].iloc[0], "difference": c["difference"].iloc[0], "lo": c["lo"].iloc[0],
                 "hi": c["hi"].iloc[0]})
em = pd.DataFrame(rows)
print(em.round(3).to_string(index=False))

# %% [markdown]
# ## Operating points
#
# For each router, the cheapest threshold whose exact match is within 0.5 point of Super's (`drop` rule on exact
# match), chosen two ways: by cross-fitting on test halves, and on `cal` (the train carve). Realised on test with
# 95% intervals.

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for s, h in [("energy", "mean"), ("energy", "first"), ("max_prob", "mean"), ("max_prob", "first"),
             ("entropy", "mean")]:
    vt = engine.staged(test, score=s, how=h)
    cf = engine.crossfit(vt, rule="drop", metric="exact_match", max_drop=0.005, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
    ev = engine.choose(engine.staged(cal, score=s, how=h), rule="drop", metric="exact_match", max_drop=0.005).evaluate(
        vt, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
    for how_chosen, e in (("cross-fit on test halves", cf.combined), ("chosen on cal", ev)):
        rows.append({**report.point_row(f"{s} ({h}), {how_chosen}", e, metric="exact_match"), "routed": e.escalated})
ops = pd.DataFrame(rows)
print(f"Super alone on test: {refs.loc['super alone', 'exact_match']:.4f}; Swift alone: "
      f"{refs.loc['swift alone', 'exact_match']:.4f}")
print(ops.round(4).to_string(index=False))

# %% [markdown]
# ## Translation (for users with hub models)
#
# The same collection runs on any `AutoModelForSeq2SeqLM`, with BLEU and chrF kept as corpus statistics so the
# routed corpus is scored exactly as sacrebleu would score the mixed output. With hub access, for example:
#
# ```python
# from toolkit.nn.seq2seq.generate import collect_generation
# cache = collect_generation({"swift": "Helsinki-NLP/opus-mt-en-de", "super": "facebook/wmt19-en-de"},
#                            "wmt21_en_de", "test", "wmt21-en-de.parquet")   # ../shared/data/wmt21_en_de/test.tsv
# engine.sweep(engine.staged(cache, score="energy", how="mean", metric="bleu"))
# ```
#
# or `toolkit generate --model swift=... --model super=... --task wmt21_en_de --split test --out ...`. That path is
# tested offline with tiny T5 and Marian models built from configs (`tests/test_seq2seq.py`); no translation
# checkpoint exists on these machines, so no translation cache is shipped.

# %%
ag = table.set_index(["score", "aggregation"])
top = ag[ag["area_gain"] >= ag["area_gain"].max() - 1e-9]
print("routers tied at the best area gain:", len(top))
below = [f"{s} ({h}) {r['area_gain']:.3f}" for (s, h), r in ag.iterrows() if r["area_gain"] < 0]
e1 = em.set_index(["aggregation", "statistic"])
r_first = e1.loc[("first", "exact match at 2x")]
s_first = e1.loc[("first", "speed-up within 0.5 point of Super")]
s_mean = e1.loc[("mean", "speed-up within 0.5 point of Super")]
op = ops.set_index("point")
cf_m, cf_e = op.loc["max_prob (first), cross-fit on test halves"], op.loc["energy (first), cross-fit on test halves"]
best_t = temps["energy"].idxmax()
report.conclude(f"""
**Reading the numbers above.** Swift reaches {refs.loc['swift alone', 'exact_match']:.3f} exact match, Super
{refs.loc['super alone', 'exact_match']:.3f}; the oracle (Super only where it fixes Swift) would reach
{refs.loc['oracle', 'exact_match']:.3f}, so the two models err on different sentences. The best area gain,
{top['area_gain'].iloc[0]:.3f} (a share of the oracle's advantage over random routing), is shared by {len(top)}
routers: {", ".join(sorted({s for s, _ in top.index}))} under several aggregations.
Aggregations worse than random (negative area gain): {", ".join(below) or "none"}. Energy against max-probability on
the first token (the label word): at 2x the best exact match differs by {r_first['difference']:+.3f}
{report.ci(r_first['lo'], r_first['hi'])}; the speed-up within 0.5 point of Super differs by
{s_first['difference']:+.2f}x {report.ci(s_first['lo'], s_first['hi'], digits=2)}, and averaged over the tokens by
{s_mean['difference']:+.2f}x {report.ci(s_mean['lo'], s_mean['hi'], digits=2)}. A higher temperature helps energy
(its best area gain, {temps.loc[best_t, 'energy']:.3f}, is at T = {best_t:g}). Chosen by cross-fitting on test halves,
max-probability on the first token routes {cf_m['routed']:.0%} of test to Super for {cf_m['exact_match']:.3f} exact
match at {cf_m['speedup']:.2f}x; energy on the first token routes {cf_e['routed']:.0%} for
{cf_e['exact_match']:.3f} at {cf_e['speedup']:.2f}x. {"E-LANG's claim that energy beats softmax confidence for "
"encoder-decoders does not hold for this model pair." if s_first['hi'] < 0 or r_first['hi'] < 0 else
"Energy is not shown to beat softmax confidence for this model pair."}
""")
