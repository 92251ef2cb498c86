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
# # Training objectives, probe exits, and a slenderized multi-exit model
#
# **Objectives**: MiniLM-L6 with an exit on each layer, trained on the same seeded subsample of SST-2 train with the
# same schedule and three objectives: joint (sum of per-exit cross-entropies, Right Tool), layer-weighted (PABEE)
# and two-stage (DeeBERT: backbone with the final head, then the other heads on the frozen backbone). Also: the
# full-data joint model, and probe exits (scikit-learn logistic regression per layer on the frozen encoder of a
# complete MiniLM-L6 fine-tuned alone).
#
# **Slenderized** (COST-EFF): the full-data multi-exit MiniLM-L6 pruned to half (and to a quarter) of its attention
# heads and FFN neurons in every layer (per-exit Taylor importance), then distilled per exit from the unpruned model.
# Put on one FLOPs axis with the full-width model, the cascade and Swift/Super routing, and compared with the
# full-width model at 1/2, 1/4 and 1/8 of its cost.
#
# The recipes (examples, epochs, learning rates, seeds) are printed below. Test = the GLUE dev set. Cost: FLOPs
# (`toolkit.analysis.cost.encoder`, pruned widths included).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.zoo import catalogue

report.setup()
SETS = {"joint, full train": "minilm6_me", "joint, subsample": "minilm6_me_joint_sub",
        "layer-weighted, subsample": "minilm6_me_weighted_sub", "two-stage, subsample": "minilm6_me_two_stage_sub",
        "probe exits (frozen MiniLM-L6)": "minilm6_probe", "slenderized 1/2 width": "minilm6_me_w50",
        "slenderized 1/4 width": "minilm6_me_w25"}
# one build, the first ("v1", recorded in the manifest): the full-train joint model the others were trained beside
# (and the slim copies pruned from), not the CPU build's per-seed files of the same name
tests = {label: catalogue.load_seeds("sst2", name, build="v1").first()[1]
         for label, name in SETS.items() if catalogue.available("sst2", name)}
display(pd.concat([catalogue.recipe("sst2", SETS[k], build="v1") for k in tests]).reset_index(drop=True))

# %%
# NBVAL_CHECK_OUTPUT
acc = pd.DataFrame({k: pd.Series(t.correct.mean(0), index=t.stages) for k, t in tests.items()}).T
print("SST-2 test accuracy per exit")
print(acc.round(3).to_string())

# %% [markdown]
# Differences per exit, each with a 95% paired bootstrap interval (the same resampled test examples for both
# models): the two other objectives against joint on the same subsample, and probe exits against the full-data joint
# model.

# %%
# NBVAL_CHECK_OUTPUT
w = engine.resample_weights(872, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)


def exit_gaps(a, b):
    """Per exit: accuracy of a minus b, with a paired bootstrap interval."""
    ta, tb = tests[a], tests[b]
    assert list(ta.example_ids) == list(tb.example_ids)
    d = ta.correct.astype(float) - tb.correct  # [N, E]
    draws = w @ d / len(d)
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    return pd.DataFrame({"comparison": f"{a} minus {b}", "exit": ta.stages, "difference": d.mean(0), "lo": lo,
                         "hi": hi})


gaps = pd.concat([exit_gaps("layer-weighted, subsample", "joint, subsample"),
                  exit_gaps("two-stage, subsample", "joint, subsample"),
                  exit_gaps("probe exits (frozen MiniLM-L6)", "joint, full train")], ignore_index=True)
print(gaps.round(3).to_string(index=False))

# %%
g = gaps.set_index(["comparison", "exit"])
ts = g.loc["two-stage, subsample minus joint, subsample"]
lw = g.loc["layer-weighted, subsample minus joint, subsample"]
pr = g.loc["probe exits (frozen MiniLM-L6) minus joint, full train"]


def said(r):
    return f"{100 * r['difference']:+.1f} points {report.ci(r['lo'], r['hi'], points=True)}"


report.conclude(f"""
**Reading the numbers above (objectives).** On the same subsample, two-stage against joint: {said(ts.loc['L6'])} at
the last exit and {said(ts.loc['L1'])} at the first; layer-weighted against joint: {said(lw.loc['L6'])} at the last
exit and {said(lw.loc['L1'])} at the first. All three subsample models are below the full-data joint model
({acc.loc['joint, full train', 'L6']:.3f} at L6): the amount of data, not the objective, is the limit here. Probe
exits on a frozen, separately fine-tuned MiniLM-L6 against the full-data joint model: {said(pr.loc['L1'])} at L1,
{said(pr.loc['L3'])} at L3, {said(pr.loc['L6'])} at L6; joint training shapes the early layers for their exits.
""")

# %% [markdown]
# ## The slenderized model on one FLOPs axis
#
# Every curve is early exit (or routing) on test at every threshold. Dotted lines mark 1/2, 1/4 and 1/8 of the cost
# of the full-width model's last exit, where the table below compares the slenderized models with it.

# %%
full = tests["joint, full train"]
ref_gflops = full.flops[:, -1].mean() / 1e9
print(f"full-width last exit: {ref_gflops:.3f} GFLOPs per test example")
casc = catalogue.load_seeds("sst2", "cascade", build="v1").first()[1]  # the slims' build: same training data
curves = {}
for label in ("slenderized 1/4 width", "slenderized 1/2 width", "joint, full train"):
    if label in tests:
        curves[f"{label}, early exit"] = engine.sweep(engine.staged(tests[label]))
curves["cascade L2->L6->MPNet"] = engine.sweep(engine.staged(casc))
curves["Swift/Super MiniLM-L6 -> MPNet, energy"] = engine.sweep(
    engine.staged(casc.select_stages(["minilm-l6:L6", "mpnet:L12"]), score="energy"))
fig, ax = plt.subplots(figsize=(8, 4.8))
plots.plot_tradeoff(curves, x="flops", ax=ax, ylabel="SST-2 test accuracy")
for k in (2, 4, 8):
    ax.axvline(ref_gflops / k, color="gray", lw=0.8, ls=":")
    ax.text(ref_gflops / k, 0.02, f"1/{k}", transform=ax.get_xaxis_transform(), ha="center", fontsize=8,
            color="dimgray", backgroundcolor="white")
ax.set_xscale("log")
ax.set_xlabel("mean GFLOPs per example (log scale); dotted: fractions of the full-width last exit's cost")
ax.legend(fontsize=7, loc="lower right")
report.show(fig, alt=f"SST-2 test accuracy against mean GFLOPs per example on a log axis for early exit in the "
                 f"quarter-width, half-width and full-width MiniLM-L6, the cascade and Swift/Super routing. The "
                 f"slenderized models reach the cheapest costs, the full-width model's curve ends at its last exit "
                 f"({ref_gflops:.3f} GFLOPs), and the cascade and routing extend to the most accurate and most "
                 f"expensive end; dotted lines mark 1/2, 1/4 and 1/8 of the full-width cost.")

# %% [markdown]
# At 1/2, 1/4 and 1/8 of the full-width last exit's cost: the best accuracy of each model's early exit at that cost
# (its frontier on test: the same optimistic choice on both sides) and the slenderized minus the full-width model,
# with a 95% paired bootstrap interval (`engine.compare`). NaN: the model never gets that cheap.

# %%
# NBVAL_CHECK_OUTPUT
def slender_rows(task, pairs):
    rows = []
    for label, name in pairs:
        if not catalogue.available(task, name):
            continue
        slim, full = catalogue.derived_pair(task, name)  # the slim and the model it was pruned from (recorded, checked)
        c = engine.compare(slim.views(), full.views(), budgets=(2, 4, 8), reference="b", n_boot=catalogue.N_BOOT,
                           seed=catalogue.SEED).frame
        for _, r in c.iterrows():
            rows.append({"task": task, "model": label, "cost <= full / ": r["budget"], "slenderized": r["a"],
                         "full width": r["b"], "difference": r["difference"], "lo": r["lo"], "hi": r["hi"]})
    return rows


slim_pairs = [("1/2 width", "minilm6_me_w50"), ("1/4 width", "minilm6_me_w25")]
slender = pd.DataFrame(slender_rows("sst2", slim_pairs) + slender_rows("agnews", slim_pairs))
print(slender.round(3).to_string(index=False, na_rep="-"))
print("\nper-exit accuracy, AG News:")
ag = {k: catalogue.load_seeds("agnews", n, verbose=False, build="v1").first()[1]
      for k, n in (("full width", "minilm6_me"), ("1/2 width", "minilm6_me_w50")) if catalogue.available("agnews", n)}
print(pd.DataFrame({k: pd.Series(t.correct.mean(0), index=t.stages) for k, t in ag.items()}).T.round(3).to_string())

# %%
sl = slender.set_index(["task", "model", "cost <= full / "])


def at(task, model, k):
    r = sl.loc[(task, model, k)]
    if np.isnan(r["full width"]):
        return f"{r['slenderized']:.3f} where the full-width model cannot go"
    return (f"{r['slenderized']:.3f} vs {r['full width']:.3f} ({100 * r['difference']:+.1f} points, "
            f"{report.ci(r['lo'], r['hi'], points=True)})")


better = [f"{t} {m} at 1/{k[:-1]}" for (t, m, k), r in sl.iterrows() if r["lo"] > 0 or np.isnan(r["full width"])]
worse = [f"{t} {m} at 1/{k[:-1]}" for (t, m, k), r in sl.iterrows() if r["hi"] < 0]
report.conclude(f"""
**Reading the numbers above (slenderized).** Each exit of the 1/2-width model costs half the full-width FLOPs; its
last exit reaches {acc.loc['slenderized 1/2 width', 'L6']:.3f} against {acc.loc['joint, full train', 'L6']:.3f} at
full width (1/4 width: {acc.loc['slenderized 1/4 width', 'L6']:.3f}). At equal cost on SST-2: at 1/2 of the
full-width cost the 1/2-width model reaches {at('sst2', '1/2 width', '2x')}; at 1/4,
{at('sst2', '1/2 width', '4x')}; at 1/8 the 1/4-width model reaches {at('sst2', '1/4 width', '8x')}. The
slenderized models are ahead (interval above 0, or alone at that cost) at: {", ".join(better) or "no budget"}; behind
(interval below 0) at: {", ".join(worse) or "no budget"}. COST-EFF's claim that a slenderized multi-exit model is
Pareto-better holds where the full-width model cannot go or is outpaced, and not where the full-width exits are
already cheap enough.
""")
