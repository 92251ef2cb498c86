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
# token through all layers and one LM head, attending to its context; `llm_cost.full_token_flops`) divided by the
# method's FLOPs for the same tokens; the prompt's prefill, the same for every method, is left out. A classification
# speed-up (the classifier section) divides by SmolLM2's last exit on every example. FLOPs come from the causal-LM cost model
# (`toolkit.analysis.llm_cost`): layers run, every exit head evaluated, the K/V projections of skipped layers.

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis import engine, llm, llm_plots
from toolkit.analysis import llm_intervals as li
from toolkit.analysis import notebook as nb
from toolkit.zoo import llm_results
from toolkit.zoo.llm_classifier import LLM_SETS, llm_classifier, plot_llm_classifier
from toolkit.zoo.llm_token_caches import smollm2_token_caches

nb.setup()
FAMILIES = ("lens", "tuned")


def fmt(value, lo, hi, digits=3, unit=""):
    """A value with its interval, as the tables print it and the conclusions quote it."""
    return f"{value:.{digits}f}{unit} {nb.ci(lo, hi, digits=digits)}"


def table(frame, **options):
    """Print a frame with three decimals, formatted as the conclusions format them."""
    print(frame.to_string(float_format="{:.3f}".format, na_rep="-", **options))


sm = smollm2_token_caches()
cal, test, qnli = sm.cal, sm.test, sm.qnli
L = test.n_layers
W = sm.weights(n_boot=nb.N_BOOT, seed=nb.SEED)
print("model:", test.model["path"], {k: v for k, v in test.model["dims"].items()})
print("decoding speed-up reference:", engine.staged(test, family="lens", checked_layers=[1]).reference,
      "greedy, per generated token (prefill excluded)")
tuned = test.families["tuned"]
print("tuned exits:", tuned["form"], "trained on train-split prompts of", tuned["config"]["prompt_sets"],
      {k: tuned["training"][k] for k in ("train_sequences", "heldout_sequences", "positions_trained")})
table(sm.table(), index=False)

# %%
nb.conclude(f"""
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
reliability = li.layer_reliability_table(test, ("lens", "tuned"), W["test"])
per_layer = reliability.frame
mean_ece, mean_ece_diff = reliability.mean_ece, reliability.mean_ece_difference
shown = pd.DataFrame({
    **{f"{f} agreement": [fmt(*r) for r in per_layer[[f"{f} agreement", f"{f} agreement lo", f"{f} agreement hi"]]
                          .to_numpy()] for f in FAMILIES},
    "tuned - lens": [fmt(*r) for r in per_layer[["tuned-lens agreement", "agreement diff lo", "agreement diff hi"]]
                     .to_numpy()],
    **{f"{f} ECE": [fmt(*r) for r in per_layer[[f"{f} ece", f"{f} ece lo", f"{f} ece hi"]].to_numpy()]
       for f in FAMILIES},
    "tuned - lens ECE": [fmt(*r) for r in per_layer[["tuned-lens ece", "ece diff lo", "ece diff hi"]].to_numpy()],
    **{f"{f} mean max-prob": per_layer[f"{f} confidence"] for f in FAMILIES},
    **{f"{f} AUROC": per_layer[f"{f} auroc"] for f in FAMILIES}}, index=per_layer.index)
print(f"test: {test.n_examples} prompts, {test.n_tokens} generated tokens; 95% intervals over prompts; AUROC of "
      f"max-probability for agreement")
table(shown)
print("mean ECE over layers:", {f: np.round(v, 3).tolist() for f, v in mean_ece.items()},
      "tuned - lens:", {k: round(v, 3) for k, v in mean_ece_diff.items()})
better = per_layer.index[per_layer["agreement diff lo"] > 0]
ece_better = per_layer.index[per_layer["ece diff hi"] < 0]
ece_worse = per_layer.index[per_layer["ece diff lo"] > 0]
over = int((per_layer["lens confidence"] > per_layer["lens agreement"]).sum())
under = int((per_layer["tuned confidence"] < per_layer["tuned agreement"]).sum())
print(f"layers where tuned agrees more (paired interval above 0): {len(better)} of {L - 1}; tuned ECE lower: "
      f"{len(ece_better)}, higher: {len(ece_worse)} {list(ece_worse)}; lens overconfident (mean max-prob > "
      f"agreement): {over}; tuned underconfident: {under}")

# %%
fig = llm_plots.plot_layer_reliability(reliability, test, DIAGRAM_LAYER)
r = per_layer.loc[DIAGRAM_LAYER]
nb.show(fig, alt=f"Four panels. Top left: agreement with the full model's token per layer, on test with bands: the "
                 f"logit lens stays near {per_layer['lens agreement'].iloc[0]:.3f} in the first layers and reaches "
                 f"{per_layer['lens agreement'].iloc[-1]:.3f} at layer {L - 1}, tuned exits start at "
                 f"{per_layer['tuned agreement'].iloc[0]:.3f} and reach {per_layer['tuned agreement'].iloc[-1]:.3f}. "
                 f"Top right: ECE per layer, the lens far above the tuned exits until the last layers. Bottom: "
                 f"reliability diagrams at layer {DIAGRAM_LAYER} (lens ECE {r['lens ece']:.3f}, tuned "
                 f"{r['tuned ece']:.3f}) with token counts per bin.")

# %%
mid, last = L // 2, L - 1


def at(layer, col, digits=3):
    r = per_layer.loc[layer]
    return f"{r[col]:.{digits}f} {nb.ci(r[col + ' lo'], r[col + ' hi'])}"


nb.conclude(f"""
**Reading the numbers above.** Agreement with the full model's token (test, {test.n_tokens} tokens of
{test.n_examples} prompts): at layer {mid} the logit lens {at(mid, 'lens agreement')}, tuned exits
{at(mid, 'tuned agreement')}; at layer {last} the lens {at(last, 'lens agreement')}, tuned
{at(last, 'tuned agreement')}. Tuned exits agree more often than the lens at {len(better)} of {L - 1} layers with
the paired interval above 0. Calibration: tuned exits have the lower ECE at {len(ece_better)} layers (paired interval
below 0){f" and the higher at {len(ece_worse)} ({', '.join(map(str, ece_worse))})" if len(ece_worse) else ""}; mean
ECE over layers {mean_ece['lens'][0]:.3f} for the lens and {mean_ece['tuned'][0]:.3f} for tuned exits, a difference of
{mean_ece_diff['difference']:.3f} {nb.ci(mean_ece_diff['lo'], mean_ece_diff['hi'])}. The logit lens of this small
model is nearly useless before its last few layers, and it does not know it: its mean max-probability exceeds its
agreement at {over} of {L - 1} layers (at layer {mid}: {per_layer.loc[mid, 'lens confidence']:.3f} for
{per_layer.loc[mid, 'lens agreement']:.3f}), so a confidence rule reading it exits wrong tokens. Tuned exits are
underconfident at {under} of {L - 1} layers (at layer {mid}: {per_layer.loc[mid, 'tuned confidence']:.3f} for
{per_layer.loc[mid, 'tuned agreement']:.3f}), so a threshold on them errs on the safe side; at the deepest layers the
lens, which approaches the model itself there, is the better calibrated.
""")

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
EVERY3 = list(range(3, L, 3))
ORACLE = li.ORACLE
designs = {}
for f in FAMILIES:
    designs[f, "every 3rd layer"] = EVERY3
    designs[f, "one checked layer"] = [li.best_single_layer(cal, f, target=TARGET)]
SETS_EVAL = {"test": (test, W["test"]), "qnli (transfer)": (qnli, W["qnli"])}
calm = {(f, design): li.calm_operating_points(cal, SETS_EVAL, f, checked_layers=checked, targets=TARGETS,
                                              only_at={"qnli (transfer)": (TARGET,)}, transfer=("qnli (transfer)",))
        for (f, design), checked in designs.items()}
curves = {(f, design): engine.sweep(engine.staged(test, family=f, checked_layers=checked)).to_frame()
          for (f, design), checked in designs.items()}
calm_points = pd.concat([p.frame.assign(design=design) for (f, design), p in calm.items()], ignore_index=True)
shown = calm_points[["family", "design", "checked", "rule", "target (cal)", "evaluated on"]].copy()
ok = calm_points["agreement lo"].notna()
shown["agreement"] = [fmt(*r) if k else f"{r[0]:.3f}" for r, k in
                      zip(calm_points[["agreement", "agreement lo", "agreement hi"]].to_numpy(), ok)]
shown["speed-up"] = [fmt(*r, unit="x") if k else f"{r[0]:.3f}x" for r, k in
                     zip(calm_points[["speedup", "speedup lo", "speedup hi"]].to_numpy(), ok)]
shown["mean layers"] = calm_points["mean layers"]
shown["exited early"] = calm_points["exited early"]
print("CALM-style exit, max-probability; speed-up against the full model decoding greedily; 95% intervals over "
      "prompts")
table(shown, index=False)

# %%
calm_compare = li.calm_family_differences({d: calm["tuned", d] for d in ("every 3rd layer", "one checked layer")},
                                          {d: calm["lens", d] for d in ("every 3rd layer", "one checked layer")},
                                          target=TARGET, on="test").frame
print(f"tuned exits minus logit lens at target {TARGET} (thresholds chosen on cal), test, paired over prompts")
table(calm_compare, index=False)

# %%
fig = llm_plots.plot_calm_frontiers(curves, calm_points, designs, families=FAMILIES, targets=TARGETS)
orc = calm_points[calm_points.rule == ORACLE].set_index(["family", "design"]).speedup
never = calm_points[(calm_points.family == "lens") & (calm_points.design == "every 3rd layer")
                    & (calm_points.rule == "global") & (calm_points["evaluated on"] == "test")
                    & (calm_points["exited early"] == 0)]["target (cal)"].tolist()
nb.show(fig, alt=f"Two panels of token agreement with the full model against FLOPs speed-up over the full model, on "
                 f"test. Left, exits checked at every third layer: every curve lies left of 1x, and even the oracle "
                 f"stars sit at {orc['lens', 'every 3rd layer']:.2f}x (lens) and "
                 f"{orc['tuned', 'every 3rd layer']:.2f}x (tuned): each check costs an LM head. Right, one checked "
                 f"layer chosen on cal (lens layer {designs['lens', 'one checked layer'][0]}, tuned layer "
                 f"{designs['tuned', 'one checked layer'][0]}), oracles at {orc['lens', 'one checked layer']:.2f}x "
                 f"and {orc['tuned', 'one checked layer']:.2f}x. Hollow circles and squares with 95% error bars mark "
                 f"the global and per-layer thresholds chosen on cal for the target agreements (dotted lines)"
                 + (f"; the lens's global thresholds for targets {', '.join(map(str, never))} never exit and coincide "
                    f"at the top left." if never else "."))

# %%
def pt(f, design, rule, on="test"):
    sel = calm_points[(calm_points.family == f) & (calm_points.design == design) & (calm_points.rule == rule)
                      & (calm_points["evaluated on"] == on)]
    return sel[sel["target (cal)"] == TARGET].iloc[0] if "upper" not in rule else sel.iloc[0]


def said(r):
    return (f"{fmt(r.agreement, r['agreement lo'], r['agreement hi'])} agreement at "
            f"{fmt(r.speedup, r['speedup lo'], r['speedup hi'], digits=2, unit='x')}, "
            f"{100 * r['exited early']:.1f}% of tokens exiting early")


def cmp(design, rule, stat):
    r = calm_compare[(calm_compare.design == design) & (calm_compare.rule == rule)
                     & (calm_compare.statistic == stat)].iloc[0]
    verdict = "tuned ahead" if r.lo > 0 else "lens ahead" if r.hi < 0 else "no difference shown"
    digits = 2 if stat == "speedup" else 3
    return f"{r['tuned - lens']:+.{digits}f} {nb.ci(r.lo, r.hi, digits=digits)} ({verdict})"


lines = []
for f in FAMILIES:
    g, p = pt(f, "every 3rd layer", "global"), pt(f, "every 3rd layer", "per layer")
    o, one = pt(f, "every 3rd layer", ORACLE), pt(f, "one checked layer", "global")
    one_o = pt(f, "one checked layer", ORACLE)
    lines.append(f"- **{f}**: checking every third layer, the global threshold chosen on cal gives {said(g)} on "
                 f"test, per-layer thresholds {said(p)}; the oracle reaches only {o.speedup:.2f}x. Checking layer "
                 f"{one.checked} only (chosen on cal): {said(one)}; oracle {one_o.speedup:.2f}x.")
q = {f: pt(f, "one checked layer", "global", on="qnli (transfer)") for f in FAMILIES}
nb.conclude(f"""
**Reading the numbers above** (test, target agreement {TARGET} chosen on cal):

""" + "\n".join(lines) + f"""
- Tuned minus lens, paired over prompts: every third layer with a global threshold, speed-up
{cmp('every 3rd layer', 'global', 'speedup')} and agreement {cmp('every 3rd layer', 'global', 'agreement')}; one
checked layer, speed-up {cmp('one checked layer', 'global', 'speedup')} and agreement
{cmp('one checked layer', 'global', 'agreement')}.
- Transfer to QNLI (no cal of its own), one checked layer: lens {said(q['lens'])}, tuned {said(q['tuned'])}.

Checking many layers cannot pay on this model: each check is an LM head over the full vocabulary, and the oracle
itself stays below 1x. A single checked layer is the only design near or above 1x, and only where the exit at that
layer is confident and right often enough.
""")

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
# layers). The passes are `llm_cost.self_speculative_passes`, the one definition the real decoder checks each block
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
spec_points = pd.concat([p.frame for p in points.values()], ignore_index=True)
print(f"{len(spec['test'])} (family, layer, draft length) cases per split; pairs chosen on cal by the memory-bound "
      f"speed-up; cases above 1x on cal (memory-bound): "
      + ", ".join(f"{f} {int((spec['cal'][spec['cal'].family == f].memory_bound_speedup > 1).sum())}" for f in FAMILIES)
      + f"; on test, below 1x in FLOPs: {int((spec['test'].speedup < 1).sum())}, above 1x memory-bound: "
      f"{int((spec['test'].memory_bound_speedup > 1).sum())}")
table(spec_points, index=False)
spec_compare = li.spec_family_differences(points["tuned"], points["lens"]).frame
print("tuned minus lens, test, paired over prompts")
table(spec_compare, index=False)

# %%
fig = llm_plots.plot_self_speculative_grid(spec["test"], chosen, families=FAMILIES)
cl, ct = (spec_points[(spec_points.family == f) & (spec_points.pair == "chosen on cal")].iloc[0] for f in FAMILIES)
top = {f: spec["test"][spec["test"].family == f].speedup.max() for f in FAMILIES}
nb.show(fig, alt=f"Left and middle: heatmaps of the FLOPs speed-up of self-speculative decoding over the full model "
                 f"for every draft layer and draft length on test, for the logit lens and tuned exits; the largest "
                 f"cell is {top['lens']:.3f}x for the lens and {top['tuned']:.3f}x for tuned exits; a red star marks "
                 f"the pair chosen on cal by the memory-bound speed-up (lens {cl.memory_bound_speedup:.3f}x, tuned "
                 f"{ct.memory_bound_speedup:.3f}x; in FLOPs {cl.speedup:.3f}x and {ct.speedup:.3f}x). Right: the "
                 f"memory-bound speed-up against the draft layer for draft lengths 1, 4 and 8, each family in its "
                 f"colour, with a black line at 1.")

# %%
def sp(f, label):
    return spec_points[(spec_points.family == f) & (spec_points.pair == label)].iloc[0]


def sc(label, stat, digits=3):
    r = spec_compare[(spec_compare.pair == label) & (spec_compare.statistic == stat)].iloc[0]
    return f"{r['tuned - lens']:+.{digits}f} {nb.ci(r.lo, r.hi, digits=digits)}"


best_mb = {f: spec["test"][spec["test"].family == f].memory_bound_speedup.max() for f in FAMILIES}
ceiling = llm.memory_bound_ceiling(test, "lens", L - 1, 1)
print("best memory-bound speed-up on test (any pair):", {f: round(v, 3) for f, v in best_mb.items()},
      f"; ceiling at layer {L - 1}, length 1, every draft accepted: {ceiling:.3f}x")
lines = []
for f in FAMILIES:
    c, q_, s_ = sp(f, "chosen on cal"), sp(f, "chosen on cal, qnli (transfer)"), sp(f, "shallow draft")
    ub = sp(f, "best on test itself (upper bound)")
    lines.append(f"- **{f}**: chosen on cal, layer {int(c['layer k'])} with draft length {int(c['draft length d'])}: "
                 f"on test {c.memory_bound_speedup:.3f}x "
                 f"{nb.ci(c['memory_bound_speedup lo'], c['memory_bound_speedup hi'])} memory-bound, "
                 f"{c.speedup:.3f}x {nb.ci(c['speedup lo'], c['speedup hi'])} in FLOPs, acceptance "
                 f"{c.acceptance:.3f}; the best pair on test itself (layer {int(ub['layer k'])}, length "
                 f"{int(ub['draft length d'])}) gives {ub.memory_bound_speedup:.3f}x memory-bound. On QNLI: "
                 f"{q_.memory_bound_speedup:.3f}x memory-bound. Shallow draft (layer {SHALLOW[0]}, length "
                 f"{SHALLOW[1]}): {s_.tokens_per_block:.3f} tokens per block, {s_.memory_bound_speedup:.3f}x "
                 f"memory-bound.")
nb.conclude(f"""
**Reading the numbers above.** {int((spec['test'].speedup < 1).sum())} of the {len(spec['test'])} cases cost more
FLOPs than the full model, as argued above, and {int((spec['test'].memory_bound_speedup > 1).sum())} read fewer
weights per token; the output is the full model's in all of them.

""" + "\n".join(lines) + f"""

Tuned minus lens, paired over prompts: at the pairs chosen on cal, memory-bound speed-up
{sc('chosen on cal', 'memory_bound_speedup')} and FLOPs speed-up {sc('chosen on cal', 'speedup')}; at the shallow
draft, tokens per block {sc('shallow draft', 'tokens_per_block')}. The memory-bound proxy is a model of one kind of
hardware; whether the gain materialises is measured in the runtime section.

**What this means.** With these exits self-speculative decoding does not pay on SmolLM2: the best memory-bound
speed-up of any pair is {best_mb['lens']:.3f}x for the logit lens and {best_mb['tuned']:.3f}x for tuned exits, at
most a few percent and at a FLOPs cost. Even at layer {L - 1} with every draft accepted, length 1 would give
{ceiling:.3f}x: a block reads every layer once besides its drafts. What would pay is a shallow exit that agrees with
the last layer far more often, which a checkpoint trained for it (LayerSkip-style layer dropout and early-exit loss)
has; these are exits added after the fact to a model trained without them.
""")

# %% [markdown]
# ## 4. The LLM as a multi-exit classifier, on the encoder zoo's FLOPs axis
#
# At the position after the chat prompt, each layer's hidden state gives a **zero-shot** answer (the label words'
# first tokens through the logit lens or the tuned exit, logsumexp over a class's surface forms) or a **probe**
# answer (a logistic regression per layer fitted on train-split prompts, disjoint from `cal`). FLOPs: the whole
# prompt through layers `1..k` plus each exit head evaluated; the encoders' FLOPs are those of
# `toolkit.analysis.cost`. All on the same test examples (ids). Operating points are chosen on `cal` with the
# `drop` rule (the cheapest threshold within `MAX_DROP` of the policy's last stage's cal accuracy) and reported on
# test with 95% intervals over test examples; a classification speed-up divides by SmolLM2's last exit (probe) on
# every example. Two policies: early exit among the probe exits, and a cascade from `compose.cascade_caches` that
# runs MiniLM-L6 (its last exit) first and escalates the examples it is unsure of to the probe at its best cal
# layer.

# %%
TASKS = ("sst2", "agnews")
MAX_DROP = 0.01
clf = {t: llm_classifier(t, max_drop=MAX_DROP, n_boot=nb.N_BOOT, seed=nb.SEED) for t in TASKS}
print("per-stage test accuracy (SmolLM2: every 3rd layer and the probe's best cal layer), same test examples")
table(pd.concat([clf[t].stage_table() for t in TASKS], ignore_index=True), index=False)
peaks = pd.concat([clf[t].peaks() for t in TASKS], ignore_index=True)
print("SmolLM2's exits: the best layer on test (an upper bound: chosen on test) against the last layer")
table(peaks, index=False)
print({t: {"cascade: either member right": round(clf[t].either, 3)} for t in TASKS})
ops = pd.concat([clf[t].operating_points() for t in TASKS], ignore_index=True)
print("operating points on test (95% intervals over test examples), speed-up against SmolLM2's last exit")
table(ops, index=False)
cmps = pd.concat([clf[t].comparisons.frame.assign(task=t) for t in TASKS], ignore_index=True)
print("paired differences in test accuracy (95% intervals over test examples)")
table(cmps[["task", "comparison", "difference", "lo", "hi", "P(first better)"]], index=False)

# %%
fig = plot_llm_classifier(clf)
s2, ag = clf["sst2"], clf["agnews"]
nb.show(fig, alt=f"Two panels, SST-2 and AG News, of test accuracy against mean GFLOPs per example on a log axis for "
                 f"every exit of SmolLM2's zero-shot lens and tuned exits, its probes, and the multi-exit MiniLM-L6 and "
                 f"MPNet-base, with the majority class dotted ({s2.chance:.3f} and {ag.chance:.3f}); a note in "
                 f"each panel counts the zero-shot layers within 5 points of it. A dashed black line is the cascade "
                 f"MiniLM-L6 then "
                 f"the probe at every threshold; black markers with 95% error bars: the probes' early exit and the "
                 f"cascade, both chosen on cal.")

# %%
def op(task, prefix):
    return ops[(ops.task == task) & ops.policy.str.startswith(prefix)].iloc[0]


def dif(task, prefix):
    r = cmps[(cmps.task == task) & cmps.comparison.str.startswith(prefix)].iloc[0]
    return f"{100 * r.difference:+.1f} points {nb.ci(r.lo, r.hi, points=True)}"


lines = []
for t in TASKS:
    r, tab = clf[t], clf[t].tables
    zs = peaks[(peaks.task == t) & (peaks.model == LLM_SETS["smollm2_zs_lens"])].iloc[0]
    zt = peaks[(peaks.task == t) & (peaks.model == LLM_SETS["smollm2_zs_tuned"])].iloc[0]
    pr = tab["smollm2_probe"].iloc[r.k]
    e, c, m = op(t, "SmolLM2 probes"), op(t, "cascade MiniLM-L6"), op(t, "MiniLM-L6 alone")
    ub = op(t, "cascade, most accurate")
    lines.append(
        f"- **{t}**: zero-shot through the lens is at most {zs['its test accuracy']:.3f} before the last layer "
        f"(majority class {r.chance:.3f}) and {zs['last layer accuracy']:.3f} at it "
        f"({tab['smollm2_zs_lens'].gflops.iloc[-1]:.2f} GFLOPs); through the tuned exits, before the last layer, it "
        f"peaks at "
        f"{zt['its test accuracy']:.3f} at {zt['best test layer before the last']} ("
        + ("also the best layer on cal" if zt["best cal layer"] == zt["best test layer before the last"] else
           f"a layer picked on test; cal's best is {zt['best cal layer']}") + f", against "
        f"{zt['last layer accuracy']:.3f} at the last layer). The probe at {r.layer} (best on cal) reaches {pr.accuracy:.3f} on test at {pr.gflops:.2f} "
        f"GFLOPs, against MiniLM-L6's {m.accuracy:.3f} at {m.gflops:.2f} GFLOPs: {dif(t, 'SmolLM2 probe')}. The "
        f"probes' early exit chosen on cal: {fmt(e.accuracy, e['accuracy lo'], e['accuracy hi'])} at "
        f"{e.speedup:.2f}x, {100 * e['drop vs last stage']:.1f} points below the last exit where the rule allowed "
        f"{100 * MAX_DROP:.0f} on cal. The cascade chosen on cal escalates a share of {c.escalated:.3f} of the examples: "
        f"{fmt(c.accuracy, c['accuracy lo'], c['accuracy hi'])} at {c.gflops:.2f} GFLOPs, {dif(t, 'cascade')} "
        f"against MiniLM-L6 alone; even its most accurate threshold on test itself reaches only {ub.accuracy:.3f} "
        f"(either member right: {r.either:.3f}).")
nb.conclude("**Reading the numbers above.**\n\n" + "\n".join(lines) + """

A 135M-parameter chat model quantized to 4 bits is a weak classifier here: its probes trail a fine-tuned MiniLM-L6
at many times its FLOPs, so a cascade gains nothing by escalating to it, and the rule chosen on cal (accuracy within
`MAX_DROP` of the cascade's last member, the LLM) escalates at most """ + f"{max(op(t, 'cascade MiniLM-L6').escalated for t in TASKS):.3f}" + """
of the examples to it. SST-2's `cal` is carved from its training file, whose examples are much shorter phrases than
the dev sentences of `test` (the README's cal-shift section measures it), which is where a threshold chosen on it
can miss its promise.
""")

# %% [markdown]
# ## 5. The real runtime: measured against predicted
#
# The FLOPs numbers above are predictions. Two committed results files say what the real decoders
# (`toolkit.nn.llm_runtime`) did:
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
#   FLOPs-predicted speed-up, on CPU (and on a GPU where one was lent), with the machine's load.
#
# A file that is not committed yet is said to be absent; nothing is typed in.

# %%
BENCH_DIR = Path("../benchmarks") if Path("../benchmarks").is_dir() else Path("benchmarks")
FIDELITY, CALM_FIDELITY = BENCH_DIR / "llm_cache_fidelity.json", BENCH_DIR / "llm_calm_fidelity.json"
fid = llm_results.cache_fidelity(FIDELITY, chosen={f: (c.layer, c.draft_length) for f, c in chosen.items()})
fidelity = None if fid is None else fid.frame
if fid is not None:
    print(f"{FIDELITY}: {fid.meta['model']}, threads {fid.meta['threads']}")
    print(fidelity[["cache", "family", "layer", "draft_length", "batch", "prompts", "tokens", "tokens_equal",
                    "accepted_equal", "blocks", "chosen on cal here"]].to_string(index=False))
    print(f"decodes: {int(fidelity.prompts.sum())}; output equal to the cache: {int(fidelity.tokens_equal.sum())}; "
          f"accepted counts equal: {int(fidelity.accepted_equal.sum())}; pairs chosen on cal here among those "
          f"checked: {bool(fidelity['chosen on cal here'].any())}")
else:
    print(f"{FIDELITY} is absent: no fidelity check of the real decoder against these caches is committed yet")

cf = llm_results.calm_fidelity(CALM_FIDELITY)
calm_fid = None if cf is None else cf.frame
if cf is not None:
    print(f"{CALM_FIDELITY}: {cf.meta['model']}, threads {cf.meta['threads']}; thresholds chosen on cal for agreement "
          f">= {cf.meta['target_agreement_on_cal']}")
    table(calm_fid, index=False)
else:
    print(f"{CALM_FIDELITY} is absent: the real CALM decoder is not compared with the estimate here yet")

runs = llm_results.runtime_runs(BENCH_DIR)
bench = runs.frame
for name, meta in runs.meta["files"].items():
    print(f"{name}: {meta['model']}; {meta['prompts']} prompts ({meta['prompt_set']}), max new tokens "
          f"{meta['max_new_tokens']}, {meta['repeats']} repeats, load average at start {meta['loadavg_start']}")
if len(bench):
    table(bench, index=False)
    equal = {m: (int((g["equal to greedy"] == 1).sum()), len(g)) for m, g in bench.groupby("method")}
    print(f"runs: {len(bench)}; measured / predicted from {bench['measured / predicted'].min():.3f} to "
          f"{bench['measured / predicted'].max():.3f}; runs whose output equals greedy decoding (equal, runs): "
          f"{equal}")
else:
    print(f"no runtime benchmark results in {BENCH_DIR} (bench_llm_*.json from benchmarks/bench_llm_runtime.py "
          f"--out): measured speed-ups are absent")

# %%
if len(bench):
    fig = llm_plots.plot_measured_vs_predicted(bench)
    ratio = bench["measured / predicted"]
    nb.show(fig, alt=f"Scatter of measured wall-clock speed-up against the FLOPs-predicted speed-up for "
                     f"{len(bench)} runs of the real self-speculative and CALM decoders ({', '.join(sorted(set(map(str, bench.device))))}), "
                     f"with min-to-max bars and the diagonal where measured equals predicted (batch sizes that "
                     f"share a predicted value are drawn slightly apart); measured over predicted ranges from "
                     f"{ratio.min():.2f} to {ratio.max():.2f}.")

# %%
parts_text = []
if fidelity is not None:
    sel = fidelity[fidelity["chosen on cal here"]]
    parts_text.append(
        f"**Fidelity** ({FIDELITY.name}): over {int(fidelity.prompts.sum())} decodes of the shipped test prompts, "
        f"the real self-speculative decoder's output equals the cached greedy output for "
        f"{int(fidelity.tokens_equal.sum())} and its accepted counts equal the offline prediction block for block "
        f"for {int(fidelity.accepted_equal.sum())}; of the pairs chosen on cal above, those of "
        f"{', '.join(sorted(set(sel.family))) or 'no family'} are among those checked"
        f"{'' if set(sel.family) >= set(FAMILIES) else ' (the others need exits not in this checkout)'}.")
else:
    parts_text.append(f"**Fidelity**: `{FIDELITY.name}` is absent, so the exactness of the offline acceptance against "
                      f"the real decoder on these caches is not shown here (the unit tests check it on a tiny model).")
if calm_fid is not None:
    moved = calm_fid[calm_fid.threshold < np.inf]
    gap = (moved["offline agreement"] - moved["real agreement"])
    worst = moved.loc[gap.idxmax()]
    parts_text.append(
        f"**The CALM simulation gap** ({CALM_FIDELITY.name}): at the {len(moved)} operating points that exit at all, "
        f"the real decode agrees with the full model's output position by position {gap.min():.3f} to "
        f"{gap.max():.3f} less than the teacher-forced estimate says; the largest gap is {worst.family} "
        f"({worst.design}) on {worst.cache}: estimated {worst['offline agreement']:.3f}, real "
        f"{worst['real agreement']:.3f}, with {worst['identical outputs']:.2f} of outputs identical and quality "
        f"({worst.quality}) {worst['real quality']:.3f} against the full model's {worst['full model quality']:.3f}. "
        f"Once one exited token differs, the decode continues from its own text, so agreement measured on the full "
        f"model's trajectory overstates what CALM keeps; the real FLOPs speed-ups range from "
        f"{moved['real speed-up'].min():.2f}x to {moved['real speed-up'].max():.2f}x against estimates of "
        f"{moved['offline speed-up'].min():.2f}x to {moved['offline speed-up'].max():.2f}x.")
if len(bench):
    sp_rows, calm_rows = bench[bench.method == "self_speculative"], bench[bench.method == "calm"]
    best = bench.loc[bench.measured.idxmax()]
    parts_text.append(
        f"**Speed** ({', '.join(sorted(set(bench.file)))}): measured over predicted ranges from "
        f"{bench['measured / predicted'].min():.2f} to {bench['measured / predicted'].max():.2f}; the fastest "
        f"run is {best.method} at {best['operating point']}, batch {best.batch}, {best.measured:.2f}x measured for "
        f"{best['predicted (FLOPs)']:.2f}x predicted. Self-speculative outputs equal greedy decoding in "
        f"{int((sp_rows['equal to greedy'] == 1).sum())} of {len(sp_rows)} runs; CALM outputs (which may differ by "
        f"design) equal it in {int((calm_rows['equal to greedy'] == 1).sum())} of {len(calm_rows)}. A ratio above 1 "
        f"means the method spends less time per FLOP than greedy decoding (a self-speculative verifier handles "
        f"several positions in one pass), below 1 more; `bench_llm_runtime.py --profile` shows where the time "
        f"goes.")
    hf = bench[bench.method == "hf_self_speculative"]
    if len(hf):
        mine = bench[(bench.method == "self_speculative") & bench.file.isin(set(hf.file)) & (bench.batch == 1)]
        said = lambda g: ", ".join(f"{r['operating point']} {r.measured:.2f}x [{r['measured min']:.2f}, "  # noqa: E731
                                   f"{r['measured max']:.2f}]" for _, r in g.iterrows())
        parts_text.append(
            f"**A peer baseline** ({', '.join(sorted(set(hf.file)))}): Hugging Face's own self-speculative path "
            f"(`generate(..., assistant_early_exit=k)`, draft length d, constant schedule, confidence threshold 0; "
            f"batch 1, against its own greedy `generate`) ran at {said(hf)}, output equal to greedy decoding in "
            f"{int((hf['equal to greedy'] == 1).sum())} of {len(hf)} runs; this project's decoder in the same run: "
            f"{said(mine)}. The min-to-max ranges overlap: on these loaded cores neither is shown faster, and both "
            f"are slower than greedy decoding, as the corrected estimate says.")
else:
    parts_text.append("**Speed**: no runtime benchmark results are committed (`bench_llm_*.json`), so measured "
                      "wall-clock speed-ups are absent here; the FLOPs predictions above stand alone.")
nb.conclude("\n\n".join(parts_text))
