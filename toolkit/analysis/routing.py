"""Offline Swift/Super routing for generation: quality against FLOPs at every threshold, exactly.

Policy: run Swift; when its sequence confidence is below tau, also run Super and keep Super's output. An example
routed to Super costs Swift's run plus Super's run (FLOPs of :mod:`toolkit.analysis.generation_cost`); generated tokens count
both models' tokens. :func:`route_sweep` returns one row per distinct threshold (``inf``: everything routed), with
corpus quality computed from summed statistics for BLEU/chrF, so every row equals what the mixed system would score.
:func:`references` gives Swift alone, Super alone, the oracle router and random routing; :func:`compare_routers`
tabulates scores x aggregations. Columns ``metric``/``flops``/``speedup`` match :func:`toolkit.analysis.sweep.sweep`, so
``pareto_front`` and ``summarize`` apply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .quality import CORPUS, corpus_score
from .token_scores import AGGREGATIONS, sequence_confidence

COLUMNS = ("threshold", "metric", "flops", "speedup", "routed", "tokens")


def _pair(cache, swift, super_, metric):
    for m in (swift, super_):
        if m not in cache.models:
            raise KeyError(f"model {m!r} is not in this cache; it holds {list(cache.models)}")
    if swift == super_:
        raise ValueError("swift and super must be two different models")
    metric = metric or cache.metrics[0]
    a, b = cache.models[swift], cache.models[super_]
    if metric not in a.quality:
        raise ValueError(f"metric {metric!r} not in the cache; it holds {cache.metrics}")
    return a, b, metric


def _values(gen, metric):
    """Per-example additive values whose sum determines the corpus metric: the quality itself, or statistics."""
    return gen.qstats[metric] if metric in gen.qstats else gen.quality[metric][:, None]


def _score(metric, totals, n):
    return corpus_score(metric, stats=totals) if metric in CORPUS else totals[..., 0] / n


def route_curve(cache, swift: str, super_: str, conf, metric: str | None = None) -> pd.DataFrame:
    """The sweep for any per-example Swift confidence ``conf`` [N] (higher = keep Swift's output)."""
    a, b, metric = _pair(cache, swift, super_, metric)
    conf = np.asarray(conf, dtype=np.float64)
    N = cache.n_examples
    if conf.shape != (N,) or not np.isfinite(conf).all():
        raise ValueError(f"conf must be {N} finite values, got shape {conf.shape}")
    order = np.argsort(-conf, kind="stable")  # kept by Swift first as tau falls
    vals = conf[order]
    last = np.flatnonzero(np.append(vals[1:] != vals[:-1], True))
    va, vb = _values(a, metric), _values(b, metric)

    def cum(delta, start):
        start = np.asarray(start, dtype=np.float64)
        return np.concatenate([start[None], start + np.cumsum(delta, 0)[last]])

    totals = cum(va[order] - vb[order], vb.sum(0))
    flops = cum(-b.flops[order], a.flops.sum() + b.flops.sum()) / N
    tokens = cum(-b.n_steps[order].astype(np.float64), float(a.n_steps.sum() + b.n_steps.sum())) / N
    routed = 1.0 - np.concatenate([[0], last + 1]) / N
    return pd.DataFrame({"threshold": np.concatenate([[np.inf], vals[last]]), "metric": _score(metric, totals, N),
                         "flops": flops, "speedup": b.flops.mean() / flops, "routed": routed, "tokens": tokens})


def route_sweep(cache, swift: str, super_: str, score: str = "energy", how: str = "mean", temperature: float = 1.0,
                metric: str | None = None) -> pd.DataFrame:
    """Every distinct routing threshold of Swift's aggregated ``score`` (see :mod:`toolkit.analysis.token_scores`).

    Columns: ``threshold`` (confidence units, higher = more confident), ``metric`` (corpus quality of the routed
    system), ``flops`` (mean FLOPs per example), ``speedup`` (Super alone / routed system), ``routed`` (share sent
    to Super), ``tokens`` (mean generated tokens, both models). Rows go from all routed to none routed.
    """
    return route_curve(cache, swift, super_, sequence_confidence(cache, swift, score, how, temperature), metric)


def evaluate_route(cache, swift: str, super_: str, route, metric: str | None = None) -> dict:
    """Quality, mean FLOPs and tokens of one explicit routing decision ``route`` [N] bool (True = run Super)."""
    a, b, metric = _pair(cache, swift, super_, metric)
    r = np.asarray(route, dtype=bool)
    if r.shape != (cache.n_examples,):
        raise ValueError(f"route must be {cache.n_examples} booleans")
    tot = np.where(r[:, None], _values(b, metric), _values(a, metric)).sum(0)
    flops = (a.flops + r * b.flops).mean()
    return {"metric": float(_score(metric, tot, len(r))), "flops": float(flops),
            "speedup": float(b.flops.mean() / flops), "routed": float(r.mean()),
            "tokens": float((a.n_steps + r * b.n_steps).mean())}


def references(cache, swift: str, super_: str, metric: str | None = None) -> pd.DataFrame:
    """Swift alone, Super alone (no Swift run), and the oracle router (Super only where its per-example quality is
    higher; for BLEU/chrF by sentence-level score, so the oracle is near-, not exactly, optimal for corpus BLEU)."""
    a, b, metric = _pair(cache, swift, super_, metric)
    N = cache.n_examples
    rows = {"swift": evaluate_route(cache, swift, super_, np.zeros(N, bool), metric)}
    tot = _values(b, metric).sum(0)
    rows["super"] = {"metric": float(_score(metric, tot, N)), "flops": float(b.flops.mean()), "speedup": 1.0,
                     "routed": 1.0, "tokens": float(b.n_steps.mean())}
    rows["oracle"] = evaluate_route(cache, swift, super_, b.quality[metric] > a.quality[metric], metric)
    return pd.DataFrame(rows).T


def _area(curve: pd.DataFrame) -> float:
    x, y = curve["routed"].to_numpy()[::-1], curve["metric"].to_numpy()[::-1]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def oracle_curve(cache, swift: str, super_: str, metric: str | None = None) -> pd.DataFrame:
    """The best ordering by per-example quality: examples Super improves are routed first, those it worsens last."""
    a, b, metric = _pair(cache, swift, super_, metric)
    return route_curve(cache, swift, super_, a.quality[metric] - b.quality[metric], metric)


def area_gain(cache, swift: str, super_: str, curve: pd.DataFrame, metric: str | None = None,
              oracle_area: float | None = None) -> float:
    """Share of the oracle's advantage over random routing that a router's ``curve`` recovers, as areas under
    quality against routed share: (router - random) / (oracle - random); 1 = oracle, 0 = random. Random routing is
    the straight line from Swift alone to everything routed (its expectation for exact match). ``oracle_area``:
    the oracle curve's area when already computed (comparing many routers)."""
    q0, q1 = float(curve["metric"].iloc[-1]), float(curve["metric"].iloc[0])
    rand = (q0 + q1) / 2
    best = _area(oracle_curve(cache, swift, super_, metric)) if oracle_area is None else oracle_area
    return (_area(curve) - rand) / (best - rand) if best > rand else float("nan")


def compare_routers(cache, swift: str, super_: str, scores=("energy", "max_prob", "entropy", "margin"),
                    hows=AGGREGATIONS, temperature: float = 1.0, metric: str | None = None,
                    max_drop: float = 0.005) -> pd.DataFrame:
    """One row per (score, aggregation): ``area_gain`` (1 = oracle, 0 = random), the largest ``speedup`` over Super
    alone whose quality is within ``max_drop`` (absolute, metric units) of Super's, and the routed share there."""
    refs = references(cache, swift, super_, metric)
    target = float(refs.loc["super", "metric"]) - max_drop
    oracle_area = _area(oracle_curve(cache, swift, super_, metric))
    rows = []
    for s in scores:
        for h in hows:
            c = route_sweep(cache, swift, super_, s, h, temperature, metric)
            ok = c[c["metric"] >= target]
            best = ok.loc[ok["speedup"].idxmax()] if len(ok) else None
            rows.append({"score": s, "aggregation": h, "area_gain": area_gain(cache, swift, super_, c, metric, oracle_area),
                         "speedup_at_drop": float(best["speedup"]) if best is not None else float("nan"),
                         "routed_at_drop": float(best["routed"]) if best is not None else float("nan")})
    return pd.DataFrame(rows)
