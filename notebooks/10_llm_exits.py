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
# # Exits inside a decoder-only LLM, per token
#
# SmolLM2-135M-Instruct answered prompts built from the shared data (AG News description to headline, SST-2
# sentiment with a reason; QNLI yes/no with a reason, test only) greedily, once. For every generated token and every
# layer, the caches in `data/llm/` hold the top-1 token and a few logit statistics of two exit families: the
# **logit lens** (final norm and LM head on the layer's hidden state) and **tuned exits** (a trained affine
# translator per layer first, tuned-lens style, trained on train-split prompts only). Everything below is numpy on
# shipped caches: no model, no torch.
#
# 1. **Reliability**: does a layer's top-1 agree with the full model's token, and does its confidence say when?
# 2. **CALM-style early exit**: stop a token at the first checked layer whose confidence clears a threshold.
# 3. **Self-speculative decoding** (LayerSkip): draft with layer `k`, verify with the full model; the output *is*
#    the full model's, and acceptance is exact from the cache.
# 4. **The LLM as a multi-exit classifier**, on one FLOPs axis with the encoder zoo, and a cascade that mixes them.
# 5. **The real runtime**: measured wall-clock speed-ups against the FLOPs prediction, from committed benchmark
#    results.
#
# **Protocol.** Thresholds and (layer, draft length) pairs are chosen on `cal` (AG News and SST-2 prompts) and
# reported on `test` of the same two prompt sets; QNLI has no `cal` and is reported as a transfer. Intervals are 95%
# percentile bootstrap intervals over **prompts** (a continuation's tokens stay together; the chosen thresholds are
# held fixed); a claim that compares two things comes with a paired interval (both on the same resampled prompts).
# **The reference, once**: a decoding speed-up is the FLOPs of the full model decoding greedily (every generated
# token through all layers and one LM head, attending to its context; `cost.causal.full_token_flops`) divided by the
# method's FLOPs for the same tokens; the prompt's prefill, the same for every method, is left out. A classification
# speed-up (the classifier section) divides by SmolLM2's last exit on every example. FLOPs come from the causal-LM cost model
# (`toolkit.analysis.cost.causal`): layers run, every exit head evaluated, the K/V projections of skipped layers.

# %%
from pathlib import Path

import pandas as pd

from toolkit import report
from toolkit.analysis import engine
from toolkit.analysis.cost import latency
from toolkit.analysis.llm import exits as llm
from toolkit.analysis.llm import intervals as li
from toolkit.analysis.plots import llm as llm_plots
from toolkit.zoo import catalogue, llm_results
from toolkit.zoo import llm_summaries as summaries
from toolkit.zoo.llm_classifier import llm_classifier, plot_llm_classifier
from toolkit.zoo.llm_token_caches import smollm2_token_caches

report.setup()
FAMILIES = summaries.FAMILIES  # ("lens", "tuned")


def table(frame, **options):
    """Print a frame with three decimals, formatted as the conclusions format them."""
    print(frame.to_string(float_format="{:.3f}".format, na_rep="-", **options))


sm = smollm2_token_caches()
cal, test, qnli = sm.cal, sm.test, sm.qnli
L = test.n_layers
W = sm.weights(n_boot=catalogue.N_BOOT, seed=catalogue.SEED)
print("model:", test.model["path"], dict(test.model["dims"]))
print("decoding speed-up reference:", engine.staged(test, family="lens", checked_layers=[1]).reference,
      "greedy, per generated token (prefill excluded)")
tuned = test.families["tuned"]
print("tuned exits:", tuned["form"], "trained on train-split prompts of", tuned["config"]["prompt_sets"],
      {k: tuned["training"][k] for k in ("train_sequences", "heldout_sequences", "positions_trained")})
table(sm.table(), index=False)

# %%
report.conclude(f"""
**Quantization caveat.** The weights are `{test.model["origin"]}`: the only decoder-only LLM installable offline here
is a 4-bit GGUF, so every number below is of that dequantized model, not of the published float checkpoint. The
full model's own greedy output is the reference throughout (agreement = the same token as the last layer), so
quantization changes which tokens are produced, not the method.
""")

# %% [markdown]
# ## 1. Reliability of intermediate layers
#
# **Agreement**: how often a layer's exit names the same next token as the full model, on the full model's own
# trajectory. **ECE**: the layer's max-probability against that agreement (equal-width bins, the calibration
# module's convention). Both on the test prompts with intervals over prompts, and the paired difference tuned minus
# lens per layer. The reliability diagrams show one layer of each family, with the number of tokens in each bin.

# %%
DIAGRAM_LAYER = 20
reliability = li.layer_reliability_table(test, FAMILIES, W["test"])
rel = summaries.reliability_summary(reliability, test)  # counts over layers, quoted at layers L // 2 and L - 1
print(f"test: {test.n_examples} prompts, {test.n_tokens} generated tokens; 95% intervals over prompts; AUROC of "
      f"max-probability for agreement")
table(rel.shown(reliability))
print(rel)

# %%
fig = llm_plots.plot_layer_reliability(reliability, test, DIAGRAM_LAYER)
per_layer = reliability.frame
r = per_layer.loc[DIAGRAM_LAYER]
report.show(fig, alt=f"Four panels. Top left: agreement with the full model's token per layer, on test with bands: "
                     f"the logit lens stays near {per_layer['lens agreement'].iloc[0]:.3f} in the first layers and "
                     f"reaches {per_layer['lens agreement'].iloc[-1]:.3f} at layer {L - 1}, tuned exits start at "
                     f"{per_layer['tuned agreement'].iloc[0]:.3f} and reach {per_layer['tuned agreement'].iloc[-1]:.3f}. "
                     f"Top right: ECE per layer, the lens far above the tuned exits until the last layers. Bottom: "
                     f"reliability diagrams at layer {DIAGRAM_LAYER} (lens ECE {r['lens ece']:.3f}, tuned "
                     f"{r['tuned ece']:.3f}) with token counts per bin.")

# %%
report.conclude(rel.markdown())

# %% [markdown]
# ## 2. CALM-style per-token early exit
#
# A token stops at the first checked layer whose max-probability clears the threshold; its cost counts the layers
# run at its context length, every exit evaluated on the way (an LM head over the whole vocabulary costs several
# layers of this model; a tuned exit adds its translator), and the K/V projections that fill the skipped layers from
# the exited state (state propagation). Two designs: exits checked at every third layer, and a single checked layer
# (the layer with the best cal speed-up at the middle target). Rules: one global threshold, the cheapest on `cal`
# whose agreement reaches the target (`engine.choose(cal, rule="target", ...)`), or per-layer thresholds that make each checked layer
# that reliable on `cal` (`llm.calm_layer_thresholds`). The **oracle** (each token at its earliest agreeing checked
# layer) is an upper bound no confidence rule reaches; so is the best threshold chosen on test itself.
#
# **Caveat**: on the full model's own trajectory (teacher forced), a token that exits wrong leaves the context of
# later tokens unchanged here; a real decode continues from the wrong token. These numbers estimate CALM; the runtime
# section shows what a real decode measured.

# %%
TARGETS = (0.9, 0.95, 0.99)
TARGET = 0.95  # the target of the single-layer choice, of the comparisons and of the QNLI transfer
DESIGNS = ("every 3rd layer", "one checked layer")
designs = {(f, d): list(range(3, L, 3)) if d == DESIGNS[0] else [li.best_single_layer(cal, f, target=TARGET)]
           for f in FAMILIES for d in DESIGNS}
SETS_EVAL = {"test": (test, W["test"]), "qnli (transfer)": (qnli, W["qnli"])}
calm = {(f, design): li.calm_operating_points(cal, SETS_EVAL, f, checked_layers=checked, targets=TARGETS,
                                              only_at={"qnli (transfer)": (TARGET,)}, transfer=("qnli (transfer)",))
        for (f, design), checked in designs.items()}
curves = {(f, design): engine.sweep(engine.staged(test, family=f, checked_layers=checked)).to_frame()
          for (f, design), checked in designs.items()}
print("CALM-style exit, max-probability; speed-up against the full model decoding greedily; 95% intervals over "
      "prompts")
table(summaries.calm_table(calm), index=False)

# %%
calm_compare = li.calm_family_differences({d: calm["tuned", d] for d in DESIGNS}, {d: calm["lens", d] for d in DESIGNS},
                                          target=TARGET, on="test")
print(f"tuned exits minus logit lens at target {TARGET} (thresholds chosen on cal), test, paired over prompts")
table(calm_compare.frame, index=False)
calm_read = summaries.calm_summary(calm, calm_compare, target=TARGET)
print(calm_read)

# %%
fig = llm_plots.plot_calm_frontiers(curves, summaries.calm_points_frame(calm), designs, families=FAMILIES,
                                    targets=TARGETS)
orc, never = calm_read.oracle_speedup, calm_read.never_exit["lens | every 3rd layer"]
report.show(fig, alt=f"Two panels of token agreement with the full model against FLOPs speed-up over the full model, "
                     f"on test. Left, exits checked at every third layer: every curve lies left of 1x, and even the "
                     f"oracle stars sit at {orc['lens | every 3rd layer']:.2f}x (lens) and "
                     f"{orc['tuned | every 3rd layer']:.2f}x (tuned): each check costs an LM head. Right, one checked "
                     f"layer chosen on cal (lens layer {designs['lens', DESIGNS[1]][0]}, tuned layer "
                     f"{designs['tuned', DESIGNS[1]][0]}), oracles at {orc['lens | one checked layer']:.2f}x "
                     f"and {orc['tuned | one checked layer']:.2f}x. Hollow circles and squares with 95% error bars "
                     f"mark the global and per-layer thresholds chosen on cal for the target agreements (dotted lines)"
                     + (f"; the lens's global thresholds for targets {', '.join(map(str, never))} never exit and "
                        f"coincide at the top left." if never else "."))

# %%
report.conclude(calm_read.markdown())

# %% [markdown]
# ### Predicted time beside FLOPs
#
# FLOPs are not what a decoder step costs on a machine: the LM head over the vocabulary costs more time than its
# FLOPs share, a layer on a few rows costs little more than on one, and in a batch each step runs until its deepest
# exit. A latency profile of SmolLM2 on this project's CPU (`benchmarks/latency_profile_cpu.json`, written by
# `toolkit profile`) prices the CALM decoder's own schedule: per token at batch 1, and in batches of 4 prompts
# (sorted by prompt length) where a step runs each layer on its rows still running
# (`latency.calm_time_curves`; the [LLM guide](../guides/llm.md) has the time budget). Logit-lens exits here;
# tuned exits are costed the same way, their translator timed as a piece of the profile.

# %%
PROFILE = latency.load_profile(next(p for p in (Path("../benchmarks"), Path("benchmarks")) if p.is_dir())
                               / "latency_profile_cpu.json")
time_curves = {d: latency.calm_time_curves(engine.staged(test, family="lens", checked_layers=designs["lens", d]),
                                           PROFILE, model=test.model["path"], batch_sizes=(1, 4),
                                           prompt_lengths=test.n_prompt) for d in DESIGNS}
for d, c in time_curves.items():
    print(d, {k: round(v, 2) if isinstance(v, float) else v for k, v in c.to_dict().items()})
fig = llm_plots.plot_calm_time(time_curves)
best = {d: c.best_speedup(0.9) for d, c in time_curves.items()}
report.show(fig, alt="Two panels of token agreement with the full model against speed-up (log scale) on test, "
                     "lens exits, for every threshold on three cost axes: FLOPs against the full model, predicted "
                     "time against greedy decoding at batch 1 and at batch 4. "
                     + " ".join(f"{d}: best speed-up at agreement 0.9 or more (an upper bound: picked on test) "
                                f"{b['FLOPs']:.2f}x in FLOPs, {b['predicted time, batch 1']:.2f}x in predicted time "
                                f"at batch 1, {b['predicted time, batch 4']:.2f}x at batch 4." for d, b in best.items()))

# %% [markdown]
# ## 3. Exact self-speculative decoding
#
# Draft `d` tokens with the exit at layer `k` (layers `1..k` only), verify them with one full-model pass, keep the
# agreeing prefix plus the verifier's token. The output equals the full model's greedy output, and acceptance is
# exact from the cache (`llm.self_speculative`; the real decoder reproduces it block for block, see the runtime section). A block
# near the end of a continuation drafts fewer tokens: `min(d, max_new_tokens - 1 - p)`, room for the verifier's
# token, as the real decoder does.
#
# **Why its FLOPs speed-up is below 1.** Every emitted token still passes through all layers once (`1..k` while
# drafting, `k+1..L` while verifying), rejected drafts are paid for and thrown away, and a block evaluates `d`
# draft heads and `d + 1` verify heads for at most `d + 1` tokens, where greedy decoding evaluates one head per
# token. No (layer, draft length) saves FLOPs, so FLOPs cannot rank the pairs.
# **Where wall-clock time could gain.** Greedy decoding reads all the model's weights once per token. A block reads
# layers `1..k` and the exit once per draft step, then the verify pass reads every layer once (the last draft token
# has not been through layers `1..k` yet, so it runs them; the other positions continue from their draft states)
# and the head once, for `d + 1` positions. When decoding is memory-bound (small batches on a GPU: a pass costs its
# weight reads, nearly the same for one position or a few), time follows the weights read per generated token:
# `memory_bound_speedup` (the full model's reads / the blocks'; SmolLM2's LM head weighs as much as about eight
# layers). The passes are `cost.causal.self_speculative_passes`, the one definition the real decoder checks each block
# against and counts in. That proxy is the criterion: the pair is chosen on cal by it. Since a block reads every
# layer once besides its drafts, it gains only when a draft through few layers is accepted often:
# `llm.memory_bound_ceiling` is the most any exit at a pair could give. The runtime section shows what the real
# decoder measured on CPU, where decoding is compute-bound and FLOPs are the better guide.

# %%
DRAFT_LENGTHS = range(1, 9)
SHALLOW = (L // 2, 4)  # a shallow draft (layer, draft length), where the exit family matters most
spec = {split: pd.concat([llm.self_speculative(c, f, draft_lengths=DRAFT_LENGTHS) for f in FAMILIES],
                         ignore_index=True) for split, c in (("cal", cal), ("test", test))}
chosen = {f: llm.choose_self_speculative(cal, f, draft_lengths=DRAFT_LENGTHS) for f in FAMILIES}
points = {f: li.self_speculative_points(cal, {"test": (test, W["test"]), "qnli (transfer)": (qnli, W["qnli"])}, f,
                                         shallow=SHALLOW, draft_lengths=DRAFT_LENGTHS, transfer=("qnli (transfer)",))
          for f in FAMILIES}
spec_compare = li.spec_family_differences(points["tuned"], points["lens"])
spec_read = summaries.self_speculative_summary(spec["cal"], spec["test"], points, spec_compare, ceiling_at=(L - 1, 1),
                                               ceiling=llm.memory_bound_ceiling(test, "lens", L - 1, 1))
print(spec_read)
table(pd.concat([p.frame for p in points.values()], ignore_index=True), index=False)
print("tuned minus lens, test, paired over prompts")
table(spec_compare.frame, index=False)

# %%
fig = llm_plots.plot_self_speculative_grid(spec["test"], chosen, families=FAMILIES)
cl, ct = (spec_read.pairs[f"{f} | chosen on cal"] for f in FAMILIES)
top = spec_read.best_flops
report.show(fig, alt=f"Left and middle: heatmaps of the FLOPs speed-up of self-speculative decoding over the full "
                     f"model for every draft layer and draft length on test, for the logit lens and tuned exits; the "
                     f"largest cell is {top['lens']:.3f}x for the lens and {top['tuned']:.3f}x for tuned exits; a red "
                     f"star marks the pair chosen on cal by the memory-bound speed-up (lens "
                     f"{cl['memory_bound_speedup'][0]:.3f}x, tuned {ct['memory_bound_speedup'][0]:.3f}x; in FLOPs "
                     f"{cl['speedup'][0]:.3f}x and {ct['speedup'][0]:.3f}x). Right: the memory-bound speed-up against "
                     f"the draft layer for draft lengths 1, 4 and 8, each family in its colour, with a black line at 1.")

# %%
report.conclude(spec_read.markdown())

# %% [markdown]
# ## 4. The LLM as a multi-exit classifier, on the encoder zoo's FLOPs axis
#
# At the position after the chat prompt, each layer's hidden state gives a **zero-shot** answer (the label words'
# first tokens through the logit lens or the tuned exit, logsumexp over a class's surface forms) or a **probe**
# answer (a logistic regression per layer fitted on train-split prompts, disjoint from `cal`). FLOPs: the whole
# prompt through layers `1..k` plus each exit head evaluated; the encoders' FLOPs are those of
# `toolkit.analysis.cost.encoder`. All on the same test examples (ids). Operating points are chosen on `cal` with the
# `drop` rule (the cheapest threshold within `MAX_DROP` of the policy's last stage's cal accuracy) and reported on
# test with 95% intervals over test examples; a classification speed-up divides by SmolLM2's last exit (probe) on
# every example. Two policies: early exit among the probe exits, and a cascade from `compose.cascade_caches` that
# runs MiniLM-L6 (its last exit) first and escalates the examples it is unsure of to the probe at its best cal
# layer.

# %%
TASKS = ("sst2", "agnews")
MAX_DROP = 0.01
clf = {t: llm_classifier(t, max_drop=MAX_DROP, n_boot=catalogue.N_BOOT, seed=catalogue.SEED) for t in TASKS}
tabs, clf_read = summaries.classifier_tables(clf), summaries.classifier_summary(clf, max_drop=MAX_DROP)
print("per-stage test accuracy (SmolLM2: every 3rd layer and the probe's best cal layer), same test examples")
table(tabs["stages"], index=False)
print("SmolLM2's exits: the best layer on test (an upper bound: chosen on test) against the last layer")
table(tabs["peaks"], index=False)
print(clf_read)
print("operating points on test (95% intervals over test examples), speed-up against SmolLM2's last exit")
table(tabs["operating points"], index=False)
print("paired differences in test accuracy (95% intervals over test examples)")
table(tabs["comparisons"][["task", "comparison", "difference", "lo", "hi", "P(first better)"]], index=False)

# %%
fig = plot_llm_classifier(clf)
report.show(fig, alt=f"Two panels, SST-2 and AG News, of test accuracy against mean GFLOPs per example on a log axis "
                     f"for every exit of SmolLM2's zero-shot lens and tuned exits, its probes, and the multi-exit "
                     f"MiniLM-L6 and MPNet-base, with the majority class dotted ({clf['sst2'].chance:.3f} and "
                     f"{clf['agnews'].chance:.3f}); a note in each panel counts the zero-shot layers within 5 points "
                     f"of it. A dashed black line is the cascade MiniLM-L6 then the probe at every threshold; black "
                     f"markers with 95% error bars: the probes' early exit and the cascade, both chosen on cal.")

# %%
report.conclude(clf_read.markdown())

# %% [markdown]
# ## 5. The real runtime: measured against predicted
#
# The FLOPs numbers above are predictions. Two committed results files say what the real decoders
# (`toolkit.nn.causal.decode`) did:
#
# - `benchmarks/llm_cache_fidelity.json` (`benchmarks/llm_cache_fidelity.py`): the real self-speculative decoder
#   run on the shipped test caches' prompts, prompt by prompt: is its output the cached greedy output token for
#   token, and is every block's accepted count the one `llm.acceptance_counts` predicts from the cache?
# - `benchmarks/llm_calm_fidelity.json` (`benchmarks/llm_calm_fidelity.py`): the real CALM-style decoder (KV cache,
#   state propagation) at operating points chosen on the cal caches, against the offline teacher-forced estimate on
#   the same test prompts: agreement with the full model's output, identical outputs, whether the first difference
#   falls where the estimate predicts the first disagreement, the FLOPs of the exits actually taken, answer quality;
# - `benchmarks/bench_llm_*.json` (`benchmarks/bench_llm_runtime.py --out`): median decode wall-clock speed-up
#   (prefill excluded) of each operating point against plain greedy decoding in the same run, next to its
#   FLOPs-predicted speed-up, on CPU (and on a GPU where the benchmark has been run on one), with the machine's load.
#
# A file that is not committed yet is said to be absent; nothing is typed in.

# %%
BENCH_DIR = Path("../benchmarks") if Path("../benchmarks").is_dir() else Path("benchmarks")
FIDELITY, CALM_FIDELITY = BENCH_DIR / "llm_cache_fidelity.json", BENCH_DIR / "llm_calm_fidelity.json"
fid = llm_results.cache_fidelity(FIDELITY, chosen={f: (c.layer, c.draft_length) for f, c in chosen.items()})
cf, runs = llm_results.calm_fidelity(CALM_FIDELITY), llm_results.runtime_runs(BENCH_DIR)
runtime = summaries.runtime_summary(fid, cf, runs)
if fid is not None:
    print(f"{FIDELITY}: {fid.meta['model']}, threads {fid.meta['threads']}")
    print(fid.frame[["cache", "family", "layer", "draft_length", "batch", "prompts", "tokens", "tokens_equal",
                     "accepted_equal", "blocks", "chosen on cal here"]].to_string(index=False))
else:
    print(f"{FIDELITY} is absent: no fidelity check of the real decoder against these caches is committed yet")
if cf is not None:
    print(f"{CALM_FIDELITY}: {cf.meta['model']}, threads {cf.meta['threads']}; thresholds chosen on cal for agreement "
          f">= {cf.meta['target_agreement_on_cal']}")
    table(cf.frame, index=False)
else:
    print(f"{CALM_FIDELITY} is absent: the real CALM decoder is not compared with the estimate here yet")
for name, meta in runs.meta["files"].items():
    print(f"{name}: {meta['model']}; {meta['prompts']} prompts ({meta['prompt_set']}), max new tokens "
          f"{meta['max_new_tokens']}, {meta['repeats']} repeats, load average at start {meta['loadavg_start']}")
if len(runs):
    table(runs.frame, index=False)
else:
    print(f"no runtime benchmark results in {BENCH_DIR} (bench_llm_*.json from benchmarks/bench_llm_runtime.py "
          f"--out): measured speed-ups are absent")
print(runtime)

# %%
if len(runs):
    fig = llm_plots.plot_measured_vs_predicted(runs.frame)
    sp = runtime.speed
    report.show(fig, alt=f"Scatter of measured wall-clock speed-up against the FLOPs-predicted speed-up for "
                         f"{sp['runs']} runs of the real self-speculative and CALM decoders ({', '.join(sp['devices'])}), "
                         f"with min-to-max bars and the diagonal where measured equals predicted (batch sizes that "
                         f"share a predicted value are drawn slightly apart); measured over predicted ranges from "
                         f"{sp['ratio'][0]:.2f} to {sp['ratio'][1]:.2f}.")

# %%
report.conclude(runtime.markdown())
