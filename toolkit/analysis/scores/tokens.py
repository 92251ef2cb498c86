"""Token-level confidence from cached step statistics, and sequence-level scores by aggregation.

Token scores at temperature T (T must be one of the cache's temperatures): ``max_prob`` = exp(max/T - lse_T),
``margin`` = top-1 minus top-2 probability, ``energy`` = -T * lse_T (E-LANG; lower = more confident) and
``entropy`` (nats). A sequence score aggregates its tokens' raw scores with ``mean``, ``max``, ``min``, ``sum`` or
``first`` (the first generated token: for text-to-text classification, the label word). E-LANG's "max energy" is the
least confident token. :func:`sequence_confidence` then orients the result so that higher = more confident, the
convention of every routing sweep (energy and entropy are negated). Vectorised with ``np.*.reduceat``.

>>> import numpy as np
>>> aggregate(np.array([1.0, 3.0, 2.0]), np.array([0, 2, 3]), how="mean").tolist()
[2.0, 2.0]
"""

from __future__ import annotations

import numpy as np

from toolkit._api import keyword_options
from toolkit.analysis.scores.classification import SCORES, get_score

TOKEN_SCORES = tuple(name for name, s in SCORES.items() if s.from_steps is not None)
AGGREGATIONS = ("mean", "max", "min", "sum", "first")


def _temperature_index(temperatures, temperature: float) -> int:
    temps = np.asarray(temperatures, dtype=np.float64)
    hit = np.flatnonzero(np.isclose(temps, float(temperature), rtol=1e-9, atol=0))
    if not len(hit):
        raise ValueError(f"temperature {temperature} was not cached; this cache holds step statistics at "
                         f"{list(temperatures)} (collect with temperatures=[...] to add others)")
    return int(hit[0])


@keyword_options
def token_scores(gen, temperatures, *, score: str = "energy", temperature: float = 1.0) -> np.ndarray:
    """Raw score of every generated step ``[S]`` (native orientation: energy and entropy low = confident)."""
    if score not in TOKEN_SCORES:
        raise ValueError(f"unknown token score {score!r}; choose one of {TOKEN_SCORES}")
    K = len(temperatures)
    k = _temperature_index(temperatures, temperature)
    st = np.asarray(gen.stats, dtype=np.float64)
    return SCORES[score].from_steps(st[:, 0], st[:, 1], st[:, 2 + k], st[:, 2 + K + k], float(temperature))


@keyword_options
def aggregate(values, offsets, *, how: str = "mean") -> np.ndarray:
    """Aggregate flat per-step ``values`` into one value per sequence (``offsets`` [N+1], every sequence non-empty)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}")
    v = np.asarray(values, dtype=np.float64)
    off = np.asarray(offsets, dtype=np.int64)
    if off.ndim != 1 or off[0] != 0 or off[-1] != len(v) or (np.diff(off) < 1).any():
        raise ValueError("offsets must run from 0 to len(values) with at least one step per sequence")
    starts = off[:-1]
    if how == "first":
        return v[starts]
    if how == "sum":
        return np.add.reduceat(v, starts)
    if how == "mean":
        return np.add.reduceat(v, starts) / np.diff(off)
    return (np.maximum if how == "max" else np.minimum).reduceat(v, starts)


@keyword_options
def sequence_confidence(cache, model: str, *, score: str = "energy", how: str = "mean",
                        temperature: float = 1.0) -> np.ndarray:
    """``[N]`` sequence confidence of ``model``'s generations, higher = more confident."""
    if model not in cache.models:
        raise KeyError(f"model {model!r} is not in this cache; it holds {list(cache.models)}")
    gen = cache.models[model]
    s = aggregate(token_scores(gen, cache.temperatures, score=score, temperature=temperature), gen.offsets, how=how)
    return s if get_score(score).orientation == "higher" else -s
