# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# SmolLM2-135M-Instruct (30 layers) answered prompts built from the shared data (AG News description → headline,
# SST-2 sentiment and QNLI yes/no with a short reason) greedily, once. For every generated token and every layer,
# the cache holds the top-1 token and a few logit statistics of two exit families: the **logit lens** (final norm
# and LM head on the layer's hidden state) and **tuned exits** (a trained affine translator per layer first,
# tuned-lens style, trained on train-split prompts only). Everything below is numpy on those caches
# (`data/llm/`): no model, no torch.
#
# * **Reliability**: does a layer's top-1 agree with the full model's token, and does its confidence say when?
# * **CALM-style early exit**: stop a token at the first layer whose confidence clears a threshold; agreement with
#   the full model against FLOPs (teacher forced on the full model's trajectory: an estimate, see below).
# * **Self-speculative decoding** (LayerSkip): draft with layer k, verify with the full model. The output *is* the
#   full model's; acceptance and FLOPs per (layer, draft length) are exact from the cache.
# * **The LLM as a multi-exit classifier**: zero-shot label words and probes per layer on SST-2 and AG News, on one
#   FLOPs axis with the encoder zoo, and a cascade that mixes them.
#
# Cost: FLOPs from the causal-LM cost model (`toolkit.analysis.llm_cost`: layers run with attention over the
# context, every exit head evaluated, K/V projections of skipped layers); thresholds and choices are made on `cal`,
# numbers reported on `test`.

# %%
# %matplotlib inline
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import toolkit
from toolkit.analysis import llm
from toolkit.analysis.compose import cascade_caches
from toolkit.analysis.llm_cache import concat_token_caches, load_llm_cache
from toolkit.analysis.sweep import sweep

warnings.filterwarnings("ignore", category=RuntimeWarning)
pd.set_option("display.precision", 4)
pd.set_option("display.width", 140)
DATA = Path(os.environ.get("TOOLKIT_NB_DATA", "../data" if Path("../data").exists() else "data"))
SETS = {"cal": ["agnews_headline", "sst2_sentiment"], "test": ["agnews_headline", "sst2_sentiment", "qnli_answer"]}
parts = {split: [load_llm_cache(DATA / "llm" / f"smollm2_{ps}-{split}.parquet") for ps in names]
         for split, names in SETS.items()}
cal, test = (concat_token_caches(parts[s]) for s in ("cal", "test"))
FAMILIES = [f for f in ("lens", "tuned") if f in test.family_names]
L = test.n_layers
origin = test.model["origin"]
pd.DataFrame([{"prompt set": c.meta["prompt_set"], "split": c.meta["split"], "prompts": c.n_examples,
               "tokens": c.n_tokens, "ended with EOS": c.meta["decoding"]["ended_with_eos"],
               **{k: round(v, 3) for k, v in c.meta["quality"].items()}} for s in parts.values() for c in s])

# %%
display(Markdown(f"""**Quantization caveat.** The weights are `{origin}`: the only decoder-only LLM installable
offline here is a 4-bit GGUF, so every number below is of that dequantized model, not of the published float
checkpoint. The full model's own greedy output is the reference throughout (agreement = same token as the last
layer), so quantization changes which tokens are produced, not the method."""))

# %% [markdown]
# ## Reliability of intermediate layers
#
# Agreement: how often a layer's exit names the same next token as the full model, on the full model's own
# trajectory. ECE: the layer's max-probability against that agreement (15 equal-width bins); AUROC: how well the
# max-probability separates agreeing from disagreeing tokens.

# %%
rel = pd.concat([llm.layer_reliability(test, f) for f in FAMILIES], ignore_index=True)
tuned_info = test.families.get("tuned", {}).get("training") or {}
fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
for f, g in rel.groupby("family", sort=False):
    ax[0].plot(g.layer, g.agreement, marker=".", label=f)
    ax[1].plot(g.layer, g.ece, marker=".", label=f)
    ax[2].plot(g.layer, g.auroc, marker=".", label=f)
for a, t in zip(ax, ("agreement with the full model", "ECE (max-prob vs agreement)", "AUROC (max-prob -> agreement)")):
    a.set_xlabel("layer")
    a.set_title(t)
    a.legend()
plt.tight_layout()
rel.pivot(index="layer", columns="family", values=["agreement", "ece", "auroc"]).iloc[::3].round(3)

# %% [markdown]
# ## CALM-style per-token early exit
#
# A token stops at the first checked layer whose max-probability clears the threshold; its cost counts the layers
# run at its context length, every exit evaluated on the way (an LM head over 49,152 tokens is 56.6 MFLOPs, about 8
# layers of SmolLM2-135M at short context; a tuned exit adds its translator), and the K/V projections that fill the
# skipped layers from the exited state (state propagation). Two designs: exits checked at every third layer, and a
# single checked layer (the layer and the threshold chosen on cal). **Caveat**: on the full model's own trajectory
# (teacher forced), a token that exits wrong leaves the context of later tokens unchanged here; a real decode would
# continue from the wrong token. These curves estimate CALM; the runtime measures the gap.

# %%
def cheapest(curve, target):
    ok = curve[curve.agreement >= target]
    return ok.threshold.iloc[ok.flops.argmin()], ok.speedup.max()


TARGET = 0.95
EVERY3 = list(range(3, L, 3))
curves, points = {}, []
for f in FAMILIES:
    s_cal, s_test = (llm.token_staged(c, f, checked_layers=EVERY3) for c in (cal, test))
    curves[f] = llm.calm_sweep(s_test)
    cal_curve = llm.calm_sweep(s_cal)
    for target in (0.9, TARGET, 0.99):  # cheapest global threshold reaching the target on cal, then test
        r = llm.calm_evaluate(s_test, [cheapest(cal_curve, target)[0]]).iloc[0]
        points.append({"family": f, "checked": "every 3rd", "rule": "global", "target on cal": target, **r})
        r = llm.calm_evaluate(s_test, llm.calm_layer_thresholds(s_cal, [target])).iloc[0]
        points.append({"family": f, "checked": "every 3rd", "rule": "per layer", "target on cal": target, **r})
    points.append({"family": f, "checked": "every 3rd", "rule": "oracle", **llm.calm_oracle(s_test)})
    single = {k: cheapest(llm.calm_sweep(llm.token_staged(cal, f, checked_layers=[k])), TARGET)
              for k in range(1, L)}
    k = max(single, key=lambda j: single[j][1])  # the single checked layer with the best speed-up on cal
    s_k = llm.token_staged(test, f, checked_layers=[k])
    r = llm.calm_evaluate(s_k, [single[k][0]]).iloc[0]
    points.append({"family": f, "checked": f"layer {k} only", "rule": "global", "target on cal": TARGET, **r})
    points.append({"family": f, "checked": f"layer {k} only", "rule": "oracle", **llm.calm_oracle(s_k)})
calm_points = pd.DataFrame(points)
fig, ax = plt.subplots(figsize=(7, 4.5))
for f, c in curves.items():
    ax.plot(c.speedup, c.agreement, label=f"{f}: every 3rd layer, global threshold (test)")
for (f, chk, rule), g in calm_points.groupby(["family", "checked", "rule"], sort=False):
    mark = {"global": "o", "per layer": "s", "oracle": "*"}[rule]
    ax.scatter(g.speedup, g.agreement, marker=mark, s=60, label=f"{f}, {chk}: {rule}")
ax.axvline(1.0, color="grey", lw=0.8)
ax.set_xlabel("FLOPs speed-up over the full model (per generated token)")
ax.set_ylabel("token agreement with the full model")
ax.set_ylim(0.5, 1.01)
ax.legend(fontsize=7)
calm_points.round(4)

# %% [markdown]
# ## Exact self-speculative decoding
#
# Draft `d` tokens with the exit at layer `k` (layers 1..k only), verify them with one full-model pass, keep the
# agreeing prefix plus the verifier's token. The output equals the full model's greedy output, and acceptance is
# exact from the cache. Speed-up = the full model's FLOPs for the same tokens / the blocks' FLOPs
# (`self_speculative_block_flops`: d draft steps with their exit heads, then layers k+1..L and the LM head for
# d + 1 positions). In FLOPs it cannot win: every token still passes all 30 layers once and each block evaluates
# 2d + 1 heads for at most d + 1 tokens. Its wall-clock lever is elsewhere: one verification pass for several
# tokens (`full_passes_per_token`; greedy decoding needs 1 per token), which pays when decoding is memory-bound and
# the draft is shallow. The pair with the best FLOPs speed-up is chosen on cal and reported on test; the right panel
# shows how many tokens a block yields per draft layer.

# %%
spec = {split: pd.concat([llm.self_speculative(c, f, draft_lengths=range(1, 9)) for f in FAMILIES], ignore_index=True)
        for split, c in (("cal", cal), ("test", test))}
best_cal = spec["cal"].loc[spec["cal"].groupby("family").speedup.idxmax()]
best = pd.DataFrame([spec["test"][(spec["test"].family == r.family) & (spec["test"].layer == r.layer)
                                  & (spec["test"].draft_length == r.draft_length)].iloc[0]
                     for _, r in best_cal.iterrows()])
fig, ax = plt.subplots(1, len(FAMILIES) + 1, figsize=(6 * (len(FAMILIES) + 1), 4))
for j, f in enumerate(FAMILIES):
    grid = spec["test"][spec["test"].family == f].pivot(index="draft_length", columns="layer", values="speedup")
    im = ax[j].imshow(grid.to_numpy(), aspect="auto", origin="lower", cmap="viridis",
                      extent=(0.5, grid.shape[1] + 0.5, 0.5, grid.shape[0] + 0.5))
    ax[j].set_title(f"{f}: FLOPs speed-up (test)")
    ax[j].set_xlabel("draft layer k")
    ax[j].set_ylabel("draft length d")
    plt.colorbar(im, ax=ax[j])
    for d in (1, 4, 8):
        g = spec["test"][(spec["test"].family == f) & (spec["test"].draft_length == d)]
        ax[-1].plot(g.layer, g.tokens_per_block, label=f"{f}, d = {d}")
ax[-1].set_xlabel("draft layer k")
ax[-1].set_ylabel("tokens emitted per block (test)")
ax[-1].legend(fontsize=8)
plt.tight_layout()
best.round(3)

# %%
import time  # noqa: E402  (the benchmark of the claim "all pairs in well under a second")

t0 = time.perf_counter()
for f in FAMILIES:
    llm.self_speculative(test, f, draft_lengths=range(1, 9))
sweep_s = time.perf_counter() - t0
n_pairs = len(FAMILIES) * (L - 1) * 8

# %% [markdown]
# ## The LLM as a multi-exit classifier, on the encoder zoo's FLOPs axis
#
# At the position after the chat prompt, each layer's hidden state gives a zero-shot answer (the label words' first
# tokens through the logit lens or the tuned exit, logsumexp over a class's surface forms) or a probe answer (a
# logistic regression per layer fitted on 300 train-split prompts). FLOPs: the whole prompt through layers 1..k plus
# each exit head evaluated; the encoders' FLOPs are those of `toolkit.analysis.cost`. Same test examples (ids) for
# all.

# %%
def stage_table(c, model):
    return pd.DataFrame({"model": model, "stage": c.stages, "accuracy": c.correct.mean(0),
                         "gflops": c.flops.mean(0) / 1e9})


clf = {}
fig, ax = plt.subplots(1, 2, figsize=(13, 4.2))
for a, task in zip(ax, ("sst2", "agnews")):
    rows = []
    for fam in ("zs_lens", "zs_tuned", "probe"):
        p = DATA / task / f"smollm2_{fam}-test.parquet"
        if p.exists():
            c = toolkit.load_cache(p)
            clf[(task, fam)] = c
            rows.append(stage_table(c, f"SmolLM2 {fam}"))
    ids = clf[(task, "probe")].example_ids
    for enc in ("minilm6_me", "mpnet_me"):
        c = toolkit.load_cache(DATA / task / f"{enc}-test.parquet")
        c = c.subset(np.flatnonzero(np.isin(c.example_ids, ids)))
        rows.append(stage_table(c, enc))
    tab = pd.concat(rows)
    for m, g in tab.groupby("model", sort=False):
        a.plot(g.gflops, g.accuracy, marker=".", label=m)
    a.set_xscale("log")
    a.set_xlabel("GFLOPs per example (log)")
    a.set_ylabel("accuracy (test)")
    a.set_title(f"{task}: {len(ids)} test examples")
    a.legend(fontsize=8)
    clf[(task, "table")] = tab
plt.tight_layout()
pd.concat([clf[(t, "table")].assign(task=t) for t in ("sst2", "agnews")]).query(
    "stage in ['L6', 'L12', 'L18', 'L24', 'L30']").round(3)

# %% [markdown]
# ### A cascade that mixes an encoder and the LLM
#
# MiniLM-L6 (its multi-exit model's last exit) first; examples it is unsure of go to the LLM's probe at its best cal
# layer. Aligned by `example_id`; the escalated examples pay for both models. Exact sweep over every threshold; the
# `cascade` column is test accuracy at the threshold most accurate on cal.

# %%
casc_rows = []
for task in ("sst2", "agnews"):
    enc_cal, enc_test = (toolkit.load_cache(DATA / task / f"minilm6_me-{s}.parquet") for s in ("cal", "test"))
    probe_cal = toolkit.load_cache(DATA / task / "smollm2_probe-cal.parquet")
    layer = probe_cal.stages[int(probe_cal.correct.mean(0).argmax())]
    probe_test = clf[(task, "probe")]
    c = cascade_caches([enc_test, probe_test], names=["minilm6", "smollm2"],
                       stages=[[enc_test.stages[-1]], [layer]])
    s = sweep(c)
    c_cal = cascade_caches([enc_cal, probe_cal], names=["minilm6", "smollm2"], stages=[[enc_cal.stages[-1]], [layer]])
    s_cal = sweep(c_cal)
    thr = s_cal.threshold.iloc[s_cal.accuracy.argmax()]  # the most accurate threshold on cal
    at = s.iloc[(s.threshold - thr).abs().argmin()]
    casc_rows.append({"task": task, "LLM probe layer (cal)": layer, "encoder alone": c.correct[:, 0].mean(),
                      "LLM probe alone": c.correct[:, 1].mean(), "cascade": at.accuracy,
                      "escalated": at.escalated, "cascade GFLOPs": at.flops / 1e9,
                      "oracle (either right)": c.correct.any(1).mean()})
cascades = pd.DataFrame(casc_rows)
cascades.round(3)

# %% [markdown]
# ## What the numbers say

# %%
def pick(family, checked, rule, target=None):
    r = calm_points[(calm_points.family == family) & (calm_points.checked.str.startswith(checked))
                    & (calm_points.rule == rule)]
    return r.iloc[0] if target is None else r[r["target on cal"] == target].iloc[0]


def gain(x):
    side = "fewer FLOPs than" if x > 1.005 else "more FLOPs than" if x < 0.995 else "about the FLOPs of"
    return f"{x:.2f}x ({side} the full model)"


r_lens, r_tuned = (rel[rel.family == f].set_index("layer") for f in ("lens", "tuned"))
mid = L // 2
lines = [
    f"* **Agreement with the full model** (test, {test.n_tokens:,} generated tokens of {test.n_examples} prompts): "
    f"the logit lens reaches {r_lens.agreement[mid]:.2f} at layer {mid} and {r_lens.agreement[L - 1]:.2f} at layer "
    f"{L - 1}; tuned exits reach {r_tuned.agreement[mid]:.2f} and {r_tuned.agreement[L - 1]:.2f}. "
    f"Mean ECE over layers: lens {r_lens.ece.mean():.3f}, tuned {r_tuned.ece.mean():.3f}; mean AUROC of "
    f"max-probability for agreement: lens {r_lens.auroc.mean():.3f}, tuned {r_tuned.auroc.mean():.3f}.",
]
if tuned_info:
    lines.append(f"* The tuned exits saw {tuned_info['positions_trained']:,} train-split positions in the KL stage "
                 f"(after a ridge start on {tuned_info.get('ridge_positions') or 0:,}), "
                 f"{tuned_info['wall_s'] / 60:.0f} min on shared CPUs.")
for f in FAMILIES:
    g, p, o = pick(f, "every", "global", TARGET), pick(f, "every", "per layer", TARGET), pick(f, "every", "oracle")
    one, one_o = pick(f, "layer", "global", TARGET), pick(f, "layer", "oracle")
    lines.append(f"* **CALM-style exit, {f}** (max-probability, target agreement {TARGET} chosen on cal): checking "
                 f"every third layer, a global threshold gives {g.agreement:.3f} agreement on test at {gain(g.speedup)}, "
                 f"per-layer thresholds {p.agreement:.3f} at {gain(p.speedup)}, and even the oracle (each token at its "
                 f"earliest agreeing checked layer) only {gain(o.speedup)}: each check costs an LM head. Checking "
                 f"{one.checked} (the best single layer on cal): {one.agreement:.3f} at {gain(one.speedup)} "
                 f"(oracle {one_o.speedup:.2f}x).")
for _, b in best.iterrows():
    lines.append(f"* **Self-speculative, {b.family}**: no (layer, draft length) saves FLOPs; the least costly on cal "
                 f"is layer {int(b.layer)}, draft length {int(b.draft_length)}: on test it accepts {b.acceptance:.2f} "
                 f"of drafted tokens and emits {b.tokens_per_block:.2f} tokens per block ({b.full_passes_per_token:.2f} "
                 f"verification passes per token instead of 1 full pass) at a FLOPs speed-up of {gain(b.speedup)}, "
                 f"with output identical to the full model.")
shallow = spec["test"][(spec["test"].draft_length == 4) & (spec["test"].layer == L // 2)].set_index("family")
lines.append("* At draft layer " + str(L // 2) + ", draft length 4, a block yields " + ", ".join(
    f"{shallow.tokens_per_block[f]:.2f} tokens ({f})" for f in FAMILIES) + ": tuned exits make shallow drafts "
    "acceptable more often than the logit lens.")
lines.append(f"* The whole self-speculative table ({n_pairs} (family, layer, draft length) cases) took "
             f"{sweep_s * 1000:.0f} ms here.")
for t in ("sst2", "agnews"):
    tab = clf[(t, "table")]
    pr = tab[tab.model == "SmolLM2 probe"]
    zs = tab[tab.model == "SmolLM2 zs_lens"]
    best_pr = pr.iloc[int(pr.accuracy.argmax())]
    lines.append(f"* **{t} classifier exits**: zero-shot through the lens {zs.accuracy.iloc[-1]:.3f} at the last layer "
                 f"({zs.gflops.iloc[-1]:.2f} GFLOPs); the best probe exit {best_pr.accuracy:.3f} at {best_pr.stage} "
                 f"({best_pr.gflops:.2f} GFLOPs); MiniLM-L6 fine-tuned "
                 f"{tab[tab.model == 'minilm6_me'].accuracy.iloc[-1]:.3f} at "
                 f"{tab[tab.model == 'minilm6_me'].gflops.iloc[-1]:.2f} GFLOPs.")
    zt = tab[tab.model == "SmolLM2 zs_tuned"]
    if len(zt):
        lines[-1] = lines[-1][:-1] + (f"; zero-shot through the tuned exits peaks at {zt.accuracy.max():.3f} "
                                      f"({zt.stage.iloc[int(zt.accuracy.argmax())]}).")
for _, c in cascades.iterrows():
    lines.append(f"* **Cascade on {c.task}**: MiniLM-L6 alone {c['encoder alone']:.3f}, the LLM probe at "
                 f"{c['LLM probe layer (cal)']} alone {c['LLM probe alone']:.3f}; MiniLM-L6 then the probe for "
                 f"{c.escalated:.0%} of examples: {c['cascade']:.3f} at "
                 f"{c['cascade GFLOPs']:.2f} GFLOPs per example (either right: {c['oracle (either right)']:.3f}).")
lines.append(f"* All of this is for `{origin}`; see the caveat above.")
display(Markdown("\n".join(lines)))
