"""Choosing apart from describing: a rule picks a threshold on cal (:func:`choose`), the frozen
:class:`OperatingPoint` is then evaluated on test; :func:`crossfit` does both on two seeded halves of one split.

Rules (each names its metric, accuracy unless asked):

- ``"drop"``: the cheapest threshold whose cal ``metric`` is within ``max_drop`` (absolute) of the last stage's;
- ``"risk"``: Learn-then-Test, the cheapest threshold whose loss (for classification: last stage right, stop
  wrong, which bounds the accuracy drop) is at most ``delta`` with probability ``1 - epsilon``
  (:mod:`toolkit.analysis.engine.risk`);
- ``"budget"``: the best cal ``metric`` among thresholds whose cal speed-up is at least ``budget`` (x, against
  the view's reference);
- ``"target"``: the cheapest threshold whose cal ``metric`` reaches ``target`` (absolute, e.g. agreement 0.95 with
  an LLM's full model); refused when no threshold reaches it.

A rule refuses a cal set too small for it and says how many examples it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from toolkit._api import keyword_options
from toolkit.analysis.engine.curves import (
    check_bootstrap,
    check_seed,
    evaluation,
    resamples_per_block,
    sweep,
    weight_blocks,
)
from toolkit.analysis.engine.results import Curve, Evaluation, html_table, text_repr
from toolkit.analysis.engine.risk import certify
from toolkit.analysis.engine.staged import Staged, exit_stage
from toolkit.caches.identity import check_transfer
from toolkit.data.tasks import dev_halves

RULES = ("drop", "risk", "budget", "target")


def _check_same_stages(a: Staged, b: Staged, what: str) -> None:
    if tuple(a.stage_names) != tuple(b.stage_names):
        raise ValueError(f"{what}: stages differ ({a.stage_names} vs {b.stage_names}); collect both splits with the "
                         f"same models")
    if a.reference != b.reference:
        raise ValueError(f"{what}: references differ ({a.reference!r} vs {b.reference!r}); build both views with the "
                         f"same reference")
    if a.metric_names != b.metric_names:
        raise ValueError(f"{what}: metrics differ ({a.metric_names} vs {b.metric_names})")


TEST_SPLITS = ("test", "validation", "valid", "val", "eval", "evaluation", "heldout")


def is_test_split(split) -> bool:
    """Whether a split name means data kept for reporting, in any spelling ("test", "TEST", " Test-1",
    "validation", "eval" ...): nothing may be chosen on it."""
    if split is None:
        return False
    norm = "".join(ch for ch in str(split).lower() if ch.isalpha())
    return norm in TEST_SPLITS or norm.startswith(("test", "validation", "heldout"))


VIEW_KEYS = ("score", "temperature", "how", "family", "propagate")  # how a view was built: a threshold holds for one


@dataclass(frozen=True, eq=False)
class OperatingPoint:
    """A threshold chosen on cal by a named rule; :meth:`evaluate` applies it, unchanged, to other data.

    ``meta`` records how the cal view was built (its :data:`VIEW_KEYS` that it sets, e.g. an LLM view's exit
    ``family``) and its identity; :meth:`evaluate` refuses a view built another way."""

    threshold: float
    rule: str
    metric: str
    settings: Mapping
    cal: Evaluation
    stage_names: tuple[str, ...]
    reference: str
    meta: Mapping = field(default_factory=dict)

    def evaluate(self, staged: Staged, *, n_boot: int = 0, ci: float = 0.95, seed: int = 0,
                 transfer: bool = False) -> Evaluation:
        """This threshold on ``staged`` (test), with percentile bootstrap intervals when ``n_boot`` > 0. A view of
        another task, label set or models than cal's is refused unless ``transfer`` (a deliberate transfer)."""
        self._check_view(staged, transfer=transfer, what="OperatingPoint.evaluate")
        return evaluation(staged, self.threshold, n_boot=n_boot, ci=ci, seed=seed)

    def stops(self, staged: Staged, *, transfer: bool = False) -> np.ndarray:
        """Stage where each example of ``staged`` stops under this threshold, ``[N]`` (0-based stage indices; with
        :func:`~toolkit.analysis.engine.evaluation_at_stages` any statistic of the point, e.g. its paired drop
        interval). The view is checked as by :meth:`evaluate`."""
        self._check_view(staged, transfer=transfer, what="OperatingPoint.stops")
        return staged.stage_of(self.threshold)

    def _check_view(self, staged: Staged, *, transfer: bool, what: str) -> None:
        if "identity" in self.meta:
            check_transfer(self.meta["identity"], staged, transfer=transfer, what=what)
        if tuple(staged.stage_names) != self.stage_names or staged.reference != self.reference:
            raise ValueError(f"this operating point was chosen on stages {self.stage_names} with reference "
                             f"{self.reference!r}; got stages {staged.stage_names}, reference {staged.reference!r}")
        for k in VIEW_KEYS:
            if k in self.meta and staged.meta.get(k) != self.meta[k]:
                raise ValueError(f"this operating point was chosen with {k}={self.meta[k]!r}; evaluate it on a view "
                                 f"built the same way (got {k}={staged.meta.get(k)!r})")

    def to_dict(self) -> dict:
        return {"rule": self.rule, "metric": self.metric, **self.settings, "threshold": self.threshold,
                "reference": self.reference, "cal_n": self.cal.n, f"cal_{self.metric}": self.cal.metrics[self.metric],
                f"cal_{self.metric}_drop": self.cal.drop(self.metric), "cal_speedup": self.cal.speedup,
                **{k: v for k, v in self.meta.items() if k in VIEW_KEYS}}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def _repr_html_(self) -> str:
        return html_table("Operating point (chosen on cal)", self.to_dict())

    def __repr__(self) -> str:
        return text_repr("Operating point (chosen on cal; evaluate() applies it elsewhere):", self.to_frame())


def _rule_settings(rule, *, max_drop, delta, epsilon, budget, target=None):
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")
    if rule == "target":
        if target is None or not np.isfinite(target):
            raise ValueError(f"rule 'target' needs target= the value of the metric to reach on cal, got {target}")
        return {"target": float(target)}
    if rule == "drop":
        if not max_drop >= 0:
            raise ValueError(f"max_drop must be >= 0, got {max_drop}")
        return {"max_drop": float(max_drop)}
    if rule == "risk":
        return {"delta": float(delta), "epsilon": float(epsilon)}
    if budget is None or not (budget > 0 and np.isfinite(budget)):
        raise ValueError(f"rule 'budget' needs budget= a positive speed-up (x, against the reference; below 1 where "
                         f"every policy costs more than the reference, e.g. an LLM's exit heads), got {budget}")
    return {"budget": float(budget)}


def _pick(cal: Staged, rule: str, metric: str, settings: dict) -> float:
    if rule == "risk":
        return certify(cal, delta=settings["delta"], epsilon=settings["epsilon"]).threshold
    return _pick_on_sweep(sweep(cal), rule, metric, settings)


def _pick_on_sweep(curve: Curve, rule: str, metric: str, settings: dict) -> float:
    df = curve.frame
    if rule == "drop":
        need = math.ceil(1 / settings["max_drop"] - 1e-9) if settings["max_drop"] > 0 else 1
        if curve.n < need:
            raise ValueError(f"the drop rule with max_drop={settings['max_drop']} needs at least {need} cal examples "
                             f"(one example must move {metric} by no more than max_drop); got {curve.n}")
        ok = df[df[metric] >= df[metric].iloc[0] - settings["max_drop"] - 1e-12]
        return float(ok.loc[ok["flops"].idxmin(), "threshold"])
    if rule == "target":
        ok = df[df[metric] >= settings["target"] - 1e-12]
        if not len(ok):
            raise ValueError(f"no threshold reaches {metric} {settings['target']:g} on cal (at most "
                             f"{df[metric].max():.4g}); lower the target")
        return float(ok.loc[ok["flops"].idxmin(), "threshold"])
    ok = df[df["speedup"] >= settings["budget"] - 1e-12]
    if not len(ok):
        raise ValueError(f"no threshold reaches {settings['budget']:g}x against {curve.reference} on cal (at most "
                         f"{df['speedup'].max():.2f}x)")
    best = ok[ok[metric] >= ok[metric].max() - 1e-12]
    return float(best.loc[best["flops"].idxmin(), "threshold"])


def threshold_on_sweep(curve: Curve, *, rule: str = "drop", metric: str = "accuracy", max_drop: float = 0.01,
                       budget: float | None = None, target: float | None = None) -> float:
    """The threshold :func:`choose` picks by the ``drop``, ``budget`` or ``target`` rule, from the exact sweep of the cal view
    (``sweep(cal)``) already at hand: for tools that keep the sweep and apply a rule again at interactive speed.

    >>> from toolkit.caches.classification import from_arrays
    >>> from toolkit.analysis.engine import from_classification
    >>> lg = np.log(np.array([[[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.45, 0.55], [0.1, 0.9]]]))
    >>> curve = sweep(from_classification(from_arrays(lg, [0, 1], [1.0, 2.0, 3.0])))
    >>> round(threshold_on_sweep(curve, rule="budget", budget=2.0), 4)  # rows 0.7 (2x) and 0.6 (3x) tie: cheapest
    0.6
    """
    if not curve.exact or "threshold" not in curve.frame:
        raise ValueError("a rule picks among every distinct threshold: pass the exact sweep (engine.sweep), not a "
                         "curve evaluated at chosen thresholds")
    if rule == "risk":
        raise ValueError("the risk rule certifies on the view itself, not on its curve: use choose(cal, rule='risk')")
    if metric not in curve.frame:
        raise ValueError(f"metric {metric!r} is not a column of this curve: {list(curve.frame.columns)}")
    settings = _rule_settings(rule, max_drop=max_drop, delta=0.0, epsilon=0.0, budget=budget, target=target)
    return _pick_on_sweep(curve, rule, metric, settings)


def choose(cal: Staged, *, rule: str = "drop", metric: str = "accuracy", max_drop: float = 0.01,
           delta: float = 0.01, epsilon: float = 0.05, budget: float | None = None,
           target: float | None = None) -> OperatingPoint:
    """Pick a threshold on ``cal`` by a named rule (see the module docstring); returns a frozen operating point.

    Parameters
    ----------
    cal : Staged
        The view of the cal split (a split never used for reporting). A view of split ``"test"`` is refused: use
        :func:`crossfit` to choose and report on one split honestly.
    rule : {"drop", "risk", "budget", "target"}
    metric : str
        What ``drop`` and ``budget`` look at (a metric of the view; default accuracy). ``risk`` controls the view's
        loss; its table also reports the drop in the headline metric.
    max_drop : float
        ``drop``: tolerated absolute drop of ``metric`` against the last stage on cal.
    delta, epsilon : float
        ``risk``: the risk level and the error probability.
    budget : float
        ``budget``: the speed-up to reach on cal (x, against ``cal.reference``).
    target : float
        ``target``: the value of ``metric`` to reach on cal (the cheapest threshold that does).
    """
    if is_test_split(cal.split):
        raise ValueError(f"choose on a cal split, not test (split {cal.split!r} is kept for reporting: a threshold "
                         f"picked on it is an upper bound, not an operating point); to choose and report on one "
                         f"split, use crossfit()")
    return _choose(cal, rule=rule, metric=metric, max_drop=max_drop, delta=delta, epsilon=epsilon, budget=budget,
                   target=target)


def _choose(cal, *, rule, metric, max_drop, delta, epsilon, budget, target=None) -> OperatingPoint:
    if metric not in cal.metric_names:
        raise ValueError(f"metric {metric!r} is not one of this view's metrics {cal.metric_names}")
    settings = _rule_settings(rule, max_drop=max_drop, delta=delta, epsilon=epsilon, budget=budget, target=target)
    thr = _pick(cal, rule, metric, settings)
    ev = evaluation(cal, thr)
    meta = {k: cal.meta[k] for k in (*VIEW_KEYS, "identity") if k in cal.meta}
    return OperatingPoint(thr, rule, metric, settings, ev, tuple(cal.stage_names), cal.reference, meta)


# ------------------------------------------------------------------------------------------------- cross-fitting
@dataclass(frozen=True, eq=False)
class CrossFit:
    """Two folds (choose on one half, evaluate on the other) and their combination over the whole split.

    ``combined``: metrics of the pooled outcomes of both evaluated halves (every example evaluated once, by a
    threshold chosen without it), with percentile bootstrap intervals (resampling examples within each half, the
    chosen thresholds held fixed). ``example_ids``, ``strata`` and ``clusters``: those of the view it was fit on, so
    that :meth:`stops` can check a view is that one; with ``seed`` they give :attr:`halves`.
    """

    folds: tuple[OperatingPoint, OperatingPoint]
    evaluations: tuple[Evaluation, Evaluation]
    combined: Evaluation
    seed: int
    example_ids: np.ndarray | None = None
    strata: np.ndarray | None = None
    clusters: np.ndarray | None = None

    @cached_property
    def halves(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Row indices of halves A and B of the view it was fit on (:func:`halves` of its example ids, strata and
        clusters with :attr:`seed`, as :func:`crossfit` drew them); None where it does not record that view."""
        if self.example_ids is None:
            return None
        return halves(self.example_ids, seed=self.seed, strata=self.strata, clusters=self.clusters)

    def stops(self, staged: Staged) -> np.ndarray:
        """Stage where each example of ``staged`` stops, ``[N]``: half B under the threshold chosen on half A (fold
        1), half A under the one chosen on half B (fold 2), so every example by a threshold chosen without it. With
        :func:`~toolkit.analysis.engine.evaluation_at_stages` it gives any statistic of the cross-fitted point (its
        metrics are :attr:`combined`'s), e.g. the paired drop interval. ``staged`` must be the view this was fit on
        (same example ids in the same order, strata and clusters; same stages, reference and build as the folds)."""
        if self.example_ids is None:
            raise ValueError("this CrossFit does not record the view it was fit on (built by hand?): rebuild it with "
                             "engine.crossfit(view, ...) to get its stops")
        _check_fit_view(self, staged)
        for fold in self.folds:
            fold._check_view(staged, transfer=False, what="CrossFit.stops")
        return _stops_by_halves(staged, self.halves, self.folds)

    def to_frame(self) -> pd.DataFrame:
        rows = [{"part": f"fold {i + 1}: chosen on half {'AB'[i]}, evaluated on half {'BA'[i]}",
                 **ev.to_dict()} for i, ev in enumerate(self.evaluations)]
        rows.append({"part": "combined", **self.combined.to_dict()})
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        return "<b>Cross-fit (choose on one half, evaluate on the other)</b>" + self.to_frame().to_html(
            index=False, float_format="{:.4g}".format)

    def __repr__(self) -> str:
        frame = self.to_frame().assign(part=["fold 1 (A -> B)", "fold 2 (B -> A)", "combined"])
        return text_repr("Cross-fit (a threshold chosen on half A, evaluated on half B, and back):", frame,
                         header="part")


def _stops_by_halves(staged: Staged, rows: tuple[np.ndarray, np.ndarray], folds) -> np.ndarray:
    """``[N]`` stages: rows[1] (half B) under folds[0]'s threshold (chosen on half A), rows[0] under folds[1]'s."""
    a, b = rows
    out = np.empty(staged.n_examples, dtype=np.int64)
    out[b] = exit_stage(staged.confidence[b], folds[0].threshold)
    out[a] = exit_stage(staged.confidence[a], folds[1].threshold)
    return out


def _plain(x):
    return x.item() if isinstance(x, np.generic) else x


def _check_fit_view(cf: CrossFit, staged: Staged) -> None:
    """Refuse a view other than the one ``cf`` was fit on, naming what differs and the fix."""
    fix = "pass the view crossfit() was given (the same cache, split and rows), or cross-fit this view"
    n = len(cf.example_ids)
    if staged.n_examples != n:
        raise ValueError(f"CrossFit.stops: this cross-fit was fit on {n} examples, the view has "
                         f"{staged.n_examples}; {fix}")
    ids, fit_ids = np.asarray(staged.example_ids), np.asarray(cf.example_ids)
    differ = np.flatnonzero(ids.astype(object) != fit_ids.astype(object))
    if len(differ):
        if ids.dtype.kind == fit_ids.dtype.kind and np.array_equal(np.sort(ids), np.sort(fit_ids)):
            raise ValueError("CrossFit.stops: the view holds the examples this cross-fit was fit on in another row "
                             "order; align it first: view.align(crossfit.example_ids)")
        k = int(differ[0])
        raise ValueError(f"CrossFit.stops: example ids differ from the view this cross-fit was fit on (row {k}: "
                         f"{_plain(ids[k])!r} vs {_plain(fit_ids[k])!r}); {fix}")
    for name in ("strata", "clusters"):
        mine, theirs = getattr(cf, name), None if getattr(staged, name) is None else np.asarray(getattr(staged, name))
        if (mine is None) != (theirs is None):
            raise ValueError(f"CrossFit.stops: the view {'has' if theirs is not None else 'has no'} {name}, the "
                             f"view this cross-fit was fit on {'had' if mine is not None else 'had no'}; {fix}")
        if mine is not None and not np.array_equal(theirs, mine):
            k = int(np.flatnonzero(theirs != mine)[0])
            raise ValueError(f"CrossFit.stops: {name} differ from the view this cross-fit was fit on (example "
                             f"{_plain(ids[k])!r}: {_plain(theirs[k])!r} vs {_plain(mine[k])!r}); {fix}")


@keyword_options
def halves(example_ids, *, seed: int, strata=None, clusters=None) -> tuple[np.ndarray, np.ndarray]:
    """Two seeded halves of a split as row indices: :func:`toolkit.data.tasks.dev_halves` (by example id, so independent
    of row order; stratified by ``strata``, e.g. labels, when given). With ``clusters`` (e.g. a token's prompt),
    whole clusters go to one half, drawn by cluster id (``strata`` then unused).

    >>> a, b = halves(np.array(["x", "y", "z", "w"]), seed=0)
    >>> sorted(a.tolist() + b.tolist()), len(a), len(b)
    ([0, 1, 2, 3], 2, 2)
    """
    check_seed(seed)
    if clusters is not None:
        ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
        half = dev_halves(ids, None, seed=seed)[inv.reshape(-1)]
    else:
        half = dev_halves(example_ids, strata, seed=seed)
    a, b = np.flatnonzero(half == 0), np.flatnonzero(half == 1)
    if not len(a) or not len(b):
        raise ValueError(f"cross-fitting needs two non-empty halves; {len(example_ids)} example(s) give halves of "
                         f"{len(a)} and {len(b)}: use a split with more examples")
    return a, b


def crossfit(staged: Staged, *, rule: str = "drop", metric: str = "accuracy", max_drop: float = 0.01,
             delta: float = 0.01, epsilon: float = 0.05, budget: float | None = None, seed: int = 0,
             n_boot: int = 1000, ci: float = 0.95, target: float | None = None) -> CrossFit:
    """Choose on one seeded half of ``staged`` and evaluate on the other, swap, and combine.

    For a split whose examples are exchangeable (no separate cal split from the same distribution), this reports
    what choosing by ``rule`` delivers on unseen examples, using every example once for evaluation. Options as in
    :func:`choose`; ``seed`` draws the halves (by example id, stratified by ``staged.strata``: the labels); ``n_boot``, ``ci`` the interval of the combination.
    """
    rows = a, b = halves(staged.example_ids, seed=seed, strata=staged.strata, clusters=staged.clusters)
    parts = (staged.subset(a), staged.subset(b))
    opts = dict(rule=rule, metric=metric, max_drop=max_drop, delta=delta, epsilon=epsilon, budget=budget,
                target=target)
    folds = tuple(_choose(p, **opts) for p in parts)
    evals = (folds[0].evaluate(parts[1]), folds[1].evaluate(parts[0]))
    at = _stops_by_halves(staged, rows, folds)
    stops = [at[b], at[a]]
    held = (parts[1], parts[0])
    N = staged.n_examples
    stats = [p.stats[np.arange(p.n_examples), st] for p, st in zip(held, stops)]
    cost = [p.cost[np.arange(p.n_examples), st] for p, st in zip(held, stops)]
    refs = [p.reference_cost for p in held]
    total = stats[0].sum(0) + stats[1].sum(0)
    m = staged.metrics(total, N)
    final = staged.metrics(staged.stats[:, -1].sum(0), N)
    mean_cost = (cost[0].sum() + cost[1].sum()) / N

    def pooled(field_of):
        return float((field_of(evals[0]) * evals[0].n + field_of(evals[1]) * evals[1].n) / N)

    intervals = {}
    if n_boot:
        check_bootstrap(n_boot, ci)
        b = resamples_per_block(*(p.n_examples for p in held))  # aligned blocks of both halves' resamples
        blocks = [weight_blocks(p.n_examples, n_boot=n_boot, seed=seed + 1 + i, clusters=p.clusters, block=b)
                  for i, p in enumerate(held)]
        draws: dict[str, list] = {}
        for (_, w0), (_, w1) in zip(*blocks):  # bounded memory; clusters (a token's prompt) resampled whole
            n = w0.sum(1) + w1.sum(1)
            c = (w0 @ cost[0] + w1 @ cost[1]) / n
            r = (w0 @ refs[0] + w1 @ refs[1]) / n
            for k, v in {**staged.metrics(w0 @ stats[0] + w1 @ stats[1], n), "flops": c, "speedup": r / c}.items():
                draws.setdefault(k, []).append(v)
        q = (1 - ci) / 2
        for k, v in draws.items():
            lo, hi = np.quantile(np.concatenate(v), [q, 1 - q])
            intervals[k] = (float(lo), float(hi))
    combined = Evaluation(metrics={k: float(v) for k, v in m.items()}, final={k: float(v) for k, v in final.items()},
                          flops=float(mean_cost), speedup=float(staged.reference_cost.mean() / mean_cost),
                          escalated=pooled(lambda e: e.escalated), final_share=pooled(lambda e: e.final_share),
                          mean_layers=pooled(lambda e: e.mean_layers), n=N, metric=staged.metric,
                          reference=staged.reference, threshold=(folds[0].threshold, folds[1].threshold),
                          split=staged.split, extras={k: pooled(lambda e, k=k: e.extras[k]) for k in staged.extras},
                          intervals=intervals, cost_unit=staged.meta.get("cost_unit", "FLOPs"))
    return CrossFit(folds, evals, combined, seed, example_ids=staged.example_ids.copy(),
                    strata=None if staged.strata is None else staged.strata.copy(),
                    clusters=None if staged.clusters is None else staged.clusters.copy())
