"""Probabilities and log-probabilities as inputs, and the unit costs are counted in.

:func:`from_probabilities` and :func:`from_log_probs` are siblings of :func:`~toolkit.caches.classification.from_arrays`
(which takes logits): they turn what other tools log (a classifier's probabilities, an LLM's per-choice
log-likelihoods, a served model's label-word logprobs) into an ordinary classification cache.

Zeros and very small values: a cache holds finite float32 numbers. A row (one example at one stage) whose top
log-probability is below :data:`RAISE_BELOW` (``LOG_FLOOR / 2``, about -43.7) is first shifted up so that its top is
at ``RAISE_BELOW`` (``softmax`` does not change; the number of shifted rows is ``meta["input"]["raised"]``, written
only when not zero). Then every value below :data:`LOG_FLOOR` (the log of the smallest normal float32, about -87.3;
a probability of 0, log-probability -inf) is stored as ``LOG_FLOOR``; the number of floored entries is
``meta["input"]["floored"]``. A floored value is then more than 43 below its row's top, so its probability is
below 1e-19 of the top's: under float32 resolution, so flooring changes no prediction, and the top-2 scores
(max_prob, margin) only by less than float32 resolution. Without the shift, rows of multi-token log-likelihoods
below -87 would all floor to one value and tie. Rows need not sum to one (label-word probabilities are a part of
the vocabulary): ``softmax`` renormalises, ``logsumexp`` (energy) keeps the mass for every row whose top is above
``RAISE_BELOW`` (a probability of 1e-19); a raised row reads as if its top had that probability.

Cost units: ``meta["cost_unit"]`` names what the cache's cost column counts ("FLOPs", "parameters x tokens",
"seconds", "dollars" or any name); absent means FLOPs, as in every cache the toolkit collects. :func:`cost_unit`
reads it and :func:`cost_label` builds axis and column labels from it (FLOPs are shown in GFLOPs).
"""

from __future__ import annotations

import numpy as np

from toolkit.caches.classification import Cache, CacheError, _real, from_arrays

LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))  # -87.34: log of the smallest normal float32
RAISE_BELOW = LOG_FLOOR / 2  # -43.67: a row whose top is lower is shifted up to it before flooring
DEFAULT_UNIT = "FLOPs"
__all__ = ["LOG_FLOOR", "RAISE_BELOW", "from_probabilities", "from_log_probs", "cost_unit", "cost_label", "cost_scale"]


def _stage_major(values, what: str) -> np.ndarray:
    """``[N, C]`` (one stage) or ``[N, E, C]`` as float64 ``[N, E, C]``."""
    a = _real(values, what).astype(np.float64)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3:
        raise CacheError(f"{what} must be [N, C] (one stage) or [N, E, C], got shape {a.shape}")
    return a


def _first_bad(mask: np.ndarray) -> str:
    n, e, c = np.argwhere(mask)[0]
    return f"example {n}, stage {e}, class {c}"


def from_log_probs(log_probs, labels, cost, *, cost_unit: str = DEFAULT_UNIT, meta: dict | None = None,
                   **kwargs) -> Cache:
    """A cache from log-probabilities ``[N, C]`` or ``[N, E, C]`` (natural log, each <= 0; -inf allowed).

    ``cost``: ``[N, E]`` cumulative cost per example or ``[E]`` per stage, in ``cost_unit``. Other keywords go to
    :func:`~toolkit.caches.classification.from_arrays` (``stages``, ``example_ids``, ``n_tokens``, ``stage_info``).
    Rows whose top is below :data:`RAISE_BELOW` are shifted up to it, then values below :data:`LOG_FLOOR` (-inf
    included) are stored as ``LOG_FLOOR`` (see the module docstring; softmax and predictions are unchanged); NaN,
    +inf and positive values are refused.
    """
    lp = _stage_major(log_probs, "log_probs")
    bad = np.isnan(lp) | (lp == np.inf)
    if bad.any():
        raise CacheError(f"log_probs hold NaN or +inf (first at {_first_bad(bad)}); a log-probability is <= 0 or "
                         f"-inf")
    tol = 1e-6  # rounding in the tool that wrote them (log(1) written as 1e-8)
    if (lp > tol).any():
        raise CacheError(f"log_probs must be <= 0, got {lp[lp > tol][0]:.6g} at {_first_bad(lp > tol)}; pass "
                         f"logits to from_arrays, or probabilities to from_probabilities")
    return _build(np.minimum(lp, 0.0), labels, cost, "log_probs", cost_unit, meta, kwargs)


def from_probabilities(probs, labels, cost, *, cost_unit: str = DEFAULT_UNIT, meta: dict | None = None,
                       **kwargs) -> Cache:
    """A cache from probabilities ``[N, C]`` or ``[N, E, C]`` in [0, 1] (zeros allowed; rows may sum below 1, not
    above: real numbers only, no bool, string or complex).

    Stored as their logarithms (shifted and floored as in :func:`from_log_probs`; 0 as :data:`LOG_FLOOR`), so
    ``softmax`` of the cached logits gives back each row renormalised. ``cost``, ``cost_unit`` and other keywords as in :func:`from_log_probs`.
    """
    p = _stage_major(probs, "probs")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1 + 1e-6)
    if bad.any():
        raise CacheError(f"probs must be finite and in [0, 1], got {float(p[bad][0])} at {_first_bad(bad)}")
    total = p.sum(-1)
    if (total > 1 + 1e-3).any():
        n, e = np.argwhere(total > 1 + 1e-3)[0]
        raise CacheError(f"probs: the row of example {n}, stage {e} sums to {total[n, e]:.4g} > 1: not one "
                         f"distribution over the classes (independent sigmoid outputs?); rows may sum below 1 (a part "
                         f"of the vocabulary), never above. Pass logits to from_arrays, or normalise deliberately")
    with np.errstate(divide="ignore"):
        lp = np.log(np.minimum(p, 1.0))
    return _build(lp, labels, cost, "probabilities", cost_unit, meta, kwargs)


def _build(lp: np.ndarray, labels, cost, kind: str, unit: str, meta: dict | None, kwargs: dict) -> Cache:
    if not isinstance(unit, str) or not unit.strip():
        raise CacheError(f"cost_unit must be a non-empty name (FLOPs, 'parameters x tokens', seconds, dollars ...), "
                         f"got {unit!r}")
    lp, raised = _raise_rows(lp)
    floored = lp < LOG_FLOOR
    info = {"kind": kind, "floored": int(floored.sum()), **({"raised": raised} if raised else {})}
    m = {**(meta or {}), "cost_unit": unit, "input": info}
    return from_arrays(np.where(floored, LOG_FLOOR, lp).astype(np.float32), labels, cost, meta=m, **kwargs)


def _raise_rows(lp: np.ndarray) -> tuple[np.ndarray, int]:
    """Shift each ``[.., C]`` row whose top is below :data:`RAISE_BELOW` up to it (softmax unchanged); rows all -inf
    stay (they floor to a uniform row). Returns the shifted array and the number of rows shifted."""
    top = lp.max(axis=-1, keepdims=True)
    low = np.isfinite(top) & (top < RAISE_BELOW)
    return lp + np.where(low, RAISE_BELOW - top, 0.0), int(low.sum())


# ---------------------------------------------------------------------------------------------- cost units
def cost_unit(cache_or_meta) -> str:
    """The unit of a cache's cost column (``meta["cost_unit"]``; FLOPs when absent)."""
    meta = cache_or_meta if isinstance(cache_or_meta, dict) else getattr(cache_or_meta, "meta", None) or {}
    unit = meta.get("cost_unit", DEFAULT_UNIT)
    if not isinstance(unit, str) or not unit.strip():
        raise CacheError(f"meta key 'cost_unit' must be a non-empty string, got {unit!r}")
    return unit


def cost_scale(unit: str) -> tuple[float, str]:
    """How costs in ``unit`` are shown: (divide by, displayed unit). FLOPs as GFLOPs; anything else as is."""
    return (1e9, "GFLOPs") if unit == DEFAULT_UNIT else (1.0, unit)


def cost_label(unit: str = DEFAULT_UNIT, what: str = "cost per example") -> str:
    """An axis or column label: ``"GFLOPs per example"`` for FLOPs, ``"cost per example (dollars)"`` otherwise."""
    shown = cost_scale(unit)[1]
    return f"{shown} {what.removeprefix('cost ')}" if unit == DEFAULT_UNIT else f"{what} ({shown})"
