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
# # Swift/Super routing by energy (E-LANG)
#
# Swift = MiniLM-L6 (complete model), Super = MPNet-base (complete model), both fine-tuned on SST-2: the last two
# members of the shipped cascade (recipes below). An example goes to Super when Swift is not confident. Confidence
# scores compared, all on Swift's logits:
#
# - energy on logits, `-T logsumexp(z / T)` (lower energy = more confident), at T = 1 and at a temperature fitted
#   by cross-fitting on test halves;
# - max-probability; entropy;
# - E-LANG's released score, `logsumexp(softmax(z))`, which for two classes ranks inputs exactly like
#   max-probability.
#
# Cost: FLOPs; a routed example pays Swift and Super. Speed-ups against Super alone (the last member).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from scipy.stats import spearmanr

from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.analysis.metrics import calibration
from toolkit.zoo import catalogue

report.setup()
PAIR = ["minilm-l6:L6", "mpnet:L12"]

# %%
sets = catalogue.load_seeds("sst2", "cascade")
display(catalogue.recipe("sst2", "cascade"))
pairs = [(c.select_stages(PAIR), t.select_stages(PAIR)) for c, t in zip(sets.cal, sets.test)]
cal, test = pairs[0]
cft = calibration.crossfit_temperatures(test)
print(test.stages, "test accuracy", test.correct.mean(0).round(4), "mean GFLOPs", (test.flops.mean(0) / 1e9).round(3))
print(f"Swift's temperature, fitted on test half A / half B: {cft.fitted[0][0]:.3f} / {cft.fitted[1][0]:.3f}")
print(f"reference: {engine.staged(test).reference}, {engine.staged(test).reference_cost.mean() / 1e9:.3f} GFLOPs per test sentence")
SCORES = {"energy T=1": ("energy", False), "energy, T cross-fitted": ("energy", True), "max-prob": ("max_prob", False),
          "entropy": ("entropy", False), "E-LANG released": ("elang", False)}


def score_views(t, name):
    """One view per training seed: ``name``'s score on Swift, temperatures cross-fitted where asked."""
    score, fitted = SCORES[name]
    return engine.staged(calibration.crossfit_temperatures(t).apply(t) if fitted else t, score=score)


views = {k: [score_views(t, k) for _, t in pairs] for k in SCORES}
curves = {k: engine.sweep(v[0]) for k, v in views.items()}
super_acc = float(test.correct[:, -1].mean())
same = {k: bool(np.allclose(curves[k].frame[["accuracy", "speedup"]], curves["max-prob"].frame[["accuracy", "speedup"]]))
        if len(curves[k]) == len(curves["max-prob"]) else False for k in ("entropy", "E-LANG released")}
print("curve identical to max-prob's (same thresholds in rank order, same accuracy and speed-up):", same)

# %%
styles = {"energy T=1": dict(color="C0", lw=1.6), "energy, T cross-fitted": dict(color="C1", lw=1.2, ls="--"),
          "max-prob": dict(color="C2", lw=4, alpha=0.45), "entropy": dict(color="C3", lw=1.8, ls="--"),
          "E-LANG released": dict(color="k", lw=1.0, ls=":")}
fig, ax = plt.subplots(figsize=(7.5, 4.6))
for k, c in curves.items():
    note = " (identical to max-prob)" if same.get(k) else ""
    plots.plot_curve(c, ax=ax, label=k + note, **styles[k])
ax.axhline(super_acc, color="gray", ls=":", lw=1, label="Super alone")
ax.set_xlabel(plots.speedup_label(curves["max-prob"].reference))
plots.speedup_axis(ax, reference="Super alone")  # log base 2 (1x 2x 4x), the region below 1x shaded and named
ax.set_ylabel("SST-2 test accuracy")
ax.grid(alpha=0.3)
ax.legend(fontsize=8, title="Swift's confidence score", title_fontsize=8)
ax.set_title("Swift = MiniLM-L6, Super = MPNet-base, every routing threshold on test")
report.show(fig, alt=f"Test accuracy of Swift/Super routing on SST-2 against speed-up over Super alone, one curve per "
                 f"confidence score. Max-probability is drawn thick and pale; entropy (dashed) and E-LANG's "
                 f"released score (dotted) lie exactly on it, because for two classes they rank inputs the same "
                 f"way. Energy at T = 1 and at the cross-fitted temperature are separate curves close to it. A "
                 f"dotted grey line marks Super alone at {super_acc:.3f}. The speed-up axis is logarithmic (each "
                 f"doubling equally spaced); the shaded region below 1x is where routing costs more than Super alone.")

# %% [markdown]
# The curves are drawn on test with every threshold; the best threshold for test itself gives the test-selected
# (in-sample) numbers below (largest speed-up whose accuracy is at least Super's, accuracy at 1.5x and 2x, area under the frontier).
# Energy against max-probability, with paired bootstrap intervals over test examples: the speed-up at Super's
# accuracy (`engine.compare_speedups`) and the best accuracy at 1.5x, 2x and 3x (`engine.compare`).

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for k, c in curves.items():
    s = engine.summarize(c, max_drop=0.0, speedups=(1.5, 2.0))
    rows.append({"score": k, "speed-up at Super's accuracy (test-selected)": s.speedup_at_drop_upper_bound,
                 "accuracy at 1.5x (test-selected)": s.metric_at_upper_bound[1.5],
                 "accuracy at 2x (test-selected)": s.metric_at_upper_bound[2.0], "AUC": s.auc})
print(f"Super alone: accuracy {super_acc:.4f}")
print(pd.DataFrame(rows).round(3).to_string(index=False))
names = ("energy", "max-prob")
sp = engine.compare_speedups(views["energy T=1"], views["max-prob"], max_drop=0.0, n_boot=catalogue.N_BOOT, seed=catalogue.SEED,
                             names=names, same_runs=True).frame
acc = engine.compare(views["energy T=1"], views["max-prob"], budgets=(1.5, 2, 3), n_boot=catalogue.N_BOOT, seed=catalogue.SEED,
                     names=names, same_runs=True).frame
print("\nspeed-up at Super's accuracy, energy (T = 1) minus max-prob:")
print(sp.round(3).to_string(index=False))
print("\nbest accuracy at equal budgets, energy (T = 1) minus max-prob:")
print(acc.round(4).to_string(index=False))

# %% [markdown]
# ## Do the scores route the same examples?
#
# Rank agreement of the scores on Swift's logits (Spearman), and overlap of the routed sets at equal budget: each
# score routes its least confident 30% of test examples to Super; Jaccard index between routed sets.

# %%
conf = {k: views[k][0].confidence[:, 0] for k in SCORES}
names_ = list(conf)
rho = pd.DataFrame([[spearmanr(conf[a], conf[b]).statistic for b in names_] for a in names_], index=names_,
                   columns=names_)
k30 = int(0.3 * test.n_examples)
routed = {n: set(np.argsort(conf[n], kind="stable")[:k30]) for n in names_}
jac = pd.DataFrame([[len(routed[a] & routed[b]) / len(routed[a] | routed[b]) for b in names_] for a in names_],
                   index=names_, columns=names_)
print("Spearman rank correlation")
display(rho.round(3))
print("Jaccard overlap of the 30% routed to Super")
display(jac.round(3))

# %% [markdown]
# ## A risk-controlled operating point
#
# Learn-then-Test: the cheapest routing threshold whose accuracy loss against Super is at most 1 point with
# probability at least 95%. Its guarantee needs calibration data exchangeable with test, so it is chosen by
# cross-fitting on test halves; chosen on `cal` (the train carve, not exchangeable with test) it is shown beside,
# for comparison only. Realised drop and speed-up on test, with intervals.

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for k in SCORES:
    v = views[k][0]
    cf = engine.crossfit(v, rule="risk", delta=0.01, epsilon=0.05, n_boot=catalogue.N_BOOT, seed=catalogue.SEED).combined
    rows.append(report.point_row(f"{k}: cross-fit on test halves", cf))
    score, fitted = SCORES[k]
    if not fitted:
        vc = engine.staged(cal, score=score)
        ev = engine.choose(vc, rule="risk", delta=0.01, epsilon=0.05).evaluate(v, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
        rows.append(report.point_row(f"{k}: chosen on cal", ev))
risk = pd.DataFrame(rows)
print(f"speed-up against {views['max-prob'][0].reference}")
print(risk.round(3).to_string(index=False))

# %%
r_sp = sp.iloc[0]
r2 = acc.set_index("speedup").loc[2.0]
xr = risk[risk.point.str.contains("cross-fit")]
report.conclude(f"""
**Reading the numbers above.** With two classes, max-probability, entropy and E-LANG's released score are the same
ranking: their curves are identical ({", ".join(k for k, v in same.items() if v)}: {all(same.values())}). Energy on
logits is a different score, but on SST-2 it ranks Swift's inputs almost like max-probability (Spearman
{rho.loc['energy T=1', 'max-prob']:.3f}; {jac.loc['energy T=1', 'max-prob']:.0%} overlap of the 30% routed to
Super). On this test set energy reaches Super's accuracy at {r_sp['energy']:.2f}x and max-probability at
{r_sp['max-prob']:.2f}x (best thresholds on test: test-selected, in-sample): **a difference of {r_sp['difference']:+.2f}x
{report.ci(r_sp['lo'], r_sp['hi'], digits=2)}**, energy ahead in {r_sp['P(energy > max-prob)']:.0%} of resamples. At
2x their best accuracies differ by {r2['difference']:+.4f} {report.ci(r2['lo'], r2['hi'], digits=4)}. Neither score is
shown to be the better router here. Chosen by Learn-then-Test on test halves (drop at most 1 point, 95%), every
score gives between {xr['speedup'].min():.2f}x and {xr['speedup'].max():.2f}x, losing between
{100 * xr['accuracy_drop'].min():.1f} and {100 * xr['accuracy_drop'].max():.1f} points of accuracy on the held-out
halves.
""")

# %% [markdown]
# ## Other tasks
#
# The same Swift/Super pair (complete MiniLM-L6 and MPNet-base from each task's cascade) on every task whose cascade
# cache is shipped: each model alone, and energy (T = 1) against max-probability: the speed-up at Super's metric
# (accuracy; F1 for MRPC; Matthews correlation for CoLA) and the best metric at 2x, both with paired intervals.

# %%
# NBVAL_CHECK_OUTPUT
rows = []
for task in ["sst2", "mrpc", "rte", "cola", "agnews"]:
    if not catalogue.available(task, "cascade"):
        continue
    s = catalogue.load_seeds(task, "cascade", verbose=False)
    tests = [t.select_stages(PAIR) for t in s.test]
    e_views = [engine.staged(t, score="energy") for t in tests]
    m_views = [engine.staged(t, score="max_prob") for t in tests]
    m = e_views[0].metric
    base = engine.sweep(m_views[0])
    c_sp = engine.compare_speedups(e_views, m_views, max_drop=0.0, metric=m, n_boot=catalogue.N_BOOT, seed=catalogue.SEED,
                                   same_runs=True).frame
    c_2 = engine.compare(e_views, m_views, budgets=(2,), metric=m, n_boot=catalogue.N_BOOT, seed=catalogue.SEED,
                         same_runs=True).frame
    rows.append({"task": task, "metric": m, "seeds": len(s), "Swift": base.column(m)[-1], "Super": base.column(m)[0],
                 "energy at Super": c_sp["a"].iloc[0], "max-prob at Super": c_sp["b"].iloc[0],
                 "difference": c_sp["difference"].iloc[0], "lo": c_sp["lo"].iloc[0], "hi": c_sp["hi"].iloc[0],
                 "energy at 2x": c_2["a"].iloc[0], "max-prob at 2x": c_2["b"].iloc[0],
                 "difference at 2x": c_2["difference"].iloc[0], "lo 2x": c_2["lo"].iloc[0], "hi 2x": c_2["hi"].iloc[0]})
xt = pd.DataFrame(rows).set_index("task")
print(xt.T.to_string(float_format=lambda v: f"{v:.3f}"))

# %%
sig = [t for t, r in xt.iterrows() if r["lo"] > 0 or r["hi"] < 0 or r["lo 2x"] > 0 or r["hi 2x"] < 0]
weak_super = [t for t, r in xt.iterrows() if r["Super"] <= r["Swift"]]
report.conclude(f"""
**Reading the numbers above (other tasks).** Energy minus max-probability, in speed-up at Super's metric:
{"; ".join(f"{t} {r['difference']:+.2f}x {report.ci(r['lo'], r['hi'], digits=2)}" for t, r in xt.iterrows())}. In the
best metric at 2x: {"; ".join(f"{t} {r['difference at 2x']:+.3f} {report.ci(r['lo 2x'], r['hi 2x'])}"
for t, r in xt.iterrows())}. {"An interval excludes 0 on " + ", ".join(sig) + "." if sig else
"Every interval includes 0: on these tasks energy and max-probability are not distinguishable as routers."}
{("Where Super is not better than Swift (" + ", ".join(f"{t}: {xt.loc[t, 'Super']:.3f} vs {xt.loc[t, 'Swift']:.3f}"
for t in weak_super) + "), every router matches Super by keeping Swift's answers: routing pays only when Super is "
"the better model.") if weak_super else ""}
""")
