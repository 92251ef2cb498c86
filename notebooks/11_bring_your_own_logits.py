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
# # Bring your own logits
#
# Per-layer logits from anywhere (your own early-exit model, DeeBERT or PABEE code, an LLM's layers read through a
# logit lens) become a cache with one call, `toolkit.from_arrays`, and then get the whole analysis: every threshold,
# operating points chosen by cross-fitting with intervals, calibration, comparisons.
#
# What you need per example: the logits of every exit (`[N, E, C]`), the label, and the cost of stopping at each
# exit (cumulative FLOPs, or any cost unit: layer counts work too, and speed-ups are then in that unit). Example ids
# are optional; they pair examples across models.
#
# The "elsewhere" here is real: the 12 exits of the multi-exit MPNet-base on SST-2 test, exported from the shipped
# cache to plain `.npy` files in a temporary folder (removed at the end), then read back with numpy alone.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import toolkit
from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.analysis.metrics import calibration
from toolkit.zoo import catalogue

report.setup()
folder = tempfile.TemporaryDirectory(prefix="toolkit-byo-")
work = Path(folder.name)

# the export: any program that can write numpy arrays does this part
source = catalogue.load_seeds("sst2", "mpnet_me").first()[1]
np.save(work / "logits.npy", source.logits)  # [N, E, C]
np.save(work / "labels.npy", source.labels)  # [N]
np.save(work / "flops.npy", source.flops)  # [N, E], cumulative cost of stopping at each exit
np.save(work / "ids.npy", source.example_ids)  # [N], optional
print({p.name: np.load(p, allow_pickle=False).shape for p in sorted(work.glob("*.npy"))})

# %% [markdown]
# ## From arrays to a cache
#
# `from_arrays` validates what it gets (shapes, integer labels, finite costs that never decrease along the exits,
# unique ids) and says what is wrong. `meta` names the task, the split and the headline metric; `save_cache` would
# write it as an integrity-checked Parquet file that every toolkit command reads.

# %%
logits = np.load(work / "logits.npy")
labels = np.load(work / "labels.npy")
cache = toolkit.from_arrays(logits, labels, np.load(work / "flops.npy"), example_ids=np.load(work / "ids.npy"),
                            stages=[f"L{e + 1}" for e in range(logits.shape[1])],
                            meta={"task": "sst2", "split": "test", "metric": "accuracy"})
print(cache)
view = engine.staged(cache)
print("speed-up reference:", view.reference)

# %% [markdown]
# ## The analysis
#
# One labelled split is all a bring-your-own setting usually has, so operating points are chosen by cross-fitting:
# on one half of the examples, evaluated on the other, swapped. Temperatures too (one per exit, fitted on the other
# half).

# %%
# NBVAL_CHECK_OUTPUT
curve = engine.sweep(view)
cft = calibration.crossfit_temperatures(cache)
scaled = engine.staged(cft.apply(cache))
points = {f"{rule} rule, {t}": engine.crossfit(v, rule=rule, max_drop=0.01, delta=0.01, epsilon=0.05,
                                               n_boot=catalogue.N_BOOT, seed=catalogue.SEED).combined
          for rule in ("drop", "risk") for t, v in (("T = 1", view), ("cross-fitted T", scaled))}
table = pd.DataFrame([report.point_row(k, ev) for k, ev in points.items()])
print(f"{len(curve)} distinct thresholds; speed-ups against {view.reference}")
print(table.round(3).to_string(index=False))
cal_table = pd.concat({"T=1": calibration.calibration_table(cache).set_index("stage")[["accuracy", "ece"]],
                       "cross-fitted T": calibration.calibration_table(cft.apply(cache)).set_index("stage")[["ece"]]},
                      axis=1)
print(cal_table.round(3).to_string())

# %%
fig, ax = plt.subplots(figsize=(7, 4.3))
plots.plot_tradeoff({"early exit, max-probability": curve}, ax=ax, oracle=engine.oracle(view),
                    points={k: points[k] for k in ("drop rule, T = 1", "risk rule, T = 1")},
                    ylabel="SST-2 test accuracy")
ax.set_title("logits from .npy files: MPNet-base, 12 exits")
d = points["drop rule, T = 1"]
report.show(fig, alt=f"SST-2 test accuracy against speed-up over the last exit for early exit on logits read from "
                 f"numpy files (MPNet-base, 12 exits), with the cross-fitted drop-rule point at {d.speedup:.2f}x "
                 f"and accuracy {d['accuracy']:.3f} and the risk-rule point, both with 95% error bars, and the oracle "
                 f"as a star.")

# %% [markdown]
# The same numbers as the shipped cache gives (the arrays are the cache's own), and nothing left behind:

# %%
# NBVAL_CHECK_OUTPUT
same = engine.sweep(engine.staged(source)).frame.equals(curve.frame)
print("sweep identical to the shipped cache's:", same)
folder.cleanup()
print("temporary folder removed:", not work.exists())

# %%
r, dr = points["risk rule, T = 1"], points["drop rule, cross-fitted T"]
report.conclude(f"""
**Reading the numbers above.** From four `.npy` files to the full analysis: the last of the {cache.n_stages} exits is
at {d.final['accuracy']:.3f}; chosen by cross-fitting, the `drop` rule gives {d['accuracy']:.3f}
{report.ci(*d.intervals['accuracy'])} at {d.speedup:.2f}x {report.ci(*d.intervals['speedup'], digits=2)}, and the `risk`
rule {r['accuracy']:.3f} at {r.speedup:.2f}x; with temperatures cross-fitted too, the `drop` rule gives
{dr['accuracy']:.3f} at {dr.speedup:.2f}x. The sweep equals the shipped cache's ({same}). For a model of your own,
replace the export cell with your arrays; for an LLM, per-layer logits of the answer token (a logit lens on each
layer's hidden state) give the same `[N, E, C]` shape over the label words.
""")
