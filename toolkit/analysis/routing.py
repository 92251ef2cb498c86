"""Swift/Super routing, described: references (first model alone, last model alone, oracle), the oracle curve,
area gain over random routing, and a table of routers (token score x aggregation).

The routing sweep itself is the engine's: ``sweep(staged(gen_cache, score=..., how=...))`` (every distinct
threshold, corpus BLEU/chrF from summed statistics). These functions take engine views, so they serve
classification cascades too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from toolkit.analysis.engine import Curve, Staged, evaluation_at_stages, oracle, staged, sweep
from toolkit.analysis.scores.tokens import AGGREGATIONS


def references(view: Staged) -> pd.DataFrame:
    """One row each: the first stage on every example, the last member alone (the reference, when the view's
    reference is the last member alone), every example to the last stage, and the oracle."""
    N, E = view.n_examples, view.n_stages
    rows = {f"{view.stage_names[0]} alone": evaluation_at_stages(view, np.zeros(N, dtype=int)),
            f"all to {view.stage_names[-1]}": evaluation_at_stages(view, np.full(N, E - 1))}
    if view.quality is not None:
        rows["oracle"] = oracle(view)
    out = pd.DataFrame({k: {**ev.metrics, "flops": ev.flops, "speedup": ev.speedup, "escalated": ev.escalated,
                            **ev.extras} for k, ev in rows.items()}).T
    ref = view.reference_cost.mean()
    out.loc[view.reference] = {**out.iloc[1].to_dict(), "flops": ref, "speedup": 1.0}
    last = view.model_index == view.model_index[-1]
    own = np.diff(view.cost, axis=1, prepend=0.0)[:, last].sum(1)
    for k, v in view.extras.items():  # the last member's own share, when the reference is that member alone
        alone = np.diff(v, axis=1, prepend=0.0)[:, last].sum(1).mean()
        out.loc[view.reference, k] = alone if np.allclose(own, view.reference_cost) else np.nan
    return out


def oracle_curve(view: Staged) -> Curve:
    """The best ordering by per-example quality gain: examples the last stage improves go first, those it worsens
    last (two stages)."""
    if view.n_stages != 2 or view.quality is None:
        raise ValueError("the oracle curve needs a two-stage view with per-example quality (Swift/Super)")
    gain = view.quality[:, 0] - view.quality[:, 1]
    return sweep(replace(view, confidence=np.stack([gain, np.zeros_like(gain)], 1)))


def _area(curve: Curve, metric: str) -> float:
    f = curve.frame
    x, y = f["escalated"].to_numpy()[::-1], f[metric].to_numpy()[::-1]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def area_gain(view: Staged, curve: Curve, *, metric: str | None = None, oracle_area: float | None = None) -> float:
    """Share of the oracle's advantage over random routing that a router's ``curve`` recovers, as areas under
    quality against escalated share: (router - random) / (oracle - random); 1 = oracle, 0 = random. Random routing
    is the straight line from the first stage alone to everything escalated (its expectation for exact match).
    ``oracle_area``: the oracle curve's area when already computed (comparing many routers)."""
    metric = metric or view.metric
    y = curve.frame[metric]
    rand = (float(y.iloc[-1]) + float(y.iloc[0])) / 2
    best = _area(oracle_curve(view), metric) if oracle_area is None else oracle_area
    return (_area(curve, metric) - rand) / (best - rand) if best > rand else float("nan")


def compare_routers(cache, *, models=None, scores=("energy", "max_prob", "entropy", "margin"), hows=AGGREGATIONS,
                    temperature: float = 1.0, metric: str | None = None, max_drop: float = 0.005) -> pd.DataFrame:
    """One row per (score, aggregation) on a generation cache: ``area_gain`` (1 = oracle, 0 = random), the largest
    ``speedup`` (against the last model alone) whose quality is within ``max_drop`` (absolute, metric units) of the
    last model's, and the escalated share there. Describes the curves on this split (optima are upper bounds)."""
    base = staged(cache, models=models, temperature=temperature, metric=metric)
    metric = base.metric
    target = float(base.metrics(base.stats[:, -1].sum(0), base.n_examples)[metric]) - max_drop
    oracle_area = _area(oracle_curve(base), metric)
    rows = []
    for s in scores:
        for h in hows:
            view = staged(cache, models=models, score=s, how=h, temperature=temperature, metric=metric)
            c = sweep(view)
            f = c.frame
            ok = f[f[metric] >= target]
            best = ok.loc[ok["speedup"].idxmax()] if len(ok) else None
            rows.append({"score": s, "aggregation": h, "area_gain": area_gain(view, c, oracle_area=oracle_area),
                         "speedup_at_drop_upper_bound": float(best["speedup"]) if best is not None else float("nan"),
                         "escalated_at_drop": float(best["escalated"]) if best is not None else float("nan")})
    return pd.DataFrame(rows)
