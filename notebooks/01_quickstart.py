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
# # Quickstart: from a shipped cache to an operating point
#
# A cache holds every exit's logits for every example of one split, collected in one forward pass
# (`toolkit collect`). Everything below is numpy on that cache: no model, no torch.
#
# The model: all-MiniLM-L6-v2 fine-tuned on SST-2 with an exit head on each of its layers (its training recipe is
# printed below, from `data/MANIFEST.json`). Splits: `cal`, a seeded hold-out of SST-2's training file; `test`, the
# GLUE dev set. Cost: FLOPs per example until its exit (`toolkit.analysis.cost.encoder`). The first cell prints the
# protocol every notebook follows: what speed-ups are measured against, how intervals are computed, and how
# operating points are chosen.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.zoo import catalogue

report.setup()

# %%
sets = catalogue.load_seeds("sst2", "minilm6_me")
cal, test = sets.first()
display(catalogue.recipe("sst2", "minilm6_me"))
print(cal)
print(test)
pd.DataFrame({"stage": test.stages, "test accuracy": test.correct.mean(0), "mean GFLOPs": test.flops.mean(0) / 1e9})

# %% [markdown]
# ## Every threshold at once
#
# `engine.sweep` evaluates early exit ("stop at the first exit whose max-probability is at least the threshold") at
# every distinct threshold, exactly, in one pass, on the engine's view of the cache (`engine.staged`, whose speed-up
# reference, the last exit, every notebook uses). Each row is what that threshold does on the whole split.

# %%
view_cal, view_test = engine.staged(cal), engine.staged(test)
curve = engine.sweep(view_test)
print(len(curve), "distinct thresholds; speed-up against", curve.reference)
curve.to_frame().iloc[:: len(curve) // 8]

# %% [markdown]
# The best threshold *for test itself* is not an operating point: it is chosen on the data it is scored on
# (test-selected, in-sample), so it is optimistic, though not a bound: a point chosen elsewhere, or a different
# threshold on each half of test, can land beyond it. `engine.summarize` names every such optimum `*_upper_bound`.

# %%
# NBVAL_CHECK_OUTPUT
summary = engine.summarize(curve)
print({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.to_dict().items()})

# %% [markdown]
# ## An honest operating point
#
# A threshold has to be chosen on data other than the data it is reported on. Two ways, each with two rules
# (accuracy-based: `drop`, the cheapest threshold whose accuracy is within 1 point of the last exit's; `risk`,
# Learn-then-Test, the cheapest threshold whose accuracy loss is at most 1 point with probability at least 95%):
#
# - **cross-fitting on test** (the default protocol here; `engine.crossfit`): choose on one half of test,
#   evaluate on the other, swap, and pool the two evaluations, so every test example is scored by a threshold
#   chosen without it;
# - **chosen on `cal`**, evaluated on test. SST-2's `cal` is carved from the training file, mostly short phrases,
#   so it is not exchangeable with the dev sentences (README, "Calibration protocol").
#
# Intervals resample test examples (the thresholds held fixed); max-probability at temperature 1 (notebook 02 adds
# temperatures).

# %%
# NBVAL_CHECK_OUTPUT
rules = dict(max_drop=0.01, delta=0.01, epsilon=0.05)
points = {}
for rule in ("drop", "risk"):
    points[f"cross-fit on test halves, {rule} rule"] = engine.crossfit(
        view_test, rule=rule, n_boot=catalogue.N_BOOT, seed=catalogue.SEED, **rules).combined
for rule in ("drop", "risk"):
    points[f"chosen on cal, {rule} rule"] = engine.choose(view_cal, rule=rule, **rules).evaluate(
        view_test, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
# the test-selected point: the same drop rule applied to test's own curve (in-sample)
points["best on test itself (test-selected, drop <= 0.01)"] = selected = engine.evaluation(
    view_test, engine.threshold_on_sweep(curve, rule="drop", max_drop=0.01))
table = pd.DataFrame([report.point_row(k, ev) for k, ev in points.items()])
print(f"test, speed-up against {view_test.reference}")
print(table.round(3).to_string(index=False))

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
plots.plot_tradeoff({"early exit, max-probability (test, every threshold)": curve}, ax=ax,
                    points={k: points[k] for k in ("cross-fit on test halves, drop rule", "chosen on cal, drop rule",
                                                   "cross-fit on test halves, risk rule")},
                    oracle=engine.oracle(view_test), ylabel="SST-2 test accuracy")
ax.plot([selected.speedup], [selected["accuracy"]], "^", mfc="none", mec="k", ms=9,
        label="best threshold on test itself (test-selected)")
ax.axhline(selected.final["accuracy"] - 0.01, color="gray", ls=":", lw=1, label="last exit minus 1 point")
ax.legend(fontsize=7, loc="lower left")
ax.set_title("MiniLM-L6, 6 exits, SST-2 test: operating points with 95% intervals")
cf, oc = points["cross-fit on test halves, drop rule"], points["chosen on cal, drop rule"]
report.show(fig, alt=f"Line chart of SST-2 test accuracy against speed-up over the last exit for early exit with "
                 f"MiniLM-L6. Accuracy stays near the last exit's {selected.final['accuracy']:.3f} up to about "
                 f"{selected.speedup:.2f}x, then falls. Markers with 95% error bars: the cross-fitted drop-rule point "
                 f"at {cf.speedup:.2f}x and accuracy {cf['accuracy']:.3f}, the cal-chosen drop-rule point at "
                 f"{oc.speedup:.2f}x and {oc['accuracy']:.3f}, the risk-rule point; a hollow triangle marks the "
                 f"test-selected (in-sample) point and a black star the oracle.")

# %%
report.conclude(report.operating_points_conclusion(
    crossfit_drop=cf, crossfit_risk=points["cross-fit on test halves, risk rule"], cal_drop=oc,
    cal_risk=points["chosen on cal, risk rule"], test_selected=selected, max_drop=0.01, split="SST-2 test"))

# %% [markdown]
# ## Explore it yourself
#
# With a live kernel (JupyterLab, Notebook 7), the explorer below lets you move the threshold (slider over every
# distinct `cal` threshold, an exact value, or a target speed-up on `cal`), change the score and temperature, and
# watch the numbers on `cal` and `test`, the trade-off curves, the exit histogram, the reliability diagram of a stage
# and the examples that exit there (tick "show text" to join their sentences from the data folder; text is never
# stored in the notebook). It starts at the `drop` rule chosen on `cal` with temperatures fitted there. Without a
# kernel (nbconvert HTML, GitHub) a static snapshot of that starting point shows instead.

# %%
from toolkit.analysis.explore.app import explore

explore(cal, test, score="max_prob")
