"""Comparing policies: paired-bootstrap differences at equal budgets, with intervals.

At a budget of ``k`` x (speed-up against a common reference), each policy is scored by the best metric its curve
reaches at a mean cost of at most ``reference / k`` (its frontier at that budget: a description of the curves on
this data, the same statistic on both sides). The difference ``a - b`` is bootstrapped with the same resampled
examples for both policies (pairing by example id). With several training seeds per policy (lists of views, one
per seed), a two-level bootstrap resamples the seeds of each policy, then the examples; the point estimate averages
over seeds.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.analysis.engine.choose import _choose, _stops_by_halves, halves
from toolkit.analysis.engine.curves import breakpoints, check_bootstrap, weight_blocks
from toolkit.analysis.engine.results import _Table
from toolkit.analysis.engine.staged import Staged
from toolkit.caches.identity import check_same_data, describe

_CHUNK = 4_000_000


def _runs(staged: Staged, weights: np.ndarray, *, reference_cost: np.ndarray, metric: str):
    """For blocks of resamples: ``(rows, m, mean_cost, ref)`` with ``m`` and ``mean_cost`` ``[b, runs]`` the metric
    and the mean cost of the cheapest row of each run of sweep rows with equal outcomes, ``ref`` ``[b]`` the mean
    reference cost. The first run holds the row ``threshold = inf`` (every example at the last stage).

    Sweep rows 0..G (row g+1 after group g of equal thresholds). The outcome only changes at groups holding a record
    whose stats change (most records move an example between stages that predict the same): on each run of rows
    with equal stats the metric is constant and the cost falls, so any optimum of the metric under a cost bound (or
    of the cost under a metric bound) is attained at the cheapest row of a run. Evaluating the metric at the run
    ends only is exact and touches far fewer rows than the sweep has.
    """
    s = staged
    rn, re, nxt, vals, last = breakpoints(s.confidence)
    w = np.asarray(weights, dtype=np.float64)
    B, N = w.shape
    n = w.sum(1)  # [B]
    dstats = s.stats[rn, re] - s.stats[rn, nxt]  # [R, K]
    dcost = s.cost[rn, re] - s.cost[rn, nxt]  # [R]
    starts = np.concatenate([[0], last[:-1] + 1]) if len(last) else np.zeros(0, dtype=np.int64)
    G = len(last)
    group = np.repeat(np.arange(G), np.diff(np.append(starts, len(rn)))) if G else np.zeros(0, dtype=np.int64)
    moving = np.flatnonzero(np.any(dstats != 0, axis=tuple(range(1, dstats.ndim))))  # records that change stats
    changes = np.unique(group[moving])  # groups where the stats change: row changes + 1 starts a new run
    run_end = np.append(changes, G)  # last row of each run: row 0..changes[0], changes[0]+1..changes[1], ...
    # moving records accumulated from the start of run i + 1 on: those of groups <= changes[i]
    upto = np.searchsorted(moving, np.searchsorted(group, changes, side="right"), side="left")
    ref = w @ reference_cost / n  # [B]
    cost0 = w @ s.cost[:, -1]
    stats0 = w @ s.stats[:, -1]  # [B, K]
    K = s.stats.shape[-1]
    step = max(1, _CHUNK // max(1, len(rn) + len(moving) * K))
    dmove = dstats[moving]  # [M, K]
    for a in range(0, B, step):  # blocks of resamples bound memory; each block is vectorised
        wa = w[a:a + step]
        if G:
            gc = np.add.reduceat(wa[:, rn] * dcost, starts, axis=1)  # [b, G]
            cost = np.concatenate([cost0[a:a + step, None], cost0[a:a + step, None] + np.cumsum(gc, 1)], 1)
        else:
            cost = cost0[a:a + step, None]
        stats = stats0[a:a + step, None]  # [b, 1, K]
        if len(changes):
            cm = np.cumsum(wa[:, rn[moving], None] * dmove, axis=1)  # [b, M, K]
            stats = np.concatenate([stats, stats + cm[:, upto - 1]], 1)  # [b, runs, K]
        nb = n[a:a + step, None]
        yield slice(a, a + step), s.metric_of(stats, nb, metric), cost[:, run_end] / nb, ref[a:a + step]


def frontier_at_budgets(staged: Staged, weights: np.ndarray, *, budgets, reference_cost: np.ndarray,
                        metric: str) -> np.ndarray:
    """Best ``metric`` with mean cost at most ``reference mean / k``, for each weight row and budget ``k``.

    Parameters
    ----------
    staged : Staged
    weights : ndarray, shape (B, N)
        Example counts (bootstrap resamples; a row of ones is the data itself).
    budgets : sequence of float, length J
        Speed-ups ``k`` (x).
    reference_cost : ndarray, shape (N,)
        The common reference.
    metric : str

    Returns
    -------
    ndarray, shape (B, J)
        NaN where no threshold is cheap enough. Exact: a resample's distinct thresholds are among the data's, so
        every row of its sweep is accounted for with the resample's weights.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    out = np.empty((len(weights), len(budgets)))
    for rows, m, mean_cost, ref in _runs(staged, weights, reference_cost=reference_cost, metric=metric):
        for j, k in enumerate(budgets):  # few budgets
            ok = mean_cost <= ref[:, None] / k + 1e-9 * ref[:, None]
            out[rows, j] = np.where(ok.any(1), np.where(ok, m, -np.inf).max(1), np.nan)
    return out


def speedup_at_drop(staged: Staged, weights: np.ndarray, *, max_drop: float, reference_cost: np.ndarray,
                    metric: str) -> np.ndarray:
    """Largest speed-up (reference mean / policy mean cost) whose ``metric`` is within ``max_drop`` (absolute) of
    the last stage's on the same data, for each weight row ``[B]``: :attr:`Summary.speedup_at_drop_upper_bound`
    of every resample at once (the last stage on every example always qualifies, so at least its speed-up)."""
    out = np.empty(len(weights))
    for rows, m, mean_cost, ref in _runs(staged, weights, reference_cost=reference_cost, metric=metric):
        ok = m >= m[:, :1] - max_drop - 1e-12
        out[rows] = ref / np.where(ok, mean_cost, np.inf).min(1)
    return out


@dataclass(frozen=True, repr=False, eq=False)
class Comparison(_Table):
    """One row per budget: each policy's frontier metric, ``difference`` (a - b), its interval and the share of
    resamples where a is better."""

    frame: pd.DataFrame
    metric: str
    reference: str
    n_boot: int
    ci: float
    seed: int
    title = "Comparison (paired bootstrap)"


def _seeds(x) -> list[Staged]:
    views = [x] if isinstance(x, Staged) else list(x)
    if not views or not all(isinstance(v, Staged) for v in views):
        raise TypeError("compare takes Staged views, or lists of them (one per training seed)")
    return views


def _align(a, b, metric, *, names=("a", "b"), subset: bool = False):
    """Both policies' views on one set of examples, in ``a``'s order, after :func:`check_same_data` (same task,
    split, label set, examples and gold labels; ``subset``: only the examples every view holds)."""
    A, Bv = _seeds(a), _seeds(b)
    names = _check_names(names)
    _check_seeds(A, names[0])
    _check_seeds(Bv, names[1])
    labels = [f"{names[0]}[{i}]" if len(A) > 1 else names[0] for i in range(len(A))] + \
             [f"{names[1]}[{i}]" if len(Bv) > 1 else names[1] for i in range(len(Bv))]
    ids = A[0].example_ids
    if subset:
        for v in A + Bv:
            ids = ids[np.isin(ids, v.example_ids)]
        if not len(ids):
            raise ValueError(f"compare: the views share no example: {describe(A[0], labels[0])}; "
                             f"{describe(Bv[0], labels[-1])}")
    views = [v.align(ids) for v in A + Bv] if subset else A + Bv
    for v, nm in zip(views[1:], labels[1:]):
        check_same_data(v, views[0], names=(nm, labels[0]), what="compare")
    A = [v.align(ids) if not np.array_equal(v.example_ids, ids) else v for v in views[:len(A)]]
    Bv = [v.align(ids) if not np.array_equal(v.example_ids, ids) else v for v in views[len(A):]]
    for v in A + Bv:
        if metric not in v.metric_names:
            raise ValueError(f"metric {metric!r} is not one of {v.metric_names}")
    return A, Bv


def _common_reference(A, Bv, reference):
    refs = {v.reference for v in A} | {v.reference for v in Bv}
    if reference is None:
        if len(refs) > 1:
            raise ValueError(f"the policies have different references {sorted(refs)}: pass reference='a' or 'b' to "
                             f"measure both budgets against one")
        reference = "a"
    if reference not in ("a", "b"):
        raise ValueError(f"reference must be 'a' or 'b', got {reference!r}")
    side = A if reference == "a" else Bv
    return side[0].reference, np.mean([v.reference_cost for v in side], 0)


def _seeds_label(A, Bv, same_runs: bool) -> str:
    """The frame's ``seeds``: runs per side, and whether they are the same runs resampled together."""
    return f"{len(A)} / {len(Bv)}" + (" (same runs)" if same_runs else "")


def _paired(A, Bv, statistic, *, n_boot, ci, seed, same_runs: bool = False):
    """``statistic(view, weights) -> [1+B, J]`` on the data and ``n_boot`` shared example resamples, for every
    seed of both policies; seeds resampled per draw when a policy has several (two-level bootstrap). Returns the
    point estimates (means over seeds) ``[J]`` of a and b, the interval of ``a - b`` and the share of draws with
    ``a > b``. ``same_runs``: ``A[i]`` and ``Bv[i]`` are one training run scored two ways, so one seed draw serves
    both sides (resampling them apart adds the runs' spread to a difference that does not hold it)."""
    check_bootstrap(n_boot, ci)
    if same_runs and len(A) != len(Bv):
        raise ValueError(f"same_runs=True pairs the i-th view of each side (one training run scored two ways); the "
                         f"sides hold {len(A)} and {len(Bv)} runs")
    N = len(A[0].example_ids)
    clusters = A[0].clusters
    for v in A + Bv:
        if (v.clusters is None) != (clusters is None) or (clusters is not None and
                                                           not np.array_equal(v.clusters, clusters)):
            raise ValueError("the views group their examples into different clusters (e.g. prompts); compare views "
                             "of the same examples built the same way")
    va, vb = [[] for _ in A], [[] for _ in Bv]
    blocks = weight_blocks(N, n_boot=n_boot, seed=seed, clusters=clusters)
    for i, (_, w) in enumerate(blocks):  # blocks of resamples bound memory; the data itself is row 0
        w = np.vstack([np.ones((1, N)), w]) if i == 0 else w
        for out, views in ((va, A), (vb, Bv)):
            for o, v in zip(out, views):
                o.append(statistic(v, w))
    va = np.stack([np.concatenate(o) for o in va])  # [Sa, 1+B, J]
    vb = np.stack([np.concatenate(o) for o in vb])
    rng = np.random.default_rng(seed + 1)
    ia = rng.integers(0, len(A), (n_boot, len(A)))  # seeds resampled per draw (identity when one seed)
    ib = rng.integers(0, len(Bv), (n_boot, len(Bv)))
    ib = ia if same_runs else ib
    draw = np.arange(n_boot)[:, None]
    ma = va[ia, 1 + draw].mean(1) if len(A) > 1 else va[0, 1:]  # [B, J]
    mb = vb[ib, 1 + draw].mean(1) if len(Bv) > 1 else vb[0, 1:]
    d = ma - mb
    q = (1 - ci) / 2
    with warnings.catch_warnings():  # a budget no policy reaches gives NaN rows, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(d, [q, 1 - q], axis=0)
        better = np.nanmean(np.where(np.isfinite(d), d > 0, np.nan), 0)
    return va[:, 0].mean(0), vb[:, 0].mean(0), lo, hi, better


def compare(a: Staged | Sequence[Staged], b: Staged | Sequence[Staged], *, budgets=(2.0, 3.0, 4.0),
            metric: str = "accuracy", reference: str | None = None, n_boot: int = 1000, ci: float = 0.95,
            seed: int = 0, names: tuple[str, str] = ("a", "b"), subset: bool = False,
            same_runs: bool = False) -> Comparison:
    """Paired-bootstrap difference ``a - b`` of the frontier metric at equal budgets.

    Parameters
    ----------
    a, b : Staged or list of Staged
        Policies on the same examples (aligned by example id); a list holds one view per training seed (two-level
        bootstrap: seeds, then examples).
    budgets : sequence of float
        Speed-ups (x) against the common reference.
    metric : str
        Metric compared (default accuracy).
    reference : {"a", "b"}, optional
        Whose reference cost defines the budgets; required when the two references differ by name.
    n_boot, ci, seed
        Resamples, interval coverage and seed (one set of example weights shared by both policies).
    names : tuple of str
        Labels of the two policies in the frame.
    subset : bool
        Compare on the examples both sides hold when one holds fewer (default: refuse; the sides must be views of
        one task, split, label set and example set, with the same gold labels; their models may differ).
    same_runs : bool
        The two sides are the same training runs scored two ways (``a[i]`` and ``b[i]`` one run, e.g. energy and
        max-prob routing, or calibrated and T=1): one seed draw per resample serves both sides (default: each
        side's seeds are resampled on their own, as for policies trained apart).
    """
    budgets = _check_budgets(budgets)
    A, Bv = _align(a, b, metric, names=names, subset=subset)
    ref_name, ref_cost = _common_reference(A, Bv, reference)

    def stat(v, w):
        return frontier_at_budgets(v, w, budgets=budgets, reference_cost=ref_cost, metric=metric)

    ea, eb, lo, hi, better = _paired(A, Bv, stat, n_boot=n_boot, ci=ci, seed=seed, same_runs=same_runs)
    frame = pd.DataFrame({"budget": [f"{k:g}x" for k in budgets], "speedup": np.asarray(budgets, float),
                          names[0]: ea, names[1]: eb, "difference": ea - eb, "lo": lo, "hi": hi,
                          f"P({names[0]} > {names[1]})": better, "seeds": _seeds_label(A, Bv, same_runs)})
    frame.attrs["statistic"] = f"best {metric} at mean cost <= {ref_name} / budget (frontier)"
    return Comparison(frame, metric, ref_name, n_boot, ci, seed)


def compare_speedups(a: Staged | Sequence[Staged], b: Staged | Sequence[Staged], *, max_drop: float = 0.0,
                     metric: str = "accuracy", reference: str | None = None, n_boot: int = 1000, ci: float = 0.95,
                     seed: int = 0, names: tuple[str, str] = ("a", "b"), subset: bool = False,
            same_runs: bool = False) -> Comparison:
    """Paired-bootstrap difference ``a - b`` of the largest speed-up whose ``metric`` is within ``max_drop``
    (absolute) of each policy's last stage (``max_drop=0``: "reaches the last stage's metric at ...x").

    The statistic is the best threshold on the data for each policy (an upper bound, the same on both sides); the
    resamples redo that choice. Options as in :func:`compare`; one row, ``speedup`` columns in x.
    """
    _check_real(max_drop, "max_drop must be a finite number >= 0 (absolute)", valid=lambda x: x >= 0)
    A, Bv = _align(a, b, metric, names=names, subset=subset)
    ref_name, ref_cost = _common_reference(A, Bv, reference)

    def stat(v, w):
        return speedup_at_drop(v, w, max_drop=max_drop, reference_cost=ref_cost, metric=metric)[:, None]

    ea, eb, lo, hi, better = _paired(A, Bv, stat, n_boot=n_boot, ci=ci, seed=seed, same_runs=same_runs)
    frame = pd.DataFrame({"max_drop": [float(max_drop)], names[0]: ea, names[1]: eb, "difference": ea - eb,
                          "lo": lo, "hi": hi, f"P({names[0]} > {names[1]})": better,
                          "seeds": _seeds_label(A, Bv, same_runs)})
    frame.attrs["statistic"] = (f"largest speed-up (x, against {ref_name}) with {metric} within {max_drop:g} of "
                                f"the policy's last stage")
    return Comparison(frame, metric, ref_name, n_boot, ci, seed)


# ------------------------------------------------------------------------------------------------- cross-fitted
def _crossfit_outcomes(v: Staged, rows: tuple[np.ndarray, np.ndarray], opts: dict):
    """Per example of ``v``: the outcome statistics and cost where it stops under the threshold chosen (by
    ``opts``) on the *other* half; ``[N, K]`` and ``[N]`` (the stops of :meth:`CrossFit.stops`)."""
    stop = _stops_by_halves(v, rows, tuple(_choose(v.subset(r), **opts) for r in rows))
    every = np.arange(v.n_examples)
    return v.stats[every, stop], v.cost[every, stop]


def compare_crossfit(a: Staged | Sequence[Staged], b: Staged | Sequence[Staged], *, rule: str = "budget",
                     budget: float | None = None, max_drop: float = 0.01, delta: float = 0.01, epsilon: float = 0.05,
                     metric: str = "accuracy", reference: str | None = None, n_boot: int = 1000, ci: float = 0.95,
                     seed: int = 0, names: tuple[str, str] = ("a", "b"), subset: bool = False,
            same_runs: bool = False) -> Comparison:
    """Paired-bootstrap difference ``a - b`` of the operating points each policy *chooses* by cross-fitting: the
    threshold is chosen by ``rule`` on one seeded half of the examples and applied to the other, then the halves
    swap (the same halves for both policies), so every example is scored by a threshold chosen without it.

    Two rows: ``metric`` (the realised metric) and ``speedup`` (the realised speed-up against the common
    reference), each policy's value, the difference, its interval and the share of resamples where a is ahead.
    The chosen thresholds are held fixed in the resamples (examples resampled; training seeds too, two-level, as
    in :func:`compare`). Options as in :func:`toolkit.analysis.engine.choose` and :func:`compare`.

    Unlike :func:`compare` (each side's best threshold on the data: an upper bound for both), this is what a
    user choosing the threshold on held-out data gets.
    """
    A, Bv = _align(a, b, metric, names=names, subset=subset)
    ref_name, ref_cost = _common_reference(A, Bv, reference)
    A = [v.with_reference(ref_cost, ref_name) for v in A]
    Bv = [v.with_reference(ref_cost, ref_name) for v in Bv]
    rows = halves(A[0].example_ids, seed=seed, strata=A[0].strata, clusters=A[0].clusters)
    opts = dict(rule=rule, metric=metric, max_drop=max_drop, delta=delta, epsilon=epsilon, budget=budget)
    outcomes = {id(v): _crossfit_outcomes(v, rows, opts) for v in A + Bv}

    def stat(v, w):
        stats, cost = outcomes[id(v)]
        n = w.sum(1)
        m = v.metric_of(w @ stats, n, metric)
        return np.stack([m, (w @ v.reference_cost) / (w @ cost)], 1)  # [1+B, 2]

    ea, eb, lo, hi, better = _paired(A, Bv, stat, n_boot=n_boot, ci=ci, seed=seed, same_runs=same_runs)
    setting = (f"budget {budget:g}x" if rule == "budget" else f"drop <= {max_drop:g}" if rule == "drop"
               else f"risk delta {delta:g}, epsilon {epsilon:g}")
    frame = pd.DataFrame({"statistic": [metric, "speedup"], "rule": setting, names[0]: ea, names[1]: eb,
                          "difference": ea - eb, "lo": lo, "hi": hi, f"P({names[0]} > {names[1]})": better,
                          "seeds": _seeds_label(A, Bv, same_runs)})
    frame.attrs["statistic"] = (f"{metric} and speed-up (against {ref_name}) of the threshold chosen by rule "
                                f"{setting} on the other half (cross-fitted, halves seed {seed})")
    return Comparison(frame, metric, ref_name, n_boot, ci, seed)


def _stage_index(v: Staged, stage: int | str, side: str) -> int:
    """Index of ``stage`` (a name of ``v.stage_names`` or a position, negative from the end) in one side's view."""
    names = tuple(v.stage_names)
    if isinstance(stage, str):
        if stage not in names:
            raise ValueError(f"compare_confident: {side} has no stage {stage!r}; its stages are {names}")
        return names.index(stage)
    if isinstance(stage, (bool, np.bool_)) or not isinstance(stage, (int, np.integer)) or \
            not -len(names) <= stage < len(names):
        raise ValueError(f"compare_confident: stage {stage!r} of {side} is not a stage name or a position in "
                         f"0..{len(names) - 1} (or negative from the end); its stages are {names}")
    return int(stage) % len(names)


def _confident_weights(conf: np.ndarray, w: np.ndarray, *, threshold, coverage) -> np.ndarray:
    """Per resample (rows of ``w``, example counts ``[b, N]``), how much of each example counts as answered:
    ``w`` where the confidence is >= ``threshold``; or the most confident ``coverage`` share of the resample's
    examples, the boundary counted in part so that the share is exact (a group of equal confidences there answered
    in equal proportion, whatever the rows' order)."""
    if threshold is not None:
        return w * (conf >= threshold)
    order = np.argsort(-conf, kind="stable")
    wo = w[:, order]
    n = w.sum(1, keepdims=True)
    want = coverage * n
    # q * n one rounding off a whole count (0.07 * 100 = 7.000000000000001) would answer a 1e-15 sliver of the next
    # example and report its confidence as the boundary: snap to the count (weights are counts)
    want = np.where(np.abs(want - np.round(want)) <= 1e-12 * n, np.round(want), want)
    # a group of equal confidences at the boundary shares its answered part in proportion to weight (the expected
    # value over orders of the tie), so the result does not depend on the rows' order
    cs = conf[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(cs))))
    gw = np.add.reduceat(wo, starts, axis=1)  # [b, G]
    take = np.clip(want - (np.cumsum(gw, 1) - gw), 0.0, gw)
    share = np.divide(take, gw, out=np.zeros_like(take), where=gw > 0)
    out = np.empty_like(wo)
    out[:, order] = wo * share[:, group]
    return out


def _boundary_confidence(conf: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The lowest confidence among the examples answered (any part) in each resample, ``[b]`` (NaN if none)."""
    lowest = np.where(part > 0, conf, np.inf).min(1)
    return np.where(np.isfinite(lowest), lowest, np.nan)


def compare_confident(a: Staged | Sequence[Staged], b: Staged | Sequence[Staged], *, threshold: float | None = None,
                      coverage: float | None = None, stages: tuple[int | str, int | str] = (0, 0),
                      metric: str = "accuracy", n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                      names: tuple[str, str] = ("a", "b"), subset: bool = False,
                      same_runs: bool = False) -> Comparison:
    """Paired-bootstrap difference ``a - b`` of how good each side's *confident* decisions are (CascadeBERT's
    question: is a shallow exit's confidence a reliable signal?).

    Each side's decisions at its stage (``stages``: a name or a position per side) are ranked by the confidence the
    views were built with (``engine.staged(cache, score=...)``); exactly one of

    - ``coverage`` (0 < q <= 1): each side answers its most confident share ``q`` of the examples (matched
      coverage: selective classification's metric at coverage q, the fair comparison, since both answer as many).
      Rows: ``metric`` on the answered examples, and ``lowest confidence answered`` (the confidence at the
      boundary);
    - ``threshold``: each side answers the examples whose confidence is >= threshold. Rows: ``metric`` on them and
      ``confident share`` (0..1). Two models confident on different shares are not directly comparable: the one
      confident on fewer examples is judged on easier ones.

    Resampling as in :func:`compare` (the same example resamples for both sides; training seeds two-level; each
    resample re-ranks its own examples). Where a side has no answered example its metric is NaN, and so is the
    row's difference and interval; with ``threshold``, a resample in which a side answers nothing has no metric and
    is left out of the interval (so with few confident examples the interval is conditional on some being drawn).
    The confidences at the chosen stages must be finite (a view's last column may hold anything: it is never read
    by a threshold rule).
    """
    if (threshold is None) == (coverage is None):
        raise ValueError("compare_confident takes exactly one of threshold= (a confidence) or coverage= (a share of "
                         f"examples, 0 < q <= 1), got threshold={threshold!r}, coverage={coverage!r}")
    if coverage is None:
        _check_real(threshold, "threshold must be a finite number (a confidence)")
    else:
        _check_real(coverage, "coverage must be a share of examples, 0 < q <= 1", valid=lambda q: 0 < q <= 1)
    if not isinstance(stages, (tuple, list)) or len(stages) != 2:
        raise ValueError(f"stages must hold one stage per side, (a's, b's), got {stages!r}")
    A, Bv = _align(a, b, metric, names=names, subset=subset)
    names = _check_names(names)
    taken = {"statistic", "rule", "difference", "lo", "hi", "seeds"} & set(names)
    if taken:
        raise ValueError(f"names {names!r}: {sorted(taken)} is a column of the result; name the sides otherwise")
    # one view passed as both sides (two stages of one model) must be looked up per side: give b its own object
    Bv = [copy.copy(v) if any(v is u for u in A) else v for v in Bv]
    at = {id(v): _stage_index(v, st, nm) for views, st, nm in ((A, stages[0], names[0]), (Bv, stages[1], names[1]))
          for v in views}
    for views, nm in ((A, names[0]), (Bv, names[1])):
        for i, v in enumerate(views):
            bad = ~np.isfinite(v.confidence[:, at[id(v)]])
            if bad.any():
                raise ValueError(f"compare_confident: {nm}{f'[{i}]' if len(views) > 1 else ''} has "
                                 f"{int(bad.sum())} non-finite confidences at stage "
                                 f"{v.stage_names[at[id(v)]]!r} (e.g. example {str(v.example_ids[bad][0])!r}); a "
                                 f"view's last column may hold placeholders: rank a stage with real confidences")

    def stat(v, w):
        e = at[id(v)]
        conf = v.confidence[:, e]
        part = _confident_weights(conf, w, threshold=threshold, coverage=coverage)
        n = part.sum(1)  # [b] examples answered per resample
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(n > 0, v.metric_of(np.tensordot(part, v.stats[:, e], axes=1), n, metric), np.nan)
        second = n / w.sum(1) if coverage is None else _boundary_confidence(conf, part)
        return np.stack([m, second], 1)  # [b, 2]

    ea, eb, lo, hi, better = _paired(A, Bv, stat, n_boot=n_boot, ci=ci, seed=seed, same_runs=same_runs)
    missing = np.isnan(ea) | np.isnan(eb)
    lo, hi, better = (np.where(missing, np.nan, x) for x in (lo, hi, better))
    stage_names = [A[0].stage_names[at[id(A[0])]], Bv[0].stage_names[at[id(Bv[0])]]]
    rule, first, second = ((f"confidence >= {threshold:g}", f"{metric} when confident", "confident share")
                           if coverage is None else
                           (f"coverage {coverage:g}", f"{metric} at coverage {coverage:g}",
                            "lowest confidence answered"))
    frame = pd.DataFrame({"statistic": [first, second], "rule": rule, names[0]: ea, names[1]: eb,
                          "difference": ea - eb, "lo": lo, "hi": hi, f"P({names[0]} > {names[1]})": better,
                          "seeds": _seeds_label(A, Bv, same_runs)})
    frame.attrs["statistic"] = (f"{metric} on the examples each side answers ({rule}) at stage "
                                f"{stage_names[0]!r} ({names[0]}) and {stage_names[1]!r} ({names[1]})")
    return Comparison(frame, metric, A[0].reference, n_boot, ci, seed)


def _check_names(names) -> tuple[str, str]:
    if (not isinstance(names, (tuple, list)) or len(names) != 2 or not all(isinstance(n, str) and n for n in names)
            or names[0] == names[1]):
        raise ValueError(f"names must be two different non-empty labels, one per side, got {names!r}")
    return tuple(names)


def _check_real(value, message: str, *, valid=lambda x: True, after: str = "") -> None:
    """Refuse ``value`` unless it is a finite real number (a Python or numpy int or float; not a bool, a string or
    an array) for which ``valid`` holds: ``ValueError(f"{message}, got {value!r}{after}")``. The one check of the
    numeric options of :func:`compare` (budgets), :func:`compare_speedups` (max_drop) and :func:`compare_confident`
    (threshold, coverage)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not _finite(value) or not valid(value):
        raise ValueError(f"{message}, got {value!r}{after}")


def _finite(value) -> bool:
    """``math.isfinite``, False for a Python int too large for a float (where it raises OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_budgets(budgets) -> np.ndarray:
    """Budgets as a float array: a non-empty sequence of real, finite speed-ups > 0 (in x)."""
    vals = [budgets] if np.ndim(budgets) == 0 and not isinstance(budgets, str) else budgets
    if isinstance(vals, str) or not len(vals):
        raise ValueError(f"budgets must be a non-empty sequence of speed-ups (x, > 0), got {budgets!r}")
    for k in vals:
        _check_real(k, "budgets are speed-ups (x): finite numbers > 0", valid=lambda x: x > 0,
                    after=f" in {list(vals)!r}")
    return np.asarray(vals, dtype=np.float64)


def _check_seeds(views: list[Staged], name: str) -> None:
    """One side's views: unique example ids in each; several views are seeds of one policy (same stages, not the
    same run twice)."""
    for i, v in enumerate(views):
        ids = np.asarray(v.example_ids)
        if len(np.unique(ids)) != len(ids):
            u, c = np.unique(ids, return_counts=True)
            raise ValueError(f"compare: {name}{f'[{i}]' if len(views) > 1 else ''} holds example "
                             f"{str(u[c > 1][0])!r} {int(c.max())} times ({len(ids) - len(u)} repeated rows); each "
                             f"example must appear once (a subset with repeated rows weights them twice)")
    for i, v in enumerate(views[1:], 1):
        if tuple(v.stage_names) != tuple(views[0].stage_names):
            raise ValueError(f"compare: {name}[{i}] has stages {tuple(v.stage_names)}, {name}[0] "
                             f"{tuple(views[0].stage_names)}: a list holds seeds of one policy (one architecture); "
                             f"compare different models as two sides")
        for j in range(i):
            u, w = views[j], v
            same_w = (u.meta.get("identity") or {}).get("models")
            if u is w or (same_w is not None and same_w == (w.meta.get("identity") or {}).get("models")) or (
                    u.confidence.shape == w.confidence.shape and np.array_equal(u.confidence, w.confidence)
                    and np.array_equal(u.example_ids, w.example_ids)):
                raise ValueError(f"compare: {name}[{j}] and {name}[{i}] are the same run (same weights or the same "
                                 f"confidences); seeds are runs trained with different seeds, each counted once")
