"""Calibration metrics and temperature scaling (numpy/scipy only), following scikit-learn's calibration module.

Binning convention (one, everywhere): ``n_bins`` equal-width bins ``[a, b)`` over [0, 1], the last closed at 1.0;
a confidence c goes to bin ``floor(c * n_bins)`` (clipped to the last bin), so a confidence exactly on an edge
belongs to the upper bin and 1.0 to the last. ``binning="quantile"`` uses equal-mass bins (edges at confidence
quantiles, same half-open rule). ``mode="top-label"`` uses the top-label confidence and correctness (also for two
classes); ``mode="classwise"`` averages the per-class ECE of ``p[:, k]`` against ``label == k`` over classes.

>>> import numpy as np
>>> p = np.array([.25, .25, .55, .75, .75]); y = np.array([0, 0, 1, 1, 1])
>>> round(ece(p, y, n_bins=2), 4)  # torchmetrics' binary example
0.29
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from toolkit._api import keyword_options, renamed

BINNINGS = ("uniform", "quantile")
NORMS = ("l1", "l2", "max")
MODES = ("top-label", "classwise")


def _check_order(preds, labels, what: str = "probs", other: str = "labels") -> None:
    """Refuse ``(labels, preds)``: integers where the predictions go and real numbers where the labels go."""
    a, b = np.asarray(preds), np.asarray(labels)
    if (np.issubdtype(a.dtype, np.integer) or a.dtype == bool) and np.issubdtype(b.dtype, np.floating) \
            and (b.ndim > a.ndim or b.ndim == a.ndim == 1):
        raise TypeError(f"got integer {what} and real-valued {other}: the arguments look swapped; the analysis side "
                        f"takes predictions first, labels second ({what}, {other}) since 0.3")


def _check_probs(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    _check_order(probs, labels)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim == 1:  # binary: probability of class 1
        p = np.stack([1 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be [N, C] (or [N] for two classes), got shape {np.shape(probs)}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels shape {y.shape} does not match probs {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs contain NaN or inf")
    if (p < 0).any() or (p > 1).any() or not np.allclose(p.sum(1), 1.0, atol=1e-5):
        raise ValueError("probs must be in [0, 1] and sum to 1 over classes (pass softmax(logits), not logits)")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be integers in 0..{p.shape[1] - 1}")
    return p, y


@keyword_options
def bin_index(conf, *, n_bins: int = 15, binning: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """Bin of each confidence and the bin edges, per the module's convention."""
    if binning not in BINNINGS:
        raise ValueError(f"unknown binning {binning!r}; choose one of {BINNINGS}")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = np.asarray(conf, dtype=np.float64)
    if binning == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        return np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1), edges
    edges = np.quantile(conf, np.linspace(0, 1, n_bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    idx = np.clip(np.searchsorted(edges[1:-1], conf, side="right"), 0, n_bins - 1)
    return idx, edges


def _binned_gap(conf, correct, n_bins, binning, norm) -> float:
    idx, _ = bin_index(conf, n_bins=n_bins, binning=binning)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    s_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    s_acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
    nz = count > 0
    gap = np.abs(s_acc[nz] - s_conf[nz]) / count[nz]
    w = count[nz] / count.sum()
    if norm == "l1":
        return float((w * gap).sum())
    if norm == "l2":
        return float(np.sqrt((w * gap ** 2).sum()))
    return float(gap.max())


@keyword_options
def ece(probs, labels, *, n_bins: int = 15, binning: str = "uniform", norm: str = "l1", mode: str = "top-label") -> float:
    """Expected calibration error; ``norm="max"`` is the MCE. See the module docstring for the convention.

    >>> p = np.array([[.25, .20, .55], [.55, .05, .40], [.10, .30, .60], [.90, .05, .05]])
    >>> round(ece(p, np.array([0, 1, 2, 0]), n_bins=3), 4)  # torchmetrics' multiclass example
    0.2
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    p, y = _check_probs(probs, labels)
    if mode == "top-label":
        return _binned_gap(p.max(1), p.argmax(1) == y, n_bins, binning, norm)
    return float(np.mean([_binned_gap(p[:, k], y == k, n_bins, binning, norm) for k in range(p.shape[1])]))


@keyword_options
def confidence_ece(confidence, correct, *, n_bins: int = 15, binning: str = "uniform", norm: str = "l1") -> float:
    """ECE of any confidence in [0, 1] against any 0/1 outcome (e.g. an LLM layer's max-probability against
    agreement with the final layer), with this module's binning convention.

    >>> round(confidence_ece(np.array([.25, .25, .55, .75, .75]), np.array([0, 0, 1, 1, 1]), n_bins=2), 4)
    0.29
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    _check_order(confidence, correct, "confidence", "correct")
    c = np.asarray(confidence, dtype=np.float64)
    k = np.asarray(correct)
    if c.ndim != 1 or k.shape != c.shape or not len(c):
        raise ValueError(f"confidence and correct must be matching non-empty 1-d arrays, got {c.shape} and {k.shape}")
    if not np.isfinite(c).all() or (c < 0).any() or (c > 1).any():
        raise ValueError("confidence must be finite and in [0, 1]")
    return _binned_gap(c, k.astype(bool), n_bins, binning, norm)


def brier(probs, labels) -> float:
    """Multiclass Brier score: mean over examples of ``sum_k (p_k - [y = k])^2`` (0 best, 2 worst)."""
    p, y = _check_probs(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(((p - onehot) ** 2).sum(1).mean())


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the gold class (nats); probabilities clipped at 1e-15."""
    p, y = _check_probs(probs, labels)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-15, None)).mean())


@keyword_options
def nll_logits(logits, labels, *, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the gold class under ``softmax(logits / temperature)``."""
    _check_order(logits, labels, "logits")
    z = np.asarray(logits, dtype=np.float64) / temperature
    return float(-log_softmax(z, axis=-1)[np.arange(len(labels)), labels].mean())


@keyword_options
def reliability_curve(probs, labels, *, n_bins: int = 15, binning: str = "uniform") -> pd.DataFrame:
    """Per-bin data of a top-label reliability diagram: edges, count, mean confidence, accuracy, gap."""
    p, y = _check_probs(probs, labels)
    return confidence_reliability_curve(p.max(1), p.argmax(1) == y, n_bins=n_bins, binning=binning)


@keyword_options
def confidence_reliability_curve(confidence, correct, *, n_bins: int = 15, binning: str = "uniform") -> pd.DataFrame:
    """:func:`reliability_curve`'s frame for any confidence in [0, 1] against any 0/1 outcome (e.g. an LLM layer's
    max-probability against agreement with the final layer).

    >>> confidence_reliability_curve(np.array([.25, .25, .75]), np.array([0, 1, 1]), n_bins=2)[["count", "accuracy"]]
       count  accuracy
    0      2       0.5
    1      1       1.0
    """
    _check_order(confidence, correct, "confidence", "correct")
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct).astype(np.float64)
    if conf.ndim != 1 or correct.shape != conf.shape or not len(conf):
        raise ValueError(f"confidence and correct must be matching non-empty 1-d arrays, got {conf.shape} and "
                         f"{correct.shape}")
    if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidence must be finite and in [0, 1]")
    idx, edges = bin_index(conf, n_bins=n_bins, binning=binning)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mc = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return pd.DataFrame({"bin": np.arange(n_bins), "lo": edges[:-1], "hi": edges[1:], "count": count,
                         "confidence": mc, "accuracy": acc, "gap": acc - mc})


MIN_TEMPERATURE_EXAMPLES = 50  # fewer cal examples than this: the fitted temperature is noise, say so


class DegenerateFitWarning(UserWarning):
    """A temperature fit that says little: it ran into its bound (separable or signal-free cal data) or used too
    few examples."""


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and whether to trust it: ``reason`` is None for an ordinary fit, else why not."""

    temperature: float
    n: int
    at_bound: bool
    reason: str | None

    def __float__(self) -> float:
        return self.temperature


def _fit(logits, labels, bounds: tuple[float, float] = (0.01, 100.0)) -> TemperatureFit:
    """:func:`fit_temperature` without the warning."""
    _check_order(logits, labels, "logits")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"logits must be [N, C] with labels [N], got {z.shape} and {y.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be integers in 0..{z.shape[1] - 1}")
    rows = np.arange(len(y))

    def f(beta):
        return -log_softmax(z * beta, axis=-1)[rows, y].mean()

    res = minimize_scalar(f, bounds=(1 / bounds[1], 1 / bounds[0]), method="bounded",
                          options={"xatol": 1e-10, "maxiter": 500})
    # a flat tail (separable data: the NLL underflows towards 0) can stop the search short of the bound it tends to
    candidates = [(f(res.x), float(res.x)), (f(1 / bounds[0]), 1 / bounds[0]), (f(1 / bounds[1]), 1 / bounds[1])]
    best = min(candidates, key=lambda c: (c[0], c[1] == res.x))  # a tie with a bound: the NLL is flat there
    t = float(1.0 / best[1])
    low, high = np.isclose(t, bounds[0], rtol=1e-3), np.isclose(t, bounds[1], rtol=1e-3)
    reason = None
    if low:
        reason = (f"temperature ran to its lower bound {bounds[0]:g}: the cal set is separable at this stage "
                  f"({int((z.argmax(1) == y).sum())}/{len(y)} right), so the NLL only falls as T shrinks and T is "
                  f"not identifiable; use a larger cal set or leave this stage uncalibrated (T=1)")
    elif high:
        reason = (f"temperature ran to its upper bound {bounds[1]:g}: the logits carry no signal about the labels "
                  f"on this cal set, so T is not identifiable")
    elif len(y) < MIN_TEMPERATURE_EXAMPLES:
        reason = f"temperature fitted on only {len(y)} examples (< {MIN_TEMPERATURE_EXAMPLES}): it is mostly noise"
    return TemperatureFit(t, len(y), bool(low or high), reason)


@keyword_options
def fit_temperature(logits, labels, *, bounds: tuple[float, float] = (0.01, 100.0)) -> TemperatureFit:
    """Temperature T minimising the NLL of ``softmax(logits / T)`` on (cal) data, with a verdict
    (:class:`TemperatureFit`: ``.temperature``, ``float(fit)``, ``.reason``).

    The NLL is convex in 1/T, so a bounded scalar search on 1/T finds the global minimiser. When it lands on a
    bound (within 0.1%), the NLL keeps falling past it: towards the lower bound when the cal set is separable at
    this stage (every example right, confidence only helps), towards the upper one when the logits carry no signal;
    then T is not identifiable and the bound is returned with a ``reason`` and a :class:`DegenerateFitWarning`; so
    too with fewer than ``MIN_TEMPERATURE_EXAMPLES`` examples. (Before 0.3 this was two functions: the verdict was
    ``temperature_fit``, the bare float ``fit_temperature``.)

    >>> import warnings
    >>> z = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]); y = np.array([0, 1, 0])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DegenerateFitWarning)
    ...     fit_temperature(z, y).at_bound  # all three right: separable, T runs to its lower bound
    True
    """
    fit = _fit(logits, labels, bounds)
    if fit.reason:
        warnings.warn(fit.reason, DegenerateFitWarning, stacklevel=3)  # past keyword_options' wrapper
    return fit


def _temperature_fit(logits, labels, bounds: tuple[float, float] = (0.01, 100.0)) -> TemperatureFit:
    """Deprecated (0.3): :func:`fit_temperature` returns the verdict itself."""
    return _fit(logits, labels, bounds)


@dataclass(frozen=True, eq=False)
class StageTemperatureFits:
    """One :class:`TemperatureFit` per stage of a cache: ``.temperatures`` (``[E]``, what scoring takes, also
    ``np.asarray(fits)``), ``.fits`` (each with its ``.reason``), ``.degenerate`` (``"stage <name>: <reason>"`` for
    every fit not to trust)."""

    stages: tuple
    fits: tuple[TemperatureFit, ...]

    @property
    def temperatures(self) -> np.ndarray:
        """``[E]`` fitted temperatures, in stage order."""
        return np.array([fit.temperature for fit in self.fits])

    @property
    def degenerate(self) -> tuple[str, ...]:
        return tuple(f"stage {s}: {fit.reason}" for s, fit in zip(self.stages, self.fits) if fit.reason)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.temperatures if dtype is None else self.temperatures.astype(dtype)

    def __len__(self) -> int:
        return len(self.fits)

    def __getitem__(self, i):
        """The temperature(s) at ``i``, as indexing 0.2's array did (each stage's fit: ``.fits[i]``)."""
        return self.temperatures[i]

    def __iter__(self):
        return iter(self.temperatures.tolist())

    def to_frame(self) -> pd.DataFrame:
        """One row per stage: the temperature, the examples it was fitted on, whether it ran into a bound, why not
        to trust it (empty when it is an ordinary fit)."""
        return pd.DataFrame({"stage": list(self.stages), "temperature": self.temperatures,
                             "n": [fit.n for fit in self.fits], "at_bound": [fit.at_bound for fit in self.fits],
                             "reason": [fit.reason or "" for fit in self.fits]})

    def to_dict(self) -> dict:
        return {"stages": [str(s) for s in self.stages], "temperatures": self.temperatures.tolist(),
                "n": [fit.n for fit in self.fits], "degenerate": list(self.degenerate)}

    def _title(self) -> str:
        bad = f" ({len(self.degenerate)} degenerate)" if self.degenerate else ""
        return f"Temperatures fitted per stage (NLL){bad}:"

    def __repr__(self) -> str:
        from toolkit.analysis.engine.results import text_repr

        return text_repr(self._title(), self.to_frame())

    def _repr_html_(self) -> str:
        return f"<b>{html.escape(self._title())}</b>" + self.to_frame().to_html(index=False, float_format="{:.4g}".format)


def _stage_fits(cache) -> StageTemperatureFits:
    """:func:`fit_stage_temperatures` without the warnings."""
    return StageTemperatureFits(tuple(cache.stages), tuple(_fit(cache.logits[:, e], cache.labels)
                                                           for e in range(cache.n_stages)))


def fit_stage_temperatures(cache) -> StageTemperatureFits:
    """One temperature per stage, each fitted on that stage's logits (use a ``cal`` cache), with each fit's verdict
    (:class:`StageTemperatureFits`: ``.temperatures`` ``[E]``, ``.fits``, ``.degenerate``); warns per degenerate
    stage. (Before 0.3 this was two functions: the bare array ``fit_stage_temperatures``, the verdicts
    ``stage_temperature_fits``.)"""
    fits = _stage_fits(cache)
    for note in fits.degenerate:
        warnings.warn(note, DegenerateFitWarning, stacklevel=2)
    return fits


def _stage_temperature_fits(cache) -> list[TemperatureFit]:
    """Deprecated (0.3): :func:`fit_stage_temperatures` returns the verdicts itself (``.fits``)."""
    return list(_stage_fits(cache).fits)


__getattr__ = renamed({"temperature_fit": ("fit_temperature", _temperature_fit),
                       "stage_temperature_fits": ("fit_stage_temperatures", _stage_temperature_fits)},
                      module=__name__)


@keyword_options
def calibration_table(cache, *, temperatures=None, n_bins: int = 15) -> pd.DataFrame:
    """Per stage: accuracy, top-label ECE (equal-width and equal-mass), classwise ECE, MCE, Brier, NLL."""
    from toolkit.analysis.scores.classification import softmax

    rows = []
    for e, name in enumerate(cache.stages):
        t = 1.0 if temperatures is None else float(np.asarray(temperatures)[e])
        p = softmax(cache.logits[:, e], temperature=t)
        rows.append({"stage": name, "temperature": t, "accuracy": float((p.argmax(1) == cache.labels).mean()),
                     "ece": ece(p, cache.labels, n_bins=n_bins),
                     "ece_mass": ece(p, cache.labels, n_bins=n_bins, binning="quantile"),
                     "ece_classwise": ece(p, cache.labels, n_bins=n_bins, mode="classwise"),
                     "mce": ece(p, cache.labels, n_bins=n_bins, norm="max"), "brier": brier(p, cache.labels),
                     "nll": nll(p, cache.labels)})
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class CrossfitTemperatures:
    """Per-stage temperatures fitted (NLL) on each label-stratified half of a split and applied to the other half,
    so every example is scaled by temperatures fitted without it (the cross-fitting protocol, for calibration).

    ``halves``: row indices of half A and half B (:func:`toolkit.analysis.engine.halves`, the halves
    :func:`~toolkit.analysis.engine.crossfit` draws); ``fitted``: ``[E]`` temperatures fitted on A, on B;
    ``per_example``: ``[N, E]`` the temperatures each example is scaled by (the other half's); ``degenerate``: fits
    that ran into a bound (no signal in that exit on that half), as ``"stage <name>: <reason>"``.
    """

    halves: tuple[np.ndarray, np.ndarray]
    fitted: tuple[np.ndarray, np.ndarray]
    per_example: np.ndarray
    degenerate: tuple[str, ...] = ()

    def apply(self, cache):
        """The cache with each example's logits divided by its temperatures (predictions unchanged)."""
        from toolkit.caches.classification import Cache

        if cache.logits.shape[:2] != self.per_example.shape:
            raise ValueError(f"temperatures fitted for {self.per_example.shape} (examples, stages); the cache has "
                             f"{cache.logits.shape[:2]}: apply them to the cache they were fitted on")
        logits = (cache.logits / self.per_example[..., None]).astype(np.float32)
        return Cache(logits, cache.labels, cache.flops, cache.example_ids, cache.n_tokens, cache.stage_info,
                     {**cache.meta, "temperature": "cross-fitted on test halves"})

    @keyword_options
    def to_frame(self, *, stages=None) -> pd.DataFrame:
        """One row per stage: the temperature fitted on each half."""
        stages = list(stages) if stages is not None else list(range(1, len(self.fitted[0]) + 1))  # counted from 1
        return pd.DataFrame({"stage": stages, "T fitted on half A": self.fitted[0],
                             "T fitted on half B": self.fitted[1]})

    def __repr__(self) -> str:
        from toolkit.analysis.engine.results import text_repr

        bad = f"; degenerate fits: {'; '.join(self.degenerate)}" if self.degenerate else ""
        return text_repr(f"Cross-fitted temperatures (halves of {len(self.halves[0])} and {len(self.halves[1])} "
                         f"examples; each example scaled by the other half's){bad}:", self.to_frame())

    def to_dict(self) -> dict:
        return {"fitted_a": self.fitted[0].tolist(), "fitted_b": self.fitted[1].tolist(),
                "n_a": len(self.halves[0]), "n_b": len(self.halves[1]), "degenerate": list(self.degenerate)}


def crossfit_temperatures(cache, *, seed: int = 0) -> CrossfitTemperatures:
    """Fit one temperature per stage on each half of ``cache`` (:func:`toolkit.analysis.engine.halves`, stratified
    by label) and give each example the other half's."""
    from toolkit.analysis.engine.choose import halves

    a, b = halves(cache.example_ids, seed=seed, strata=cache.labels)
    fits = {h: _stage_fits(cache.subset(rows)) for h, rows in (("A", a), ("B", b))}
    ta, tb = (fits[h].temperatures for h in ("A", "B"))
    per = np.empty((cache.n_examples, cache.n_stages))
    per[a], per[b] = tb, ta
    notes = fits["A"].degenerate + fits["B"].degenerate
    return CrossfitTemperatures((a, b), (ta, tb), per, notes)
