"""Exact threshold sweeps, Pareto frontiers, summaries and bootstrap bands.

For "stop at the first stage whose confidence is at least tau", an example's exit stage only changes where tau
crosses a running maximum of its confidence over the non-final stages. Sorting those breakpoints gives the outcome
at every distinct threshold in O(NE log NE): :func:`sweep` returns one row per distinct threshold (plus the row
``threshold = inf``, where every example reaches the last stage), each row exactly what early exit at that
threshold yields on the whole cache.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from .metrics import metric_from_confusion
from .policies import exit_stage, patience_stage, stage_layers
from .scores import SCORES, stage_confidence

COLUMNS = ("threshold", "metric", "accuracy", "flops", "speedup", "mean_layers", "escalated", "final_share")


def _check_cache(cache):
    for attr in ("logits", "labels", "flops"):
        if not hasattr(cache, attr):
            raise TypeError(f"cache needs a {attr!r} attribute (use toolkit.load_cache or toolkit.from_arrays)")
    logits = np.asarray(cache.logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must be [N, E, C], got shape {logits.shape}")
    N, E, C = logits.shape
    labels = np.asarray(cache.labels)
    flops = np.asarray(cache.flops, dtype=np.float64)
    if labels.shape != (N,) or flops.shape != (N, E):
        raise ValueError(f"labels {labels.shape} / flops {flops.shape} do not match logits {logits.shape}")
    if labels.min() < 0 or labels.max() >= C:
        raise ValueError(f"labels must lie in 0..{C - 1}")
    if not np.isfinite(logits).all() or not np.isfinite(flops).all():
        raise ValueError("logits and flops must be finite (no NaN or inf)")
    return logits, labels.astype(np.int64), flops


def _stage_extras(cache, E):
    info = getattr(cache, "stage_info", None)
    if info:
        layers = stage_layers(cache)
        model = np.array([s.get("model_index", 0) for s in info])
    else:
        layers, model = np.arange(1, E + 1, dtype=np.float64), np.zeros(E, dtype=int)
    return layers, model


def _metric_name(cache, metric):
    meta = getattr(cache, "meta", None) or {}
    return metric or meta.get("metric", "accuracy")


def breakpoints(conf: np.ndarray):
    """Where each example's exit stage changes as the threshold falls: records of the running maximum of its
    confidence over the non-final stages, sorted by value (descending).

    Returns ``(example, stage, previous_stage, value, last)``: when tau drops to ``value`` or below, ``example``
    moves from ``previous_stage`` to ``stage``; ``last`` indexes the final record of each group of equal values.
    """
    N, E = conf.shape
    if E > 1:
        run = np.maximum.accumulate(conf[:, :-1], axis=1)
        rec = np.ones_like(run, dtype=bool)
        rec[:, 1:] = run[:, 1:] > run[:, :-1]
        rn, re = np.nonzero(rec)  # row-major: by example, then stage
        nxt = np.full_like(re, E - 1)
        same = rn[1:] == rn[:-1]
        nxt[:-1][same] = re[1:][same]
        vals = run[rn, re]
    else:
        rn = re = nxt = np.zeros(0, dtype=np.int64)
        vals = np.zeros(0)
    order = np.argsort(-vals, kind="stable")
    rn, re, nxt, vals = rn[order], re[order], nxt[order], vals[order]
    last = np.flatnonzero(np.append(vals[1:] != vals[:-1], True)) if len(vals) else np.zeros(0, dtype=np.int64)
    return rn, re, nxt, vals, last


def cumulate(delta, start, last) -> np.ndarray:
    """Totals at ``threshold = inf`` (``start``) and after each group of breakpoints."""
    c = np.cumsum(delta)[last] if len(last) else np.zeros(0)
    return np.concatenate([[start], start + c])


def sweep(cache, score: str = "max_prob", temperature=None, metric: str | None = None) -> pd.DataFrame:
    """Every distinct early-exit threshold on ``cache``, exactly.

    Columns: ``threshold`` (confidence units: the score for max_prob/margin/elang, its negative for
    entropy/energy), ``metric`` (the task metric, or ``metric=``), ``accuracy``, ``flops`` (mean FLOPs per example),
    ``speedup`` (last stage's mean FLOPs / policy's), ``mean_layers``, ``escalated`` (share that left the first
    model), ``final_share`` (share that reached the last stage). Rows go from the most to the least conservative.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {SCORES}")
    logits, labels, flops = _check_cache(cache)
    metric = _metric_name(cache, metric)
    N, E, C = logits.shape
    conf = stage_confidence(logits, score, temperature)
    pred = logits.argmax(-1)
    layers, model = _stage_extras(cache, E)

    rn, re, nxt, vals, last = breakpoints(conf)

    def cum(delta, start):
        return cumulate(delta, start, last)

    cell_new, cell_old = labels[rn] * C + pred[rn, re], labels[rn] * C + pred[rn, nxt]
    cm0 = np.bincount(labels * C + pred[:, -1], minlength=C * C)
    cms = np.stack([cum((cell_new == k).astype(np.int64) - (cell_old == k), cm0[k]) for k in range(C * C)], -1)
    cms = cms.reshape(-1, C, C)
    f_final = flops[:, -1]
    tot_flops = cum(flops[rn, re] - flops[rn, nxt], f_final.sum())
    tot_layers = cum(layers[re] - layers[nxt], layers[-1] * N)
    tot_esc = cum((model[re] > 0).astype(np.int64) - (model[nxt] > 0), int(model[-1] > 0) * N)
    tot_final = cum(-(nxt == E - 1).astype(np.int64) * (re != E - 1), N)
    thr = np.concatenate([[np.inf], vals[last]])
    mean_flops = tot_flops / N
    return pd.DataFrame({
        "threshold": thr, "metric": metric_from_confusion(cms, metric),
        "accuracy": metric_from_confusion(cms, "accuracy"), "flops": mean_flops,
        "speedup": f_final.mean() / mean_flops, "mean_layers": tot_layers / N, "escalated": tot_esc / N,
        "final_share": tot_final / N})


def evaluate_thresholds(cache, thresholds, score: str = "max_prob", temperature=None,
                        metric: str | None = None) -> pd.DataFrame:
    """The same columns as :func:`sweep`, at given thresholds (vectorised over examples and thresholds)."""
    logits, labels, flops = _check_cache(cache)
    metric = _metric_name(cache, metric)
    N, E, C = logits.shape
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    stage = exit_stage(stage_confidence(logits, score, temperature), thr[:, None])  # [T, N]
    return _table(cache, stage, thr, labels, flops, logits.argmax(-1), metric)


def _table(cache, stage, thr, labels, flops, pred, metric):
    N, E = flops.shape
    C = np.asarray(cache.logits).shape[-1]
    rows = np.arange(N)
    p = pred[rows, stage]
    cells = labels * C + p  # [T, N]
    cms = np.stack([(cells == k).sum(-1) for k in range(C * C)], -1).reshape(-1, C, C)
    layers, model = _stage_extras(cache, E)
    f = flops[rows, stage].mean(-1)
    return pd.DataFrame({
        "threshold": thr, "metric": metric_from_confusion(cms, metric),
        "accuracy": metric_from_confusion(cms, "accuracy"), "flops": f, "speedup": flops[:, -1].mean() / f,
        "mean_layers": layers[stage].mean(-1), "escalated": (model[stage] > 0).mean(-1),
        "final_share": (stage == E - 1).mean(-1)})


def patience_sweep(cache, metric: str | None = None) -> pd.DataFrame:
    """PABEE over every patience 1..E-1 (and E: never early); ``threshold`` column holds the patience."""
    logits, labels, flops = _check_cache(cache)
    metric = _metric_name(cache, metric)
    E = logits.shape[1]
    pats = np.arange(1, E + 1)
    stage = patience_stage(logits.argmax(-1), pats)
    return _table(cache, stage, pats.astype(float), labels, flops, logits.argmax(-1), metric).rename(
        columns={"threshold": "patience"})


def pareto_front(df: pd.DataFrame, x: str = "flops", y: str = "metric") -> pd.DataFrame:
    """Rows no other row beats (lower or equal ``x`` and strictly higher ``y``), sorted by ``x``."""
    d = df.sort_values([x, y], ascending=[True, False], kind="stable")
    best = np.maximum.accumulate(d[y].to_numpy())
    keep = np.ones(len(d), dtype=bool)
    keep[1:] = d[y].to_numpy()[1:] > best[:-1]
    return d[keep].reset_index(drop=True)


def summarize(df: pd.DataFrame, max_drop: float = 0.01, speedups=(2.0, 3.0, 4.0)) -> dict:
    """Headline numbers of one trade-off curve.

    ``reference``: metric of the last stage (row ``threshold=inf``, or the slowest row); ``speedup_at_drop``: largest
    speed-up whose metric is within ``max_drop`` (absolute) of the reference; ``metric_at_{k}x``: best metric among
    rows with speed-up >= k (NaN if none reaches k); ``auc``: area under the metric/speed-up frontier between 1x and
    the largest speed-up, divided by that range (a mean metric over speed-ups).
    """
    ref_row = df.loc[df["flops"].idxmax()]
    ref = float(ref_row["metric"])
    ok = df[df["metric"] >= ref - max_drop - 1e-12]
    out = {"reference": ref, "speedup_at_drop": float(ok["speedup"].max()) if len(ok) else 1.0}
    for k in speedups:
        sel = df[df["speedup"] >= k - 1e-12]
        out[f"metric_at_{k:g}x"] = float(sel["metric"].max()) if len(sel) else float("nan")
    fr = pareto_front(df, x="flops", y="metric").sort_values("speedup")
    s, m = fr["speedup"].to_numpy(), fr["metric"].to_numpy()
    s = np.clip(s, 1.0, None)
    out["auc"] = float(trapezoid(m, s) / (s[-1] - s[0])) if len(s) > 1 and s[-1] > s[0] else float(m[-1])
    return out


def bootstrap_curve(cache, thresholds, score: str = "max_prob", temperature=None, metric: str | None = None,
                    n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Percentile bootstrap bands (resampling examples) of metric, accuracy and FLOPs at given thresholds.

    Returns :func:`evaluate_thresholds`'s columns plus ``metric_lo/hi``, ``accuracy_lo/hi``, ``flops_lo/hi``,
    ``speedup_lo/hi``. Vectorised: each bootstrap sample is a weight vector, statistics are matrix products.
    """
    logits, labels, flops = _check_cache(cache)
    metric = _metric_name(cache, metric)
    N, E, C = logits.shape
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    base = evaluate_thresholds(cache, thr, score, temperature, metric)
    stage = exit_stage(stage_confidence(logits, score, temperature), thr[:, None])  # [T, N]
    rows = np.arange(N)
    pred = logits.argmax(-1)[rows, stage]
    cells = labels * C + pred
    w = np.random.default_rng(seed).multinomial(N, np.full(N, 1.0 / N), size=n_boot).astype(np.float64)  # [B, N]
    cms = np.stack([w @ (cells == k).T.astype(np.float64) for k in range(C * C)], -1).reshape(n_boot, -1, C, C)
    m = metric_from_confusion(cms, metric)
    acc = metric_from_confusion(cms, "accuracy")
    f = (w @ flops[rows, stage].T) / N
    ref = (w @ flops[:, -1]) / N
    sp = ref[:, None] / f
    a = (1 - ci) / 2
    for name, arr in (("metric", m), ("accuracy", acc), ("flops", f), ("speedup", sp)):
        lo, hi = np.quantile(arr, [a, 1 - a], axis=0)
        base[f"{name}_lo"], base[f"{name}_hi"] = lo, hi
    return base


def threshold_grid(cache, n: int = 100, score: str = "max_prob", temperature=None) -> np.ndarray:
    """``n`` thresholds at quantiles of the sweep's breakpoints (plus inf), for plots and bands."""
    df = sweep(cache, score, temperature)
    finite = df["threshold"].to_numpy()[1:]
    if len(finite) == 0:
        return np.array([np.inf])
    q = np.unique(np.quantile(finite, np.linspace(0, 1, n), method="nearest"))
    return np.concatenate([[np.inf], q[::-1]])


def bootstrap(fn, cache, n_boot: int = 200, ci: float = 0.95, seed: int = 0) -> dict:
    """Percentile interval of any scalar statistic ``fn(cache) -> float`` or ``dict`` of floats, resampling examples."""
    rng = np.random.default_rng(seed)
    N = cache.n_examples
    draws = [fn(cache.subset(rng.integers(0, N, N))) for _ in range(n_boot)]  # loop over resamples, not examples
    point = fn(cache)
    a = (1 - ci) / 2
    if isinstance(point, dict):
        return {k: (point[k], *np.nanquantile([d[k] for d in draws], [a, 1 - a])) for k in point}
    return {"value": (point, *np.nanquantile(draws, [a, 1 - a]))}
