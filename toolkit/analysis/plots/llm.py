"""Figures of the per-token LLM analyses (notebook 10), drawn from their result objects; computation stays in
:mod:`toolkit.analysis.llm.intervals` and :mod:`toolkit.analysis.llm.exits`. Each function draws into ``axes`` (made when
None) and returns the figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

import toolkit.analysis.plots.curves as plots
from toolkit.analysis.llm.exits import layer_reliability_curve
from toolkit.analysis.llm.intervals import ORACLE, LayerTable


def _axes(axes, shape, figsize):
    if axes is not None:
        axes = np.asarray(axes)
        return axes.flat[0].figure, axes
    import matplotlib.pyplot as plt

    return plt.subplots(*shape, figsize=figsize, constrained_layout=True)


def plot_layer_reliability(table: LayerTable, cache, diagram_layer: int, *, axes=None):
    """Agreement and ECE per layer with 95% bands (top) and each family's reliability diagram at
    ``diagram_layer`` with token counts (bottom): ``axes`` ``[2, 2]``."""
    fig, ax = _axes(axes, (2, 2), (13, 8.5))
    per_layer = table.frame
    for f in table.families:
        for a, m in zip(ax[0], ("agreement", "ece")):
            a.plot(per_layer.index, per_layer[f"{f} {m}"], marker=".", label=f)
            a.fill_between(per_layer.index, per_layer[f"{f} {m} lo"], per_layer[f"{f} {m} hi"], alpha=0.25)
    for a, t in zip(ax[0], ("agreement with the full model's token", "ECE (max-probability vs agreement)")):
        a.set_xlabel("layer")
        a.set_title(f"{t} (test, 95% band over prompts)")
        a.legend()
        a.grid(alpha=0.3)
    for a, f in zip(ax[1], table.families):
        plots.plot_reliability(layer_reliability_curve(cache, f, diagram_layer), ax=a,
                               label=f"{f}: agreement in bin", xmin=0.0)
        a.set_ylabel("agreement with the full model in bin")
        a.set_title(f"{f}, layer {diagram_layer}: reliability (bars labelled with token counts)")
    return fig


def plot_calm_frontiers(curves: Mapping, points: pd.DataFrame, designs: Mapping, *, families, targets,
                        ymin: float = 0.8, axes=None):
    """Per design (one panel each, ``designs`` ``{(family, design): checked layers}``): each family's agreement
    against speed-up at every threshold (``curves[family, design]``, an engine sweep frame), the points chosen on
    cal with their 95% error bars and the oracle (``points``: the CALM points' frames with a ``design`` column),
    dotted lines at the ``targets``."""
    names = list(dict.fromkeys(d for _, d in designs))
    fig, ax = _axes(axes, (1, len(names)), (14, 5))
    for a, design in zip(np.atleast_1d(ax), names):
        right = 1.0
        for i, f in enumerate(families):
            c = curves[f, design]
            a.plot(c.speedup, c.agreement, color=f"C{i}", lw=1.4,
                   label=f"{f}, {'layers' if len(designs[f, design]) > 1 else 'layer'} "
                         f"{','.join(map(str, designs[f, design]))}: every threshold (test)")
            sel = points[(points.family == f) & (points.design == design) & (points["evaluated on"] == "test")]
            for rule, mark in (("global", "o"), ("per layer", "s")):
                g = sel[sel.rule == rule]
                if len(g):
                    a.errorbar(g.speedup, g.agreement, xerr=[g.speedup - g["speedup lo"], g["speedup hi"] - g.speedup],
                               yerr=[g.agreement - g["agreement lo"], g["agreement hi"] - g.agreement], fmt=mark,
                               color=f"C{i}", mfc="white", ms=7, capsize=2,
                               label=f"{f}: {rule} threshold chosen on cal")
            o = sel[sel.rule == ORACLE].iloc[0]
            a.plot([o.speedup], [o.agreement], "*", color=f"C{i}", mec="k", ms=14, label=f"{f}: {ORACLE}")
            right = max(right, c.speedup[c.agreement >= ymin].max(), o.speedup)
        for t in targets:
            a.axhline(t, color="gray", ls=":", lw=0.8)
        a.axvline(1.0, color="k", lw=0.8)
        a.set_xlabel("speed-up (x, FLOPs of the full model decoding greedily / policy)")
        a.set_ylabel("agreement with the full model's token (test)")
        a.set_title(f"CALM-style exit, {design}" + (" (chosen on cal)" if design == "one checked layer" else ""))
        a.set_ylim(ymin, 1.005)
        a.set_xlim(0.25, right * 1.05)
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return fig


def plot_self_speculative_grid(cases: pd.DataFrame, chosen: Mapping, *, families, axes=None):
    """One heatmap per family of the FLOPs speed-up over (draft layer, draft length) with the pair chosen on cal
    (``chosen[family]``, a :func:`~toolkit.analysis.llm.exits.choose_self_speculative` choice) starred, and the
    memory-bound speed-up against the draft layer at draft lengths 1, 4 and 8 (``cases``: the rows of
    :func:`~toolkit.analysis.llm.exits.self_speculative`): ``axes`` ``[len(families) + 1]``."""
    fig, ax = _axes(axes, (1, len(families) + 1), (18, 4.6))
    last = ax[len(families)]
    for j, f in enumerate(families):
        grid = cases[cases.family == f].pivot(index="draft_length", columns="layer", values="speedup")
        im = ax[j].imshow(grid.to_numpy(), aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                          extent=(0.5, grid.shape[1] + 0.5, grid.index.min() - 0.5, grid.index.max() + 0.5))
        ax[j].plot([chosen[f].layer], [chosen[f].draft_length], "r*", ms=14, label="chosen on cal")
        ax[j].set_title(f"{f}: FLOPs speed-up over the full model (test)")
        ax[j].set_xlabel("draft layer k")
        ax[j].set_ylabel("draft length d")
        ax[j].legend(loc="upper left", fontsize=8)
        fig.colorbar(im, ax=ax[j])
        for d, ls in ((1, "-"), (4, "--"), (8, ":")):
            g = cases[(cases.family == f) & (cases.draft_length == d)]
            last.plot(g.layer, g.memory_bound_speedup, ls=ls, color=f"C{j}", label=f"{f}, d = {d}")
    last.axhline(1.0, color="k", lw=0.8)
    last.set_xlabel("draft layer k")
    last.set_ylabel("memory-bound speed-up (weights read)")
    last.set_title("full model's weight reads / self-speculative reads, per token (test)")
    last.legend(fontsize=8)
    last.grid(alpha=0.3)
    return fig


def plot_measured_vs_predicted(bench: pd.DataFrame, *, ax=None):
    """Measured wall-clock speed-up (median, min-to-max bars) against the FLOPs prediction per run of
    :func:`toolkit.zoo.llm_results.runtime_runs`, one colour per (device, batch), batch sizes sharing a prediction
    drawn slightly apart, with the diagonal where measured equals predicted."""
    fig, ax = _axes(None, (1, 1), (7.5, 5.5)) if ax is None else (ax.figure, ax)
    marks = {"self_speculative": "o", "calm": "s"}
    top = float(np.nanmax(bench[["predicted (FLOPs)", "measured max"]].to_numpy())) * 1.1
    groups = list(bench.groupby(["device", "batch"], sort=True))
    for i, ((dev, batch), g) in enumerate(groups):
        shift = (i - (len(groups) - 1) / 2) * 0.01 * top  # side by side where batch sizes share a prediction
        for method, h in g.groupby("method"):
            ax.errorbar(h["predicted (FLOPs)"] + shift, h.measured, yerr=[h.measured - h["measured min"],
                                                                   h["measured max"] - h.measured],
                        fmt=marks.get(method, "^"), color=f"C{i}", capsize=3, label=f"{method}, {dev}, batch {batch}")
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="measured = predicted")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("FLOPs-predicted speed-up over greedy decoding (x)")
    ax.set_ylabel("measured wall-clock speed-up (x, median; bars: min to max)")
    ax.set_title("real decoders: measured against predicted")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def plot_calm_time(curves: Mapping, *, ymin: float = 0.5, axes=None):
    """Per view (one panel each, ``curves`` ``{title: CalmTimeCurves}``), agreement against speed-up at every
    threshold on three cost axes: FLOPs against the full model, and predicted time (a latency profile) against
    greedy decoding at each batch size."""
    fig, ax = _axes(axes, (1, len(curves)), (7 * len(curves), 4.8))
    for a, (title, c) in zip(np.atleast_1d(ax), curves.items()):
        f = c.to_frame()
        for i, (name, g) in enumerate(f.groupby("cost", sort=False)):
            a.plot(g.speedup, g.agreement, color=f"C{i}", lw=1.4, ls="-" if i else "--", label=name)
        plots.speedup_axis(a, reference="its reference")
        a.set_xlabel("speed-up (x; FLOPs: full model / policy; predicted time: greedy decoding / policy), log scale")
        a.set_ylabel("agreement with the full model's token")
        a.set_ylim(ymin, 1.005)
        a.set_title(f"{title}: {c.label}", fontsize=10)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return fig
