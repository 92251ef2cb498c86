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
# # How reliable is an early decision?
#
# Agreement of each exit with the final one, overthinking (right early, wrong at the end), the oracle exit, and the
# risk-coverage of each exit's decision. Then CascadeBERT's claim (Li et al. 2020): a shallow exit's confident
# predictions are unreliable, because its confidence does not reflect how hard an instance is; a complete small model
# does better at the same depth.
#
# Data: SST-2 test (the GLUE dev set); the multi-exit MiniLM-L6 (an exit on each layer, joint loss) and the complete
# MiniLM-L2 (the first two layers of MiniLM-L6, fine-tuned alone) from the cascade cache. Recipes are printed below.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from toolkit import report
from toolkit.analysis import engine, plots, reliability
from toolkit.analysis.metrics.task import task_metric
from toolkit.analysis.scores.classification import max_prob
from toolkit.zoo import catalogue

report.setup()

# %%
sets = catalogue.load_seeds("sst2", "minilm6_me")
cal, test = sets.first()
display(catalogue.recipe("sst2", "minilm6_me"))
rel = reliability.overthinking(test)
rel["agreement with final"] = reliability.agreement_with_final(test).to_numpy()
rel

# %%
# NBVAL_CHECK_OUTPUT
over = rel.attrs["any_earlier_right_final_wrong"]
oracle_acc, last_acc = test.correct.any(1).mean(), test.correct[:, -1].mean()
print(f"right at some earlier exit but wrong at the last: {over:.4f}")
print(f"oracle accuracy (any exit right): {oracle_acc:.4f} vs last exit {last_acc:.4f}")
oracle_exits = reliability.oracle_exits(test)
print(oracle_exits.round(4).to_string(index=False))

# %%
fig, ax = plt.subplots(1, 2, figsize=(12, 4))
aurc = {}
for e in range(test.n_stages):
    rc = reliability.risk_coverage(test, stage=e)
    aurc[test.stages[e]] = rc.attrs["aurc"]
    ax[0].plot(rc.coverage, rc.risk, label=f"{test.stages[e]} (AURC {rc.attrs['aurc']:.3f})")
ax[0].set_xlabel("coverage (share of examples accepted, most confident first)")
ax[0].set_ylabel("risk (error rate among accepted)")
ax[0].legend(fontsize=8)
ax[0].set_title("risk-coverage per exit, SST-2 test")
thr = engine.threshold_grid(engine.staged(test), n=60)
ag = reliability.agreement_at_thresholds(test, thr[1:])
ax[1].plot(ag.threshold, ag.early_agreement, label="early exits agreeing with the last exit")
ax[1].plot(ag.threshold, ag.early_share, label="share exiting early")
ax[1].set_xlabel("max-probability threshold")
ax[1].set_ylabel("share")
ax[1].legend(fontsize=8)
ax[1].set_title("early exit at one threshold, SST-2 test")
print("area under each exit's risk-coverage curve (AURC):", {k: round(v, 3) for k, v in aurc.items()})
report.show(fig, alt=f"Left: risk-coverage curves of the six MiniLM-L6 exits on SST-2 test, error rate among the "
                 f"accepted examples against the share accepted, most confident first; deeper exits lie lower "
                 f"(area under the curve {aurc[test.stages[0]]:.3f} at the first exit, "
                 f"{aurc[test.stages[-1]]:.3f} at the last). Right: as the max-probability threshold falls, the "
                 f"share of examples exiting early rises to 1 while the share of early exits that agree with the "
                 f"last exit falls.")

# %% [markdown]
# ## CascadeBERT's claim: are shallow confident predictions reliable?
#
# At the same depth (2 layers), compare the internal exit L2 of the 6-layer multi-exit model with the complete
# 2-layer model (`engine.compare_confident`). The fair question is at matched coverage: let each model answer its most
# confident quarter, half or three quarters of the test sentences (ranked by max-probability) and ask how often it is
# right there. At a fixed threshold the two answer different shares, and the one confident on fewer sentences is
# judged on easier ones; the 0.9 threshold is shown for that reason. Each side's value is the mean over its training
# seeds; complete minus internal gets a paired bootstrap interval (the same resampled test examples for both models,
# each side's seeds resampled too). The same comparison on every task is a row of the seed claims
# (docs/results/claims.md).

# %%
# NBVAL_CHECK_OUTPUT
casc_sets = catalogue.load_seeds("sst2", "cascade")
complete, internal = casc_sets.views(), sets.views()  # one engine view per training seed, aligned
kw = dict(stages=("minilm-l2:L2", "L2"), names=("complete MiniLM-L2", "internal exit L2"), n_boot=catalogue.N_BOOT,
          seed=catalogue.SEED)
cov = pd.concat([engine.compare_confident(complete, internal, coverage=q, **kw).frame for q in (0.25, 0.5, 0.75)],
                ignore_index=True)
at9 = engine.compare_confident(complete, internal, threshold=0.9, **kw).frame.set_index("statistic")
print(pd.concat([cov, at9.reset_index()], ignore_index=True).round(4).to_string(index=False))
acc = cov[cov.statistic.str.startswith("accuracy")].set_index("rule")
diff, lo, hi = acc.loc["coverage 0.5", ["difference", "lo", "hi"]]
l2_alone = {"complete MiniLM-L2": float(np.mean([t.correct[:, t.stages.index("minilm-l2:L2")].mean() for t in casc_sets.test])),
            "internal exit L2": float(np.mean([t.correct[:, t.stages.index("L2")].mean() for t in sets.test]))}
print("accuracy on every example, mean over training seeds:", {k: round(v, 4) for k, v in l2_alone.items()})

# %%
l2_complete = casc_sets.test[0].select_stages(["minilm-l2:L2"])  # one training seed of each, for the histograms
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
plots.plot_score_distributions(plots.score_distributions(test, stage=1), ax=axes[0])
axes[0].set_title(f"internal exit L2 of MiniLM-L6 (multi-exit), seed {sets.seeds[0]}")
plots.plot_score_distributions(plots.score_distributions(l2_complete, stage=0), ax=axes[1])
axes[1].set_title(f"complete MiniLM-L2, seed {casc_sets.seeds[0]}")
report.show(fig, alt="Two histograms of max-probability on SST-2 test, for right and for wrong predictions: left the "
                 "internal exit L2 of the multi-exit MiniLM-L6, right the complete MiniLM-L2. In both, right "
                 "predictions pile up near confidence 1 and wrong ones spread over the whole range.")

# %%
share_lo, share_hi = at9.loc["confident share", ["lo", "hi"]]
shown = {r: "ahead" if x.lo > 0 else "behind" if x.hi < 0 else "not shown to differ" for r, x in acc.iterrows()}
better = l2_alone["complete MiniLM-L2"] > l2_alone["internal exit L2"]
over_tab = rel.set_index("stage")
report.conclude(f"""
**Reading the numbers above.** Exits agree with the last exit more and more with depth
({over_tab['agreement with final'].iloc[0]:.3f} at L1, {over_tab['agreement with final'].iloc[3]:.3f} at L4), and
overthinking is small: {over:.1%} of test sentences are right at some earlier exit but wrong at the last. The oracle
exit would lift accuracy from {last_acc:.3f} to {oracle_acc:.3f}, exiting
{oracle_exits.set_index("stage").loc["L1", "share"]:.1%} of sentences at L1; no confidence rule gets close.
**CascadeBERT's claim {"reproduces" if lo > 0 else "is reversed" if hi < 0 else "is not shown"} here.** Each
model answering its most confident half of the test sentences, the complete MiniLM-L2 is right on
{acc.loc['coverage 0.5', 'complete MiniLM-L2']:.1%} of them and the internal exit L2 of the jointly trained 6-layer
model on {acc.loc['coverage 0.5', 'internal exit L2']:.1%} (means over {len(casc_sets.seeds)} and {len(sets.seeds)}
training seeds): complete minus internal is {diff:+.3f} {report.ci(lo, hi)}{", an interval that includes 0" if
lo <= 0 <= hi else ""}. At coverage 0.25 the complete model is {shown['coverage 0.25']}
({acc.loc['coverage 0.25', 'difference']:+.3f} {report.ci(*acc.loc['coverage 0.25', ['lo', 'hi']])}), at 0.75
{shown['coverage 0.75']} ({acc.loc['coverage 0.75', 'difference']:+.3f}
{report.ci(*acc.loc['coverage 0.75', ['lo', 'hi']])}). At a fixed 0.9 threshold the complete model is confident
{"more" if share_lo > 0 else "less" if share_hi < 0 else "about as"} often
({at9.loc['confident share', 'complete MiniLM-L2']:.0%} vs {at9.loc['confident share', 'internal exit L2']:.0%} of
sentences, difference {report.ci(share_lo, share_hi)}), so its accuracy when confident there is judged on a different
set. It is the {"better" if better else "weaker"} standalone model on average
({l2_alone['complete MiniLM-L2']:.3f} vs {l2_alone['internal exit L2']:.3f}){
", which is where a cascade's advantage comes from here" if better else ""}.
""")

# %% [markdown]
# ## Other tasks
#
# The same multi-exit recipe on every task whose cache is shipped, for MiniLM-L6 (6 exits, `minilm6_me`) and
# MPNet-base (12 exits, `mpnet_me`): each exit's test metric (accuracy; F1 of the positive class for MRPC; Matthews
# correlation for CoLA), overthinking, the oracle exit's accuracy, the majority class's share, and early exit at an
# accuracy drop of at most 1 point below the last exit, chosen by cross-fitting on test halves (with its interval)
# beside the best threshold on test itself (test-selected, in-sample).

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for task, name in [(t, n) for t in ["sst2", "mrpc", "rte", "cola", "agnews"] for n in ("minilm6_me", "mpnet_me")]:
    if not catalogue.available(task, name):
        continue
    c_, t = catalogue.load_seeds(task, name, verbose=False).first()
    m = t.meta["metric"]
    v = engine.staged(t)
    row = {"task": task, "model": name, "n": t.n_examples, "metric": m}
    row.update({s: task_metric(t.predictions[:, e], t.labels, metric=m, n_classes=t.n_classes) for e, s in enumerate(t.stages)})
    row["overthinking"] = reliability.overthinking(t).attrs["any_earlier_right_final_wrong"]
    row["last acc"] = t.correct[:, -1].mean()
    row["oracle acc"] = t.correct.any(1).mean()
    row["majority"] = np.bincount(t.labels).max() / t.n_examples
    row["cal last acc"] = c_.correct[:, -1].mean()
    cf = engine.crossfit(v, rule="drop", max_drop=0.01, n_boot=catalogue.N_BOOT, seed=catalogue.SEED).combined
    row.update({"x-fit speed-up": cf.speedup, "lo": cf.intervals["speedup"][0], "hi": cf.intervals["speedup"][1],
                "x-fit acc drop": cf.drop("accuracy"),
                "test-selected": engine.summarize(engine.sweep(v), max_drop=0.01).speedup_at_drop_upper_bound})
    rows.append(row)
df = pd.DataFrame(rows)
exits = sorted([c for c in df if c[0] == "L" and c[1:].isdigit()], key=lambda c: int(c[1:]))
df = df[["task", "model", "n", "metric", *exits, "overthinking", "last acc", "oracle acc", "majority", "cal last acc",
         "x-fit speed-up", "lo", "hi", "x-fit acc drop", "test-selected"]]
print(df.round(3).to_string(index=False, na_rep="-"))

# %%
d = df.set_index(["task", "model"])
mini = d.xs("minilm6_me", level="model")
mp = d.xs("mpnet_me", level="model")
at_chance = [t for t, r in mini.iterrows() if r["last acc"] <= r["majority"] + 0.02]
learnt = mini.drop(at_chance)
fast = learnt["x-fit speed-up"].idxmax()


def xfit(r):
    return f"{r['x-fit speed-up']:.2f}x losing {100 * r['x-fit acc drop']:.1f} points"


report.conclude(f"""
**Reading the numbers above (other tasks).** How early a decision can be trusted depends on the task. Chosen by
cross-fitting (at most 1 point of accuracy below the last exit on the choosing half), early exit in MiniLM-L6 buys
{xfit(learnt.loc[fast])} on {fast} (speed-up interval
{report.ci(learnt.loc[fast, 'lo'], learnt.loc[fast, 'hi'], digits=2)}), {xfit(mini.loc['sst2'])} on SST-2 and
{xfit(mini.loc['mrpc'])} on MRPC: a threshold chosen on one half does not always keep its promise on the other, and
the drop has to be reported beside the speed-up. The best single threshold for test itself stays within 1 point up
to {learnt.loc[fast, 'test-selected']:.2f}x, {mini.loc['sst2', 'test-selected']:.2f}x and
{mini.loc['mrpc', 'test-selected']:.2f}x. {("MiniLM-L6 does not learn " + ", ".join(at_chance).upper() +
" with this recipe: its last exit (" + ", ".join(f"{mini.loc[t, 'last acc']:.3f}" for t in at_chance) +
") is within 2 points of the majority class (" + ", ".join(f"{mini.loc[t, 'majority']:.3f}" for t in at_chance) +
"), so its overthinking and its speed-ups there only say that every exit is at chance. ") if at_chance else ""}
Overthinking is otherwise between {learnt['overthinking'].min():.1%} and
{learnt['overthinking'].max():.1%}, and the gap between the oracle exit and the last exit is the room
left for a better exit rule. Multi-exit MPNet-base has the better last exit on
{", ".join(t for t in mp.index if mp.loc[t, 'last acc'] > mini.loc[t, 'last acc'])} (accuracy), and its
cross-fitted speed-up ranges from {mp['x-fit speed-up'].min():.2f}x to {mp['x-fit speed-up'].max():.2f}x, losing
up to {100 * mp['x-fit acc drop'].max():.1f} points ({mp['x-fit acc drop'].idxmax()}). On CoLA its first exits predict the majority class only (Matthews correlation
{mp.loc['cola', 'L1']:.3f} at L1).
""")
