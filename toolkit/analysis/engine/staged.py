"""The one view every cache kind gives the engine: per example and stage, a confidence, a cost and an outcome.

An example passes through stages 0..E-1 (exits of one model, complete models of a cascade, Swift then Super, the
layers of an LLM for one generated token) and stops at the first stage whose confidence clears its threshold; the
last stage takes the rest. What it costs and what it scores if it stops at stage e is all the engine needs:

- ``confidence[n, e]``: higher = more confident (the last stage's column is never read);
- ``cost[n, e]``: what example n has spent once stage e has answered (FLOPs, cumulative);
- ``stats[n, e, :]``: additive sufficient statistics of its outcome there (a one-hot confusion cell, BLEU's
  n-gram counts, agreement with the full model), so the metric of any mix of stops is ``metrics`` of their sum;
- ``reference_cost[n]``: what the named ``reference`` (the cost a user would pay instead) spends on it.

>>> import numpy as np
>>> s = Staged(confidence=np.array([[0.9, 0.0], [0.2, 0.0]]), cost=np.array([[1.0, 3.0], [1.0, 3.0]]),
...            stats=np.array([[[1.0], [1.0]], [[0.0], [1.0]]]), metrics=MeanMetrics(("accuracy",)),
...            reference_cost=np.array([2.0, 2.0]), reference="big model alone", loss=None,
...            stage_names=("small", "small+big"), layers=np.array([1.0, 2.0]), model_index=np.array([0, 1]),
...            example_ids=np.array(["a", "b"]))
>>> s
Staged(N=2, stages=('small', 'small+big'), metric='accuracy', reference='big model alone')
>>> s.stage_of(0.5).tolist()
[0, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

LOSS_KINDS = ("binary", "bounded")


@dataclass(frozen=True)
class MeanMetrics:
    """Metrics that are means of per-example values: ``stats[..., k]`` summed, divided by the example count.

    >>> MeanMetrics(("accuracy",))(np.array([[3.0], [1.0]]), 4)["accuracy"].tolist()
    [0.75, 0.25]
    """

    names: tuple[str, ...]

    def __call__(self, totals, n) -> dict[str, np.ndarray]:
        t = np.asarray(totals, dtype=np.float64)
        return {m: t[..., k] / n for k, m in enumerate(self.names)}

    def one(self, totals, n, name: str) -> np.ndarray:
        """Only metric ``name`` (what :meth:`Staged.metric_of` asks for)."""
        return np.asarray(totals, dtype=np.float64)[..., self.names.index(name)] / n


@dataclass(frozen=True, eq=False)
class Staged:
    """Staged outcomes of one split, the input of every engine function (see the module docstring).

    Parameters
    ----------
    confidence : ndarray, shape (N, E)
        Higher = more confident; the last column is ignored (the last stage always answers).
    cost : ndarray, shape (N, E)
        Cumulative cost (FLOPs) of example n once stage e has answered; non-negative.
    stats : ndarray, shape (N, E, K)
        Additive sufficient statistics of the outcome if example n stops at stage e.
    metrics : callable
        ``metrics(totals[..., K], n) -> {name: ndarray[...]}``; the metric of a set of stops from their summed stats.
    reference_cost : ndarray, shape (N,)
        Cost of the reference each speed-up is measured against; ``reference`` names it.
    loss : ndarray, shape (N, E), or None
        Loss in [0, 1] for risk control (``loss_kind`` says whether it is 0/1), None where not defined.
    stage_names : tuple of str, length E
    layers : ndarray, shape (E,)
        Layers run once stage e answers (across models for a cascade).
    model_index : ndarray, shape (E,)
        Which model each stage belongs to (0 = the first; ``escalated`` = share past model 0).
    example_ids : ndarray, shape (N,)
        Stable ids: policies and training seeds are aligned on them (unique, except in a bootstrap resample).
    metric : str
        The headline metric (a key of ``metrics``): what plots show by default. Rules name their own.
    quality : ndarray, shape (N, E), or None
        Per-example quality at each stage (higher is better), for the oracle (earliest best stage).
    extras : mapping of str to ndarray (N, E)
        Further additive per-example quantities reported as means (e.g. generated ``tokens``).
    meta : mapping
        What made it: kind, task, split, score, temperature, cost unit.
    strata : ndarray, shape (N,), or None
        Labels to stratify cross-fitting halves by (:func:`toolkit.data.tasks.dev_halves`); None: unstratified.
    clusters : ndarray, shape (N,), or None
        Cluster of each example (e.g. the prompt of a generated token): every bootstrap interval resamples clusters
        and keeps an example with its cluster; None: examples are independent.
    """

    confidence: np.ndarray
    cost: np.ndarray
    stats: np.ndarray
    metrics: Callable[..., Mapping[str, np.ndarray]]
    reference_cost: np.ndarray
    reference: str
    loss: np.ndarray | None
    stage_names: tuple[str, ...]
    layers: np.ndarray
    model_index: np.ndarray
    example_ids: np.ndarray
    metric: str = "accuracy"
    loss_kind: str = "binary"
    quality: np.ndarray | None = None
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping = field(default_factory=dict)
    strata: np.ndarray | None = None
    clusters: np.ndarray | None = None

    def __post_init__(self):
        _validate(self)

    # ---------------------------------------------------------------- shape
    @property
    def n_examples(self) -> int:
        return self.confidence.shape[0]

    @property
    def n_stages(self) -> int:
        return self.confidence.shape[1]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(self.metrics(np.ones(self.stats.shape[-1]), 1))

    @property
    def split(self) -> str | None:
        return self.meta.get("split")

    def metric_of(self, totals, n, name: str) -> np.ndarray:
        """``metrics(totals, n)[name]``, computing only that metric where the metrics callable offers
        ``one(totals, n, name)`` (every adapter's does): resampled sweeps evaluate one metric on [B, G, K] totals."""
        one = getattr(self.metrics, "one", None)
        return one(totals, n, name) if one is not None else self.metrics(totals, n)[name]

    def __repr__(self) -> str:
        built = "".join(f", {k}={self.meta[k]!r}" for k in ("family", "score", "temperature", "how", "propagate")
                        if k in self.meta)  # how the view was built (an LLM view: exit family, K/V propagation)
        return (f"Staged(N={self.n_examples}, stages={self.stage_names}, metric={self.metric!r}, "
                f"reference={self.reference!r}{built})")

    def _repr_html_(self) -> str:
        from toolkit.analysis.engine.results import html_table

        rows = {"examples": self.n_examples, "stages": ", ".join(self.stage_names), "metric": self.metric,
                "reference": self.reference, **{k: v for k, v in self.meta.items() if np.isscalar(v)}}
        return html_table("Staged", rows)

    # ---------------------------------------------------------------- derived views
    def subset(self, rows) -> Staged:
        """The same view restricted to some examples (index array, possibly with repeats, or boolean mask)."""
        rows = np.asarray(rows)
        pick = {k: getattr(self, k)[rows] for k in ("confidence", "cost", "stats", "reference_cost", "example_ids")}
        for k in ("loss", "quality", "strata", "clusters"):
            if getattr(self, k) is not None:
                pick[k] = getattr(self, k)[rows]
        pick["extras"] = {k: v[rows] for k, v in self.extras.items()}
        new = object.__new__(Staged)  # slices of a validated view stay valid: skip re-validation
        new.__dict__.update({**self.__dict__, **pick})
        return new

    def with_reference(self, reference_cost, reference: str) -> Staged:
        """The same view with another reference (``reference_cost`` ``[N]`` or a scalar for every example)."""
        ref = np.broadcast_to(np.asarray(reference_cost, dtype=np.float64), (self.n_examples,)).copy()
        if not (np.isfinite(ref).all() and (ref > 0).all()):
            bad = ref[~(np.isfinite(ref) & (ref > 0))][0]
            raise ValueError(f"reference_cost must be finite and > 0 (a speed-up divides by it), got {bad}")
        return replace(self, reference_cost=ref, reference=str(reference))

    def stage_of(self, thresholds) -> np.ndarray:
        """Stage where each example stops: ``[N]`` for a scalar or per-stage thresholds ``[E-1]``/``[E]``,
        ``[T, N]`` for ``T`` global thresholds ``[T]`` or per-stage rows ``[T, E-1]``/``[T, E]``."""
        return exit_stage(self.confidence, thresholds)

    def align(self, example_ids) -> Staged:
        """Rows reordered to ``example_ids`` (every id must be present, once)."""
        if len(np.unique(self.example_ids)) != self.n_examples:
            raise ValueError("example ids repeat (a bootstrap resample?): views are aligned by unique ids")
        pos = {k: i for i, k in enumerate(self.example_ids.tolist())}
        try:
            rows = np.fromiter((pos[k] for k in np.asarray(example_ids).tolist()), dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"example id {e.args[0]!r} is missing from this view; align views of the same "
                             f"examples (same task and split)") from None
        return self.subset(rows)


def exit_stage(conf, thresholds) -> np.ndarray:
    """First stage whose confidence is at least its threshold, the last stage otherwise.

    ``conf`` ``[N, E]``. ``thresholds``: a scalar (``[N]`` result), per-stage ``[E-1]`` or ``[E]`` (``[N]``),
    ``T`` global thresholds as a ``[T]`` array given as ``[T, 1]`` or per-stage rows ``[T, E-1]``/``[T, E]``
    (``[T, N]``).

    >>> exit_stage(np.array([[0.9, 0.5, 0.0], [0.1, 0.8, 0.0]]), np.array([[0.95], [0.7]])).tolist()
    [[2, 2], [0, 1]]
    """
    conf = np.asarray(conf)
    N, E = conf.shape
    t = np.asarray(thresholds, dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("a threshold is NaN; give a number (np.inf: every example goes to the last stage, "
                         "-np.inf: every example stops at the first)")
    if t.ndim == 1:
        if t.shape[0] == E - 1:
            t = np.append(t, -np.inf)
        if t.shape[0] != E:
            raise ValueError(f"{t.shape[0]} thresholds for {E} stages (give one, E or E-1)")
    elif t.ndim == 2:
        if t.shape[1] == E - 1 and E > 1:
            t = np.concatenate([t, np.full((len(t), 1), -np.inf)], 1)
        if t.shape[1] == E:
            t = t[:, None, :]
        elif t.shape[1] == 1:
            t = t[:, :, None]
        else:
            raise ValueError(f"thresholds of shape {t.shape} for {E} stages: give [T, 1], [T, E-1] or [T, E]")
    elif t.ndim > 2:
        raise ValueError(f"thresholds must be a scalar, a vector or a matrix, got shape {t.shape}")
    ok = conf >= t
    ok[..., E - 1] = True
    return ok.argmax(-1)


def _validate(s: Staged) -> None:
    conf = s.confidence
    if not isinstance(conf, np.ndarray) or conf.ndim != 2 or 0 in conf.shape:
        raise ValueError(f"confidence must be a non-empty [N, E] array, got shape {np.shape(conf)}")
    N, E = conf.shape
    shapes = {"cost": (N, E), "reference_cost": (N,), "example_ids": (N,), "layers": (E,), "model_index": (E,)}
    for name, shape in shapes.items():
        if np.shape(getattr(s, name)) != shape:
            raise ValueError(f"{name} has shape {np.shape(getattr(s, name))}, expected {shape} (N={N}, E={E})")
    if np.ndim(s.stats) != 3 or np.shape(s.stats)[:2] != (N, E):
        raise ValueError(f"stats must be [N, E, K] = [{N}, {E}, K], got shape {np.shape(s.stats)}")
    if len(s.stage_names) != E:
        raise ValueError(f"{len(s.stage_names)} stage names for {E} stages")
    if not np.isfinite(conf[:, :-1]).all():
        raise ValueError("confidence contains NaN or inf (last column excepted)")
    for name in ("cost", "reference_cost"):
        a = getattr(s, name)
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"{name} must be finite and non-negative")
    if not np.isfinite(s.stats).all():
        raise ValueError("stats contain NaN or inf")
    if s.loss is not None:
        if np.shape(s.loss) != (N, E) or not np.isfinite(s.loss).all() or (s.loss < 0).any() or (s.loss > 1).any():
            raise ValueError(f"loss must be [N, E] = [{N}, {E}] values in [0, 1]")
        if s.loss_kind == "binary" and not np.isin(s.loss, (0.0, 1.0)).all():
            raise ValueError("loss_kind 'binary' but the loss takes values other than 0 and 1; use 'bounded'")
    if s.loss_kind not in LOSS_KINDS:
        raise ValueError(f"loss_kind must be one of {LOSS_KINDS}, got {s.loss_kind!r}")
    if s.quality is not None and np.shape(s.quality) != (N, E):
        raise ValueError(f"quality must be [N, E] = [{N}, {E}]")
    if s.strata is not None and np.shape(s.strata) != (N,):
        raise ValueError(f"strata must be [N] = [{N}], got shape {np.shape(s.strata)}")
    if s.clusters is not None and np.shape(s.clusters) != (N,):
        raise ValueError(f"clusters must be [N] = [{N}] (one cluster id per example), got shape "
                         f"{np.shape(s.clusters)}")
    for k, v in s.extras.items():
        if np.shape(v) != (N, E):
            raise ValueError(f"extras[{k!r}] must be [N, E] = [{N}, {E}]")
    names = tuple(s.metrics(np.ones(np.shape(s.stats)[-1]), 1))
    if s.metric not in names:
        raise ValueError(f"headline metric {s.metric!r} is not one of the metrics {names}")
