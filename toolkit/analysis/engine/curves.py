"""Exact sweeps, evaluation at thresholds, bootstrap bands and curve summaries, for any :class:`Staged`.

For "stop at the first stage whose confidence is at least tau", an example's stop only changes where tau crosses
a running maximum of its confidence over the non-final stages. Sorting those breakpoints and accumulating the
change of every additive quantity (outcome statistics, cost, layers) gives the outcome at every distinct threshold
in O(NE log NE): :func:`sweep` returns one row per distinct threshold plus the row ``threshold = inf`` (every
example at the last stage), each row exactly what that threshold does on the whole split.

>>> import numpy as np
>>> from toolkit.analysis.engine import from_classification
>>> lg = np.log(np.array([[[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.45, 0.55], [0.1, 0.9]]]))
>>> from toolkit.caches.classification import from_arrays
>>> s = from_classification(from_arrays(lg, [0, 1], [1.0, 2.0, 3.0]))
>>> sweep(s).to_frame()[["threshold", "accuracy", "flops", "speedup"]].round(4).to_numpy().tolist()
[[inf, 0.5, 3.0, 1.0], [0.9, 1.0, 2.5, 1.2], [0.7, 1.0, 1.5, 2.0], [0.6, 1.0, 1.0, 3.0]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from toolkit.analysis.engine.results import Bands, Curve, Evaluation, Summary
from toolkit.analysis.engine.staged import Staged

_CHUNK = 4_000_000  # array elements per vectorised block (bounds memory on large caches)


def breakpoints(conf: np.ndarray):
    """Where each example's stop changes as the threshold falls: records of the running maximum of its confidence
    over the non-final stages, sorted by value (descending).

    Returns ``(example, stage, previous_stage, value, last)``: when tau drops to ``value`` or below, ``example``
    moves from ``previous_stage`` to ``stage``; ``last`` indexes the final record of each group of equal values.
    """
    N, E = conf.shape
    if E > 1:
        run = np.maximum.accumulate(conf[:, :-1], axis=1)
        rec = np.ones_like(run, dtype=bool)
        np.greater(run[:, 1:], run[:, :-1], out=rec[:, 1:])
        flat = np.flatnonzero(rec)  # row-major: by example, then stage
        vals = run.reshape(-1)[flat]
        del run, rec
        rn, re = np.divmod(flat, E - 1)
        nxt = np.full_like(re, E - 1)
        same = rn[1:] == rn[:-1]
        nxt[:-1][same] = re[1:][same]
    else:
        rn = re = nxt = np.zeros(0, dtype=np.int64)
        vals = np.zeros(0)
    order = np.argsort(-vals, kind="stable")
    rn, re, nxt, vals = rn[order], re[order], nxt[order], vals[order]
    last = np.flatnonzero(np.append(vals[1:] != vals[:-1], True)) if len(vals) else np.zeros(0, dtype=np.int64)
    return rn, re, nxt, vals, last


def cumulate(delta, start, last, *, overwrite: bool = False) -> np.ndarray:
    """Totals at ``threshold = inf`` (``start``) and after each group of breakpoints (``delta`` per record);
    ``overwrite``: accumulate in ``delta``'s own memory (an array the caller no longer needs)."""
    start = np.asarray(start, dtype=np.float64)
    out = np.empty((len(last) + 1, *start.shape))
    out[0] = start
    if len(last):
        np.add(start, np.cumsum(delta, axis=0, out=delta if overwrite else None)[last], out=out[1:])
    return out


def _stage_quantities(s: Staged) -> dict[str, np.ndarray]:
    """Per-example, per-stage additive quantities of every row: ``[N, E]`` (or ``[N, E, K]`` for stats)."""
    N, E = s.confidence.shape
    q = {"stats": s.stats, "cost": s.cost, "layers": np.broadcast_to(s.layers, (N, E)),
         "escalated": np.broadcast_to((s.model_index > 0).astype(np.float64), (N, E)),
         "final_share": np.broadcast_to((np.arange(E) == E - 1).astype(np.float64), (N, E))}
    q.update({f"extra:{k}": v for k, v in s.extras.items()})
    return q


def sweep_totals(s: Staged, quantities: dict[str, np.ndarray]):
    """Thresholds ``[G]`` and the totals over examples ``[G, ...]`` of each ``[N, E, ...]`` quantity at every
    distinct threshold (the engine of :func:`sweep`, reused by risk control)."""
    rn, re, nxt, vals, last = breakpoints(s.confidence)
    thr = np.concatenate([[np.inf], vals[last]])
    E = s.n_stages
    at, to = rn * E + re, rn * E + nxt  # flat (example, stage) indices: one gather per quantity
    out = {}
    for k, q in quantities.items():
        if q.strides[0] == 0:  # a per-stage quantity broadcast over examples: gather by stage only
            d = q[0][re] - q[0][nxt]
        else:
            f = q.reshape(-1, *q.shape[2:])
            d = f[at]
            d -= f[to]
        out[k] = cumulate(d, q[:, -1].sum(0), last, overwrite=True)
    return thr, out


def _rows(s: Staged, thresholds: dict[str, np.ndarray], t: dict[str, np.ndarray]) -> pd.DataFrame:
    N = s.n_examples
    mean_cost = t["cost"] / N
    cols = {**thresholds, **{k: np.asarray(v, dtype=np.float64) for k, v in s.metrics(t["stats"], N).items()},
            "flops": mean_cost, "speedup": _ratio(s.reference_cost.mean(), mean_cost),
            "escalated": t["escalated"] / N, "final_share": t["final_share"] / N, "mean_layers": t["layers"] / N}
    cols.update({k.split(":", 1)[1]: v / N for k, v in t.items() if k.startswith("extra:")})
    return pd.DataFrame(cols)


def _ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(b) > 0, a / np.where(np.asarray(b) > 0, b, 1.0), np.inf)


def _curve_meta(s: Staged) -> dict:
    return {**s.meta, "stages": s.stage_names}


def sweep(staged: Staged) -> Curve:
    """Every distinct threshold, exactly.

    Parameters
    ----------
    staged : Staged
        N examples, E stages.

    Returns
    -------
    Curve
        ``G + 1`` rows (G distinct running-maximum values of the non-final confidences, at most N(E-1)), from
        ``threshold = inf`` (all examples at the last stage) to the cheapest; columns ``threshold``, every metric,
        ``flops`` (mean per example), ``speedup`` (against ``staged.reference``), ``escalated``, ``final_share``,
        ``mean_layers`` and the means of ``staged.extras``.
    """
    thr, t = sweep_totals(staged, _stage_quantities(staged))
    return Curve(_rows(staged, {"threshold": thr}, t), staged.metric, staged.reference, staged.n_examples,
                 exact=True, meta=_curve_meta(staged))


def _threshold_columns(s: Staged, thresholds) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Threshold rows ``[T, 1]`` (global) or ``[T, E]`` (per stage) and the columns that name them."""
    t = np.asarray(thresholds, dtype=np.float64)
    E = s.n_stages
    if t.ndim <= 1:
        t = t.reshape(-1, 1)
        return t, {"threshold": t[:, 0]}
    if t.ndim != 2 or t.shape[1] not in (E - 1, E):
        raise ValueError(f"per-stage thresholds must be [T, E-1] or [T, E] with E={E}, got shape {t.shape}")
    return t, {f"threshold:{name}": t[:, e] for e, name in enumerate(s.stage_names[: t.shape[1]])
               if e < E - 1}


def evaluate_stages(staged: Staged, stages, *, columns: dict[str, np.ndarray] | None = None) -> Curve:
    """Outcomes when example n stops at ``stages[t, n]`` (``[T, N]``, or ``[N]`` for one row): any stopping rule
    (patience, an oracle, a learned router) evaluated with the engine's columns."""
    s = staged
    st = np.atleast_2d(np.asarray(stages, dtype=np.int64))
    N, E = s.confidence.shape
    if st.ndim != 2 or st.shape[1] != N:
        raise ValueError(f"stages must be [T, {N}] (or [{N}]): one stage index per example, got shape {st.shape}")
    if st.min(initial=0) < 0 or st.max(initial=0) >= E:
        raise ValueError(f"stages must be stage indices in 0..{E - 1}, got values from {st.min()} to {st.max()}")
    q = _stage_quantities(s)
    rows = np.arange(N)
    K = s.stats.shape[-1]
    step = max(1, _CHUNK // max(1, N * K))
    totals: dict[str, list] = {k: [] for k in q}
    for a in range(0, len(st), step):  # blocks of thresholds bound memory; each block is vectorised
        blk = st[a:a + step]
        for k, v in q.items():
            totals[k].append(v[rows, blk].sum(1))
    t = {k: np.concatenate(v) for k, v in totals.items()}
    cols = columns if columns is not None else {"row": np.arange(len(st))}
    return Curve(_rows(s, cols, t), s.metric, s.reference, N, meta=_curve_meta(s))


def evaluate(staged: Staged, thresholds) -> Curve:
    """Outcomes at given thresholds: ``[T]`` global thresholds (or a scalar), or per-stage rows ``[T, E-1]`` /
    ``[T, E]`` (hybrids: early exit inside Swift, then escalate). Same columns as :func:`sweep` (per-stage rows
    name their thresholds ``threshold:<stage>``)."""
    t, cols = _threshold_columns(staged, thresholds)
    return evaluate_stages(staged, staged.stage_of(t), columns=cols)


def evaluation(staged: Staged, threshold, *, n_boot: int = 0, ci: float = 0.95, seed: int = 0) -> Evaluation:
    """One threshold (scalar or per stage) as an :class:`Evaluation`, with bootstrap intervals if ``n_boot``."""
    thr = np.asarray(threshold, dtype=np.float64)
    stage = staged.stage_of(thr if thr.ndim else float(thr))
    return evaluation_at_stages(staged, stage, threshold=_plain(thr), n_boot=n_boot, ci=ci, seed=seed)


def _plain(thr: np.ndarray):
    return float(thr) if thr.ndim == 0 else tuple(float(x) for x in thr)


def evaluation_at_stages(staged: Staged, stage, *, threshold=np.nan, n_boot: int = 0, ci: float = 0.95,
                         seed: int = 0) -> Evaluation:
    """An :class:`Evaluation` of explicit stops ``stage`` ``[N]``.

    With ``n_boot``: percentile intervals of every metric, ``flops``, ``speedup`` and of each metric's drop
    against the last stage (``{metric}_drop``: paired, both sides scored on the same resamples), resampling
    examples (clusters of ``staged.clusters`` where set) in blocks of bounded memory (:func:`weight_blocks`).
    """
    s = staged
    stage = np.asarray(stage)
    row = evaluate_stages(s, stage[None]).frame.iloc[0]
    N = s.n_examples
    final = s.metrics(s.stats[:, -1].sum(0), N)
    intervals = {}
    if n_boot:
        check_bootstrap(n_boot, ci)
        idx = np.arange(N), stage
        chosen, last, cost = s.stats[idx], s.stats[:, -1], s.cost[idx]
        draws: dict[str, list] = {}
        for _, w in weight_blocks(N, n_boot=n_boot, seed=seed, clusters=s.clusters):
            n = w.sum(1)
            m, mf = s.metrics(w @ chosen, n), s.metrics(w @ last, n)
            c = w @ cost / n
            blk = {**m, "flops": c, "speedup": (w @ s.reference_cost / n) / c,
                   **{f"{k}_drop": mf[k] - m[k] for k in m}}
            for k, v in blk.items():
                draws.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        a = (1 - ci) / 2
        for k, v in draws.items():
            lo, hi = np.quantile(np.concatenate(v), [a, 1 - a])
            intervals[k] = (float(lo), float(hi))
    return Evaluation(metrics={k: float(row[k]) for k in s.metric_names}, final={k: float(v) for k, v in final.items()},
                      flops=float(row["flops"]), speedup=float(row["speedup"]), escalated=float(row["escalated"]),
                      final_share=float(row["final_share"]), mean_layers=float(row["mean_layers"]), n=N,
                      metric=s.metric, reference=s.reference, threshold=threshold, split=s.split,
                      extras={k: float(row[k]) for k in s.extras}, intervals=intervals,
                      cost_unit=s.meta.get("cost_unit", "FLOPs"))


def oracle(staged: Staged) -> Evaluation:
    """The earliest stage with the example's best per-example quality (``staged.quality``): for classification the
    earliest correct stage (the first stage where no stage is right). A bound no confidence rule reaches."""
    if staged.quality is None:
        raise ValueError("this view has no per-example quality, so no oracle; adapters of classification and "
                         "generation caches provide it")
    q = staged.quality
    return evaluation_at_stages(staged, (q >= q.max(1, keepdims=True)).argmax(1))


_BOOT_ELEMENTS = 4_000_000  # resample weights held at once: 32 MB of float64 (and as much for the draw)


def _cluster_index(clusters, n: int) -> tuple[np.ndarray | None, int]:
    """Dense cluster index ``[n]`` (0..P-1, in order of first appearance of the sorted ids) and ``P``; ``(None,
    n)`` when every example is its own cluster."""
    if clusters is None:
        return None, n
    c = np.asarray(clusters)
    if c.shape != (n,):
        raise ValueError(f"clusters must be [n] = [{n}] (one cluster id per example), got shape {c.shape}")
    ids, inv = np.unique(c, return_inverse=True)
    return inv.reshape(n), len(ids)


def check_seed(seed) -> int:
    """A random seed: a non-negative integer (None would give other intervals on every call)."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (the same seed gives the same resamples), got "
                         f"{seed!r}")
    return int(seed)


def check_bootstrap(n_boot, ci=0.95) -> None:
    """Refuse a resample count that is not an integer >= 2 (one resample is no interval) and a coverage outside
    (0, 1), with the caller's values in the message."""
    import numbers

    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2 (resamples; an interval from one resample is not an "
                         f"interval; 0 where intervals are optional: none), got {n_boot!r}")
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0 < ci < 1:
        raise ValueError(f"ci must be a coverage in (0, 1), e.g. 0.95, got {ci!r}")


def weight_blocks(n: int, *, n_boot: int, seed: int, clusters=None, block: int | None = None):
    """Bootstrap resamples as blocks of example weights, in bounded memory: yields ``(rows, w)``, ``rows`` the
    slice of resamples and ``w`` ``[b, n]`` float64 example counts.

    Each resample draws ``P`` clusters with replacement (multinomial, seeded; ``P = n`` and one example per cluster
    when ``clusters`` is None); an example's weight is its cluster's count, so a cluster's examples stay together.
    The draws do not depend on the block size: concatenated, the blocks are :func:`resample_weights`. ``block``:
    resamples per block (default: about 4M weights at once).
    """
    check_bootstrap(n_boot)
    check_seed(seed)
    inv, P = _cluster_index(clusters, n)
    rng = np.random.default_rng(seed)
    p = np.full(P, 1.0 / P)
    b = int(block) if block else resamples_per_block(n)
    for a in range(0, n_boot, b):
        w = rng.multinomial(P, p, size=min(b, n_boot - a)).astype(np.float64)
        yield slice(a, a + len(w)), (w if inv is None else w[:, inv])


def resamples_per_block(*n: int) -> int:
    """Resamples per block of :func:`weight_blocks` (about 4M weights of the largest of ``n`` examples at once);
    pass several sizes to draw aligned blocks for several sets of examples."""
    return max(1, _BOOT_ELEMENTS // max(*n, 1))


def resample_weights(n: int, *, n_boot: int, seed: int, clusters=None) -> np.ndarray:
    """``[n_boot, n]`` example counts of ``n_boot`` bootstrap resamples (multinomial, seeded; clusters of
    ``clusters`` resampled together): every resampled statistic of an additive quantity is a matrix product with
    these weights. Dense: at large ``n`` iterate :func:`weight_blocks` instead (the same draws)."""
    return np.concatenate([w for _, w in weight_blocks(n, n_boot=n_boot, seed=seed, clusters=clusters)])


def cluster_weights(n_clusters: int, *, n_boot: int, seed: int, data_row: bool = True) -> np.ndarray:
    """``[(1 +) n_boot, n_clusters]`` cluster counts (row 0 all ones, the data, when ``data_row``): the weights of
    :func:`weight_blocks` per cluster, for statistics summed per cluster first (e.g. per prompt)."""
    w = resample_weights(int(n_clusters), n_boot=n_boot, seed=seed)
    return np.vstack([np.ones((1, int(n_clusters))), w]) if data_row else w


def bootstrap_statistic(fn, data, *, n_boot: int = 200, ci: float = 0.95, seed: int = 0):
    """Percentile interval of any statistic ``fn(data) -> float`` (or dict of floats), resampling examples of
    ``data`` (anything with ``subset`` and ``n_examples``: a cache or a :class:`Staged` view); clusters of a view's
    ``clusters`` (e.g. a token's prompt) are resampled whole.

    Returns ``(value, lo, hi)``, or a dict of such tuples. One call of ``fn`` per resample: use it for statistics
    the engine does not vectorise (:func:`bootstrap_bands`, :func:`compare` do).
    """
    check_bootstrap(n_boot, ci)
    rng = np.random.default_rng(seed)
    N = data.n_examples
    inv, P = _cluster_index(getattr(data, "clusters", None), N)
    if inv is None:
        draws = [fn(data.subset(rng.integers(0, N, N))) for _ in range(n_boot)]  # loop over resamples, not examples
    else:
        members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv, minlength=P))[:-1])
        draws = [fn(data.subset(np.concatenate([members[k] for k in rng.integers(0, P, P)])))
                 for _ in range(n_boot)]
    point = fn(data)
    a = (1 - ci) / 2
    if isinstance(point, dict):
        return {k: (point[k], *np.nanquantile([d[k] for d in draws], [a, 1 - a])) for k in point}
    return (point, *np.nanquantile(draws, [a, 1 - a]))


def bootstrap_bands(staged: Staged, thresholds, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> Bands:
    """Percentile bootstrap bands (resampling examples) of every metric, ``flops`` and ``speedup`` at given
    thresholds.

    Parameters
    ----------
    staged : Staged
    thresholds : array, shape (T,) or (T, E-1)
        Global thresholds (e.g. :func:`threshold_grid`) or per-stage rows.
    n_boot, ci, seed : int, float, int
        Resamples, coverage of the interval, seed of the resampling.

    Returns
    -------
    Bands
        :func:`evaluate`'s columns plus ``{name}_lo``/``{name}_hi`` for each metric, ``flops`` and ``speedup``.
        Vectorised: each resample is a weight vector, every statistic a matrix product.
    """
    check_bootstrap(n_boot, ci)
    s = staged
    t, cols = _threshold_columns(s, thresholds)
    stage = s.stage_of(t)  # [T, N]
    base = evaluate_stages(s, stage, columns=cols).to_frame()
    N, K = s.n_examples, s.stats.shape[-1]
    rows = np.arange(N)
    step = max(1, _CHUNK // max(1, N * K))
    cost_t = s.cost[rows, stage]  # [T, N]
    draws: dict[str, list] = {}
    for _, w in weight_blocks(N, n_boot=n_boot, seed=seed, clusters=s.clusters):
        n = w.sum(1)
        tot = np.concatenate([np.einsum("bn,tnk->btk", w, s.stats[rows, stage[a:a + step]])
                              for a in range(0, len(stage), step)], axis=1)  # [b, T, K]
        cost = w @ cost_t.T / n[:, None]  # [b, T]
        ref = w @ s.reference_cost / n  # [b]
        for k, v in {**s.metrics(tot, n[:, None]), "flops": cost, "speedup": ref[:, None] / cost}.items():
            draws.setdefault(k, []).append(v)
    a = (1 - ci) / 2
    for name, arr in draws.items():
        lo, hi = np.quantile(np.concatenate(arr), [a, 1 - a], axis=0)
        base[f"{name}_lo"], base[f"{name}_hi"] = lo, hi
    return Bands(base, s.metric, s.reference, N, n_boot, ci, seed, meta=_curve_meta(s))


def threshold_grid(staged: Staged, *, n: int = 100) -> np.ndarray:
    """``inf`` and up to ``n`` thresholds at quantiles of the sweep's distinct thresholds (for plots and bands)."""
    import numbers

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer (thresholds), got {n!r}")
    finite = breakpoints(staged.confidence)[3]
    finite = np.unique(finite)[::-1]
    if len(finite) == 0:
        return np.array([np.inf])
    q = np.unique(np.quantile(finite, np.linspace(0, 1, min(int(n), len(finite))), method="nearest"))
    return np.concatenate([[np.inf], q[::-1]])


def pareto_front(curve, *, x: str = "flops", y: str | None = None) -> pd.DataFrame:
    """Rows of a curve (or frame) that no other row beats (lower or equal ``x``, strictly higher ``y``), sorted by
    ``x``; ``y`` defaults to the curve's headline metric. The last row is the most accurate."""
    df = curve.frame if isinstance(curve, (Curve, Bands)) else curve
    y = y or getattr(curve, "metric", None)
    if y is None:
        raise ValueError("pass y= (the metric column) for a plain frame")
    d = df.sort_values([x, y], ascending=[True, False], kind="stable")
    vals = d[y].to_numpy()
    best = np.maximum.accumulate(vals)
    keep = np.ones(len(d), dtype=bool)
    keep[1:] = vals[1:] > best[:-1]
    return d[keep].reset_index(drop=True)


def summarize(curve: Curve, *, metric: str | None = None, max_drop: float = 0.01,
              speedups=(2.0, 3.0, 4.0)) -> Summary:
    """Headline numbers of a curve on its own data (optima there are upper bounds; see :class:`Summary`).

    ``metric``: what the drop and the speed-up budgets look at; default accuracy where the curve has it (any
    classification curve), else the curve's headline metric (exact match, BLEU ...). ``max_drop`` is absolute, in
    that metric's units.
    """
    metric = metric or ("accuracy" if "accuracy" in curve.frame else curve.metric)
    df = curve.frame
    if metric not in df:
        raise ValueError(f"metric {metric!r} is not a column of this curve: {list(df.columns)}")
    # every example at the last stage: the row threshold = inf when the curve has it, else the costliest row
    has_inf = "threshold" in df and np.isinf(df["threshold"].iloc[0])
    final = float(df[metric].iloc[0] if has_inf else df.loc[df["flops"].idxmax(), metric])
    ok = df[df[metric] >= final - max_drop - 1e-12]
    at = {}
    for k in speedups:
        sel = df[df["speedup"] >= k - 1e-12]
        at[float(k)] = float(sel[metric].max()) if len(sel) else float("nan")
    fr = pareto_front(df, x="flops", y=metric).sort_values("speedup")
    sp, m = np.clip(fr["speedup"].to_numpy(), 1.0, None), fr[metric].to_numpy()
    auc = float(trapezoid(m, sp) / (sp[-1] - sp[0])) if len(sp) > 1 and sp[-1] > sp[0] else float(m[-1])
    return Summary(metric, curve.reference, final, max_drop, float(ok["speedup"].max()) if len(ok) else 1.0, at,
                   float(df[metric].max()), auc)
