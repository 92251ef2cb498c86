"""Plots of trade-offs, calibration and exits. Each takes ``ax=None``, returns the Axes (or a grid) and never
changes global style; axis labels carry units (FLOPs are per example, speed-ups are ratios of mean FLOPs)."""

from __future__ import annotations

import numpy as np

from .calibration import reliability_curve
from .scores import softmax, stage_confidence

FLOPS_LABEL = "mean GFLOPs per example"
SPEEDUP_LABEL = "speed-up (x, FLOPs of last stage / policy)"


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def plot_tradeoff(curves: dict, x: str = "flops", y: str = "metric", ax=None, oracle: dict | None = None,
                  points: dict | None = None, ylabel: str | None = None,
                  oracle_label: str = "oracle (earliest correct stage)"):
    """Metric against cost for several policies.

    ``curves``: name -> DataFrame with ``flops``/``speedup`` and ``metric`` (sweeps, or bootstrap frames with
    ``{y}_lo``/``{y}_hi`` columns, drawn as bands). ``oracle``: a :meth:`PolicyResult.summary` dict drawn as a star.
    ``points``: name -> summary dict (e.g. single models or chosen operating points) drawn as markers.
    """
    ax = _ax(ax)
    scale = 1e-9 if x == "flops" else 1.0
    for name, df in curves.items():
        d = df.sort_values(x)
        line, = ax.plot(d[x] * scale, d[y], label=name, lw=1.6, drawstyle="default")
        if f"{y}_lo" in d:
            ax.fill_between(d[x] * scale, d[f"{y}_lo"], d[f"{y}_hi"], color=line.get_color(), alpha=0.2, lw=0)
    for name, p in (points or {}).items():
        ax.plot(p[x] * scale, p[y], "o", ms=6, label=name)
    if oracle is not None:
        ax.plot(oracle[x] * scale, oracle[y], "*", ms=12, color="k", label=oracle_label)
    ax.set_xlabel(FLOPS_LABEL if x == "flops" else SPEEDUP_LABEL)
    ax.set_ylabel(ylabel or y)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_reliability(probs, labels, n_bins: int = 15, ax=None, label: str | None = None, show_counts: bool = True):
    """Top-label reliability diagram (equal-width bins, the calibration module's convention)."""
    ax = _ax(ax)
    rc = reliability_curve(probs, labels, n_bins)
    nz = rc["count"] > 0
    width = rc["hi"] - rc["lo"]
    ax.bar(rc["lo"][nz], rc["accuracy"][nz], width=width[nz], align="edge", alpha=0.6, edgecolor="k", lw=0.5,
           label=label or "accuracy in bin")
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
    if show_counts:
        ax2 = ax.twinx()
        ax2.plot((rc["lo"] + rc["hi"])[nz] / 2, rc["count"][nz] / rc["count"].sum(), ".-", color="C3", lw=0.8)
        ax2.set_ylabel("share of examples", color="C3", fontsize=8)
        ax2.tick_params(axis="y", labelsize=7, colors="C3")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper left")
    return ax


def reliability_grid(cache, temperatures=None, n_bins: int = 15, ncols: int = 3, axes=None):
    """One reliability diagram per stage; returns the array of Axes."""
    import matplotlib.pyplot as plt

    E = cache.n_stages
    if axes is None:
        nrows = -(-E // ncols)
        _, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    flat = np.ravel(axes)
    for e in range(E):
        t = 1.0 if temperatures is None else float(np.asarray(temperatures)[e])
        plot_reliability(softmax(cache.logits[:, e], t), cache.labels, n_bins, ax=flat[e], show_counts=False)
        flat[e].set_title(f"{cache.stages[e]}" + (f" (T={t:.2f})" if temperatures is not None else ""), fontsize=9)
    for a in flat[E:]:
        a.set_visible(False)
    return axes


def plot_exit_histogram(result, cache, ax=None, label: str | None = None):
    """Share of examples exiting at each stage for a :class:`PolicyResult`."""
    ax = _ax(ax)
    counts = np.bincount(result.exit_stage, minlength=cache.n_stages) / cache.n_examples
    ax.bar(np.arange(cache.n_stages), counts, label=label)
    ax.set_xticks(np.arange(cache.n_stages), cache.stages, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("exit stage")
    ax.set_ylabel("share of examples")
    return ax


def plot_score_distributions(cache, stage=0, score: str = "max_prob", temperature=None, ax=None, bins: int = 30):
    """Histogram of one stage's confidence for right and wrong predictions (seaborn)."""
    import pandas as pd
    import seaborn as sns

    ax = _ax(ax)
    e = cache.stages.index(stage) if isinstance(stage, str) else int(stage)
    conf = stage_confidence(cache.logits, score, temperature)[:, e]
    df = pd.DataFrame({"confidence": conf, "prediction": np.where(cache.correct[:, e], "right", "wrong")})
    sns.histplot(df, x="confidence", hue="prediction", bins=bins, stat="density", common_norm=False,
                 element="step", ax=ax)
    unit = {"max_prob": "max probability", "margin": "top-1 minus top-2 probability", "entropy": "-entropy (nats)",
            "energy": "-energy (logit units)", "elang": "logsumexp(softmax)"}[score]
    ax.set_xlabel(f"confidence at {cache.stages[e]}: {unit}")
    ax.set_ylabel("density")
    return ax
