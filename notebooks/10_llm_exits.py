# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# A token stops at the first layer whose max-probability clears the threshold; its cost counts the layers run at
# its context length, every exit head evaluated on the way (an LM head is 56.6 MFLOPs, about 8 layers of
# SmolLM2-135M at short context), and the K/V projections that fill the skipped layers from the exited state
# (state propagation). Checking every layer makes the heads dominate, so exits are checked at every third layer.
# **Caveat**: on the full model's own trajectory (teacher forced), a token that exits wrong leaves the context of
# later tokens unchanged here; a real decode would continue from the wrong token. These curves estimate CALM; the
# runtime measures the gap.

# %%
CHECKED = list(range(3, L, 3))
curves, points = {}, []
for f in FAMILIES:
    s_cal = llm.token_staged(cal, f, checked_layers=CHECKED)
    s_test = llm.token_staged(test, f, checked_layers=CHECKED)
    curves[f] = llm.calm_sweep(s_test)
    cal_curve = llm.calm_sweep(s_cal)
    for target in (0.9, 0.95, 0.99):  # cheapest global threshold reaching the target on cal, then test
        ok = cal_curve[cal_curve.agreement >= target]
        thr = ok.threshold.iloc[ok.flops.argmin()]
        r = llm.calm_evaluate(s_test, [thr]).iloc[0]
        points.append({"family": f, "rule": "global", "target on cal": target, "threshold": thr, **r})
    for target in (0.9, 0.95, 0.99):  # per-layer thresholds: each layer as reliable as the target on cal
        th = llm.calm_layer_thresholds(s_cal, [target])
        r = llm.calm_evaluate(s_test, th).iloc[0]
        points.append({"family": f, "rule": "per layer", "target on cal": target, "threshold": np.nan, **r})
    points.append({"family": f, "rule": "oracle", **llm.calm_oracle(s_test)})
calm_points = pd.DataFrame(points)
fig, ax = plt.subplots(figsize=(7, 4.5))
for f, c in curves.items():
    ax.plot(c.speedup, c.agreement, label=f"{f}: global threshold (test)")
for (f, rule), g in calm_points[calm_points.rule != "oracle"].groupby(["family", "rule"], sort=False):
    ax.scatter(g.speedup, g.agreement, marker="o" if rule == "global" else "s", label=f"{f}: {rule}, chosen on cal")
orc = calm_points[calm_points.rule == "oracle"]
ax.scatter(orc.speedup, orc.agreement, marker="*", s=120, c="k", label="oracle (earliest agreeing layer)")
ax.set_xlabel("FLOPs speed-up over the full model (per generated token)")
ax.set_ylabel("token agreement with the full model")
ax.set_ylim(0.5, 1.01)
ax.legend(fontsize=8)
calm_points.round(4)

# %% [markdown]
# ## Exact self-speculative decoding
#
# Draft `d` tokens with the exit at layer `k` (layers 1..k only), verify them with one full-model pass, keep the
# agreeing prefix plus the verifier's token. The output equals the full model's greedy output, and acceptance is
# exact from the cache. Speed-up = the full model's FLOPs for the same tokens / the blocks' FLOPs
# (`self_speculative_block_flops`: d draft steps with their exit heads, then layers k+1..L and the LM head for
# d + 1 positions). The pair is chosen on cal and reported on test.

# %%
spec = {split: pd.concat([llm.self_speculative(c, f, draft_lengths=range(1, 9)) for f in FAMILIES], ignore_index=True)
        for split, c in (("cal", cal), ("test", test))}
best_cal = spec["cal"].loc[spec["cal"].groupby("family").speedup.idxmax()]
best = []
for _, r in best_cal.iterrows():
    t = spec["test"]
    best.append(t[(t.family == r.family) & (t.layer == r.layer) & (t.draft_length == r.draft_length)].iloc[0])
best = pd.DataFrame(best)
fig, ax = plt.subplots(1, len(FAMILIES), figsize=(6 * len(FAMILIES), 4), squeeze=False)
for a, f in zip(ax[0], FAMILIES):
    grid = spec["test"][spec["test"].family == f].pivot(index="draft_length", columns="layer", values="speedup")
    im = a.imshow(grid.to_numpy(), aspect="auto", origin="lower", cmap="viridis",
                  extent=(0.5, grid.shape[1] + 0.5, 0.5, grid.shape[0] + 0.5))
    a.set_title(f"{f}: FLOPs speed-up (test)")
    a.set_xlabel("draft layer k")
    a.set_ylabel("draft length d")
    plt.colorbar(im, ax=a)
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
# layer. Aligned by `example_id`; the escalated examples pay for both models. Exact sweep over every threshold.

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
                      "LLM probe alone": c.correct[:, 1].mean(), "cascade at cal's best threshold": at.accuracy,
                      "escalated": at.escalated, "cascade GFLOPs": at.flops / 1e9,
                      "oracle (either right)": c.correct.any(1).mean()})
cascades = pd.DataFrame(casc_rows)
cascades.round(3)

# %% [markdown]
# ## What the numbers say

# %%
def pick(family, rule, target):
    r = calm_points[(calm_points.family == family) & (calm_points.rule == rule)
                    & (calm_points["target on cal"] == target)]
    return r.iloc[0]


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
    g, p = pick(f, "global", 0.95), pick(f, "per layer", 0.95)
    o = calm_points[(calm_points.family == f) & (calm_points.rule == "oracle")].iloc[0]
    lines.append(f"* **CALM-style exit, {f}** (checked every third layer, target agreement 0.95 on cal): a global "
                 f"threshold gives {g.agreement:.3f} agreement on test at a FLOPs speed-up of {g.speedup:.2f}x; "
                 f"per-layer thresholds {p.agreement:.3f} at {p.speedup:.2f}x; the oracle (every token at its "
                 f"earliest agreeing checked layer) would reach {o.speedup:.2f}x.")
for _, b in best.iterrows():
    lines.append(f"* **Self-speculative, {b.family}**: the best pair on cal is layer {int(b.layer)}, draft length "
                 f"{int(b.draft_length)}; on test it accepts {b.acceptance:.2f} of drafted tokens, emits "
                 f"{b.tokens_per_block:.2f} tokens per block, and predicts a {b.speedup:.2f}x FLOPs speed-up, with "
                 f"output identical to the full model.")
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
lines.append(f"* All of this is for `{origin}`; see the caveat above.")
display(Markdown("\n".join(lines)))
