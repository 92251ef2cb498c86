"""Drawing, apart from computing. Statistics come from the engine (:func:`~toolkit.analysis.engine.sweep`,
:func:`~toolkit.analysis.engine.bootstrap_bands`, :meth:`~toolkit.analysis.engine.OperatingPoint.evaluate`) and
:mod:`toolkit.analysis.metrics.calibration`; each function here takes those results, draws on ``ax`` (keyword-only; a new
figure when None), passes ``**kwargs`` to matplotlib, returns the Axes and never changes global style. Axis labels
carry units and name the reference every speed-up divides by.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from toolkit._api import keyword_options
from toolkit.analysis.engine import Bands, Curve, Evaluation
from toolkit.analysis.metrics.calibration import reliability_curve
from toolkit.analysis.scores.classification import SCORES, softmax, stage_confidence
from toolkit.caches.inputs import cost_label, cost_scale

FLOPS_LABEL = "mean GFLOPs per example"
BAR_LABEL_PT = 9  # bar labels of the reliability diagrams: readable at the figure's own size (points)


def speedup_label(reference: str | None, unit: str = "FLOPs") -> str:
    """Axis label of a speed-up against a named reference, in the cache's cost unit.

    >>> speedup_label("mpnet alone")
    'speed-up (x, mean FLOPs of mpnet alone / policy)'
    >>> speedup_label("SmolLM2 alone", "parameters x tokens")
    'speed-up (x, mean parameters x tokens of SmolLM2 alone / policy)'

    Predicted time names its latency profile on a second line:

    >>> speedup_label("MiniLM alone", "predicted ms (batch 1; p.json (vm, 1 threads))").splitlines()
    ['speed-up (x, mean predicted ms of MiniLM alone / policy)', 'latency profile: batch 1; p.json (vm, 1 threads)']
    """
    ref = reference or "the reference"
    if unit.startswith("predicted ms") and "(" in unit:  # cost.latency's unit: "predicted ms[ per token] (...)"
        head, _, profile = unit.partition(" (")
        return f"speed-up (x, mean {head} of {ref} / policy)\nlatency profile: {profile.removesuffix(')')}"
    return f"speed-up (x, mean {unit} of {ref} / policy)"


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def _frame(curve) -> pd.DataFrame:
    return curve.frame if isinstance(curve, (Curve, Bands)) else curve


def _unit(result) -> str:
    """The cost unit a curve, bands or evaluation was computed in (the cache's ``meta["cost_unit"]``)."""
    return getattr(result, "cost_unit", None) or (getattr(result, "meta", None) or {}).get("cost_unit", "FLOPs")


def _scale(x: str, unit: str = "FLOPs") -> float:
    return 1 / cost_scale(unit)[0] if x == "flops" else 1.0


def cost_axis_label(unit: str = "FLOPs") -> str:
    """``"mean GFLOPs per example"`` for FLOPs, ``"mean cost per example (<unit>)"`` for any other unit."""
    return FLOPS_LABEL if unit == "FLOPs" else f"mean {cost_label(unit)}"


def plot_curve(curve, *, x: str = "speedup", y: str | None = None, ax=None, label: str | None = None,
               band_alpha: float = 0.2, **kwargs):
    """One curve: a :class:`Curve`, :class:`Bands` (drawn with its ``{y}_lo``/``{y}_hi`` band) or a frame.

    ``x``: ``"speedup"`` or ``"flops"`` (the cost: GFLOPs, or the cache's own cost unit); ``y``: a metric column
    (default the curve's headline
    metric). ``kwargs`` go to ``ax.plot``.
    """
    ax = _ax(ax)
    y = y or getattr(curve, "metric", None)
    if y is None:
        raise ValueError("pass y= (the metric column) for a plain frame")
    d = _frame(curve).sort_values(x)
    s = _scale(x, _unit(curve))
    line, = ax.plot(d[x] * s, d[y], label=label, **{"lw": 1.6, **kwargs})
    if f"{y}_lo" in d:
        ax.fill_between(d[x] * s, d[f"{y}_lo"], d[f"{y}_hi"], color=line.get_color(), alpha=band_alpha, lw=0)
    return ax


def plot_point(point, *, x: str = "speedup", y: str | None = None, ax=None, label: str | None = None,
               errorbars: bool = True, **kwargs):
    """One operating point: an :class:`Evaluation` (with error bars from its intervals) or a mapping of columns.
    ``kwargs`` go to ``ax.errorbar``."""
    ax = _ax(ax)
    if isinstance(point, Evaluation):
        y = y or point.metric
        px, py = (point.flops if x == "flops" else point.speedup), point.metrics[y]
        iv = point.intervals if errorbars else {}
    else:
        px, py, iv = point[x], point[y], {}
    s = _scale(x, _unit(point))
    xerr = np.array([[px - iv[x][0]], [iv[x][1] - px]]) * s if x in iv else None
    yerr = np.array([[py - iv[y][0]], [iv[y][1] - py]]) if y in iv else None
    ax.errorbar([px * s], [py], xerr=xerr, yerr=yerr, label=label, **{"fmt": "o", "ms": 6, "capsize": 3, **kwargs})
    return ax


BELOW_REFERENCE = "below 1x: costs more than the reference"


def speedup_axis(ax, *, reference: str | None = None, shade: bool = True, margin: float = 1.1):
    """Log-scale a drawn speed-up axis (base 2: ticks 1x 2x 4x ..., equal steps for equal ratios) over the data
    already on ``ax``, and shade the region below 1x (policies that cost more than ``reference``) with a legend
    entry saying so. Only ``ax`` changes; returns it."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.dataLim.intervalx
    if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0):
        lo, hi = 1.0, 2.0  # nothing (positive) drawn yet
    left, right = min(lo, 1.0) / margin, max(hi, 1.0) * margin
    ax.set_xscale("log", base=2)
    ax.set_xlim(left, right)
    times = FuncFormatter(lambda v, _: f"{v:g}x")
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(times)
    ax.xaxis.set_minor_locator(LogLocator(base=2, subs=(1.5,)))  # 1.5x 3x 6x ...: labelled on short ranges
    ax.xaxis.set_minor_formatter(times if right / left < 6 else NullFormatter())
    if shade:
        ax.axvspan(left, 1.0, color="0.6", alpha=0.15, lw=0,
                   label=BELOW_REFERENCE.replace("the reference", reference) if reference else BELOW_REFERENCE)
        ax.set_xlim(left, right)  # the span does not widen the view
    return ax


def plot_tradeoff(curves: Mapping, *, x: str = "speedup", y: str | None = None, ax=None, oracle=None,
                  points: Mapping | None = None, ylabel: str | None = None,
                  oracle_label: str = "oracle (earliest best stage)", reference: str | None = None,
                  log_speedup: bool = True, **kwargs):
    """Metric against cost for several policies, with bands where given.

    Parameters
    ----------
    curves : mapping of str to Curve, Bands or DataFrame
        Legend label -> curve.
    x : {"speedup", "flops"}
    y : str, optional
        Metric column; default the first curve's headline metric.
    oracle : Evaluation or mapping, optional
        Drawn as a black star.
    points : mapping of str to Evaluation or mapping, optional
        Operating points or single models, drawn as markers.
    reference : str, optional
        Named in the speed-up axis label; default the curves' common reference.
    log_speedup : bool
        With ``x="speedup"``: a log axis (base 2, ticks 1x 2x 4x ...) with the region below 1x shaded
        (:func:`speedup_axis`); False keeps matplotlib's linear axis.
    **kwargs
        Passed to every ``ax.plot`` of a curve.
    """
    ax = _ax(ax)
    first = next(iter(curves.values()), None)
    y = y or getattr(first, "metric", None) or "metric"
    refs = {getattr(c, "reference", None) for c in curves.values()} - {None}
    for name, c in curves.items():
        plot_curve(c, x=x, y=y, ax=ax, label=name, **kwargs)
    for name, p in (points or {}).items():
        plot_point(p, x=x, y=y, ax=ax, label=name)
    if oracle is not None:
        plot_point(oracle, x=x, y=y, ax=ax, label=oracle_label, errorbars=False, fmt="*", ms=12, color="k")
    reference = reference or (refs.pop() if len(refs) == 1 else None)
    if x == "flops":
        ax.set_xlabel(cost_axis_label(_unit(first)))
    else:
        ax.set_xlabel(speedup_label(reference, _unit(first)))  # the 1x 2x 4x ticks say the scale is log
    if x == "speedup" and log_speedup:
        speedup_axis(ax, reference=reference)
    ax.set_ylabel(ylabel or y)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_reliability(curve: pd.DataFrame, *, ax=None, label: str | None = None, show_counts: bool = True,
                     xmin: float | None = None, legend: bool = True, **kwargs):
    """Top-label reliability diagram of a :func:`~toolkit.analysis.metrics.calibration.reliability_curve` frame
    (equal-width bins, the calibration module's convention). ``kwargs`` go to ``ax.bar``.

    ``show_counts``: each bar is labelled with its number of examples (at its foot). ``xmin``: left end of the
    confidence axis,
    default the lower edge of the first non-empty bin (top-label confidence is at least 1/C, so the bins below are
    always empty and are not drawn).
    """
    ax = _ax(ax)
    rc = curve
    nz = (rc["count"] > 0).to_numpy()
    width = rc["hi"] - rc["lo"]
    ax.bar(rc["lo"][nz], rc["accuracy"][nz], width=width[nz], label=label or "accuracy in bin",
           **{"align": "edge", "alpha": 0.6, "edgecolor": "k", "lw": 0.5, **kwargs})
    lo = float(rc["lo"][nz].min()) if nz.any() else 0.0
    lo = lo if xmin is None else xmin
    ax.plot([lo, 1], [lo, 1], "--", color="gray", lw=1, label="perfect calibration")
    if show_counts:
        for x0, w, n in zip(rc["lo"][nz], width[nz], rc["count"][nz]):
            ax.text(x0 + w / 2, 0.02, f"n={int(n)}", ha="center", va="bottom", fontsize=BAR_LABEL_PT, rotation=90)
    ax.set_xlim(lo, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy in bin")
    if legend:
        ax.legend(fontsize=7, loc="upper left")
    return ax


@keyword_options
def reliability_grid(cache, *, temperatures=None, n_bins: int = 15, ncols: int = 3, axes=None,
                     show_counts: bool = True, **kwargs):
    """One reliability diagram per stage of a classification cache (bar labels: examples per bin; the confidence
    axis starts at 1/C, the lowest top-label confidence; the legend on the first only); returns the array of
    Axes."""
    import matplotlib.pyplot as plt

    E = cache.n_stages
    if axes is None:
        nrows = -(-E // ncols)
        _, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    flat = np.ravel(axes)
    lo = np.floor(n_bins / cache.n_classes) / n_bins  # edge of the bin holding 1/C
    for e in range(E):
        t = 1.0 if temperatures is None else float(np.asarray(temperatures)[e])
        rc = reliability_curve(softmax(cache.logits[:, e], temperature=t), cache.labels, n_bins=n_bins)
        plot_reliability(rc, ax=flat[e], show_counts=show_counts, xmin=lo, legend=e == 0, **kwargs)
        flat[e].set_title(f"{cache.stages[e]}" + (f" (T={t:.2f})" if temperatures is not None else ""), fontsize=9)
    for a in flat[E:]:
        a.set_visible(False)
    return axes


@keyword_options
def score_distributions(cache, *, stage=0, score: str = "max_prob", temperature=None) -> pd.DataFrame:
    """One stage's confidence per example and whether it is right (the data of
    :func:`plot_score_distributions`); ``attrs``: stage name and score unit."""
    e = cache.stages.index(stage) if isinstance(stage, str) else int(stage)
    conf = stage_confidence(cache.logits, score=score, temperature=temperature)[:, e]
    df = pd.DataFrame({"confidence": conf, "prediction": np.where(cache.correct[:, e], "right", "wrong")})
    df.attrs.update(stage=cache.stages[e], unit=SCORES[score].confidence_unit)
    return df


def plot_score_distributions(frame: pd.DataFrame, *, ax=None, bins: int = 30, **kwargs):
    """Histogram of a :func:`score_distributions` frame for right and wrong predictions (seaborn);
    ``kwargs`` go to ``seaborn.histplot``."""
    import seaborn as sns

    ax = _ax(ax)
    sns.histplot(frame, x="confidence", hue="prediction", ax=ax, **{"bins": bins, "stat": "density",
                                                                     "common_norm": False, "element": "step",
                                                                     **kwargs})
    ax.set_xlabel(f"confidence at {frame.attrs.get('stage', 'stage')}: {frame.attrs.get('unit', '')}")
    ax.set_ylabel("density")
    return ax
