"""Adapters: each cache kind gives the engine a :class:`Staged` view. Adding a cache kind is one function here
(or in the cache's own module) registered with ``@staged.register(CacheType)``.

- classification caches (multi-exit models, cascades of complete models, both): outcome = what the view's
  metrics need, in O(C) (:class:`ClassMetrics`: correct; for F1 and MCC predicted and gold class counts), so
  accuracy, F1 and MCC of any mix of stops come from summed statistics;
- generation caches (Swift/Super encoder-decoders, or a longer chain): stage e = model e, confidence = its
  aggregated sequence confidence; outcome = the per-example quality (exact match) or sacrebleu's segment
  statistics (BLEU, chrF), so every row is the corpus score of the mixed output.

References (what every speed-up divides by): ``"last"`` (default) is the last member alone (for a cascade, the
last model's own cost, not every member in turn; for a multi-exit model its last exit); ``"all"`` is every stage in
turn (the cumulative cost of the last stage); a stage or model name is that member alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from toolkit.analysis.engine.staged import Staged
from toolkit.analysis.metrics.generation import CORPUS, corpus_score
from toolkit.analysis.scores.classification import _check as _check_logits
from toolkit.analysis.scores.classification import stage_confidence
from toolkit.analysis.scores.tokens import sequence_confidence
from toolkit.caches.classification import Cache
from toolkit.caches.generation import GenCache
from toolkit.caches.identity import cache_identity
from toolkit.caches.inputs import cost_unit


@functools.singledispatch
def staged(cache, **options) -> Staged:
    """The engine's view of any cache: dispatches on the cache type (see the registered adapters).

    Classification (:class:`~toolkit.caches.classification.Cache`): ``score``, ``temperature``, ``reference``,
    ``metric``; generation (:class:`~toolkit.caches.generation.GenCache`): ``models``, ``score``, ``how``,
    ``temperature``, ``reference``, ``metric``.
    """
    raise TypeError(f"no engine adapter for {type(cache).__name__}; register one with "
                    f"@toolkit.analysis.engine.staged.register({type(cache).__name__})")


# ------------------------------------------------------------------------------------------------- classification
@dataclass(frozen=True)
class ClassMetrics:
    """Accuracy, F1 of class 1 (two classes) and Matthews correlation from summed per-example statistics in O(C):
    ``names`` the metrics computed, ``layout(n_classes, names)`` the columns (:func:`class_stats` builds them).

    - accuracy: ``[correct]``;
    - two classes: ``[correct, predicted 1, gold 1]`` (true positives ``(correct - n + predicted 1 + gold 1) / 2``);
    - more classes with MCC: ``[correct, predicted counts (C), gold counts (C)]``,
      ``MCC = (c s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))``.

    Every value equals :func:`toolkit.analysis.metrics.task.metric_from_confusion`'s on the confusion matrix (the
    statistics are integer sums, exact in float64).

    >>> m = ClassMetrics(2, ("accuracy", "f1", "mcc"))(np.array([3.0, 3.0, 2.0]), 4)  # gold 0011, predicted 0111
    >>> {k: round(float(v), 4) for k, v in m.items()}
    {'accuracy': 0.75, 'f1': 0.8, 'mcc': 0.5774}
    """

    n_classes: int
    names: tuple[str, ...] = ("accuracy",)

    def __post_init__(self):
        bad = set(self.names) - {"accuracy", "f1", "mcc"}
        if bad or "accuracy" not in self.names:
            raise ValueError(f"classification metrics are accuracy plus f1 and/or mcc, got {self.names}")
        if "f1" in self.names and self.n_classes != 2:
            raise ValueError(f"f1 (of class 1) needs two classes, this cache has {self.n_classes}")

    @property
    def width(self) -> int:
        """Statistics per example and stage (K)."""
        return 1 if self.names == ("accuracy",) else 3 if self.n_classes == 2 else 1 + 2 * self.n_classes

    def __call__(self, totals, n) -> dict[str, np.ndarray]:
        return {m: self.one(totals, n, m) for m in self.names}

    def one(self, totals, n, name: str) -> np.ndarray:
        """Only metric ``name`` (see :meth:`Staged.metric_of`)."""
        if name not in self.names:
            raise KeyError(name)
        t = np.asarray(totals, dtype=np.float64)
        c, s = t[..., 0], np.asarray(n, dtype=np.float64)
        if name == "accuracy":
            return c / s
        if self.n_classes == 2:
            p1, t1 = t[..., 1], t[..., 2]
            if name == "f1":
                tp = (c - s + p1 + t1) / 2
                denom = 2 * tp + (p1 - tp) + (t1 - tp)
                return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
            p, g = np.stack([s - p1, p1], -1), np.stack([s - t1, t1], -1)
        else:
            C = self.n_classes
            p, g = t[..., 1:1 + C], t[..., 1 + C:]
        dot = lambda u, v: np.einsum("...k,...k->...", u, v)  # noqa: E731 (integer sums: exact in any order)
        num = c * s - dot(g, p)
        den = np.sqrt((s * s - dot(p, p)) * (s * s - dot(g, g)))
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def class_stats(pred: np.ndarray, labels: np.ndarray, metrics: ClassMetrics) -> np.ndarray:
    """``[N, E, K]`` statistics of :class:`ClassMetrics`: 0/1 values in float32 (any partial sum of up to 2^24
    examples, as the sweep accumulates them, is an exact integer there), float64 beyond 2^24 examples."""
    N, E = pred.shape
    out = np.zeros((N, E, metrics.width), dtype=np.float32 if N <= _F32_EXACT else np.float64)
    out[..., 0] = pred == labels[:, None]
    if metrics.width == 3:
        out[..., 1] = pred == 1
        out[..., 2] = (labels == 1)[:, None]
    elif metrics.width > 1:
        C = metrics.n_classes
        np.put_along_axis(out, 1 + pred[..., None].astype(np.int64), 1.0, axis=-1)
        out[np.arange(N), :, 1 + C + labels] = 1.0
    return out


def default_class_metrics(n_classes: int, metric: str) -> tuple[str, ...]:
    """Accuracy, F1 and MCC for two classes; accuracy (and MCC where it is the headline metric) for more."""
    if n_classes == 2:
        return ("accuracy", "f1", "mcc")
    return ("accuracy", "mcc") if metric == "mcc" else ("accuracy",)


_SCORE_ELEMENTS = 1 << 20  # logits scored at once (8 MB float64 temporaries: bounded memory, cache-friendly)
_F32_EXACT = 1 << 24  # float32 holds every integer up to 2^24: counts of up to that many examples are exact


def check_temperature(temperature, n_stages: int) -> np.ndarray | None:
    """``temperature`` (None, one number or one per stage) as float64, refused unless every value is a real number
    (not a bool or string), finite and > 0: a score's temperature divides the logits, and a negative one turns
    max_prob into the least likely class's probability."""
    if temperature is None:
        return None
    raw = np.asarray(temperature, dtype=object if isinstance(temperature, (list, tuple)) else None)
    flat = raw.reshape(-1)
    kinds = [isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating))
             for v in flat.tolist()] if raw.dtype == object else [raw.dtype.kind not in "iuf"] * flat.size
    if any(kinds):
        v = flat[kinds.index(True)]
        v = v.item() if isinstance(v, np.generic) else v
        raise ValueError(f"temperature must be a positive real number (or one per stage), got {v!r} of type "
                         f"{type(v).__name__}")
    t = flat.astype(np.float64).reshape(raw.shape)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != n_stages):
        raise ValueError(f"temperature: one number or one per stage ({n_stages} stages), got shape {t.shape}")
    bad = ~(np.isfinite(t) & (t > 0))
    if bad.any():
        where = f" (stage {int(np.flatnonzero(bad.reshape(-1))[0])})" if t.ndim else ""
        raise ValueError(f"temperature must be finite and > 0, got {float(t[bad].reshape(-1)[0])}{where}")
    return t


def _confidence(logits: np.ndarray, score: str, temperature) -> tuple[np.ndarray, np.ndarray]:
    """Confidences (:func:`~toolkit.analysis.scores.classification.stage_confidence`) and predicted classes (``argmax``) of
    ``[N, E, C]`` logits, ``[N, E]`` each, in blocks of rows (bounded memory, cache-friendly).

    Max-probability is ``exp(-log(sum exp(z/T - max z/T)))``, the value ``exp(max log_softmax)`` takes by the same
    float operations."""
    N, E, C = logits.shape
    rows = max(1, _SCORE_ELEMENTS // (E * C))
    t = check_temperature(temperature, E)
    if t is not None and t.ndim == 2:
        raise ValueError(f"temperature: one number or one per stage ({E}), got shape {t.shape}")
    out, pred = np.empty((N, E)), np.empty((N, E), dtype=np.int64)
    for a in range(0, N, rows):
        z = logits[a:a + rows]
        pred[a:a + len(z)] = z.argmax(-1)
        if score != "max_prob":
            out[a:a + len(z)] = stage_confidence(z, score=score, temperature=temperature)
            continue
        tt = 1.0 if t is None else np.broadcast_to(t, z.shape[:2]) if t.ndim == 1 else t
        with np.errstate(all="ignore"):  # bad logits or temperatures surface as non-finite values, refused below
            x = z.astype(np.float64)
            if t is not None:
                x /= tt[..., None] if np.ndim(tt) else tt
            x -= x.max(-1, keepdims=True)
            np.exp(x, out=x)
            p = np.exp(-np.log(x.sum(-1)))
        if not (np.isfinite(p).all() and np.isfinite(z).all()):
            _check_logits(z, tt)  # raises the scores' own error (NaN/inf logits, bad or overflowing temperature)
        out[a:a + len(z)] = p
    return out, pred


def stage_layers(cache) -> np.ndarray:
    """Layers run when each stage predicts: earlier cascade members' layers plus this stage's layer, ``[E]``."""
    info = cache.stage_info
    model = [s.get("model_index", 0) for s in info]
    depth = {m: s.get("num_layers", s.get("layer")) or 0 for m, s in zip(model, info)}  # each member's full depth
    return np.asarray([sum(d for k, d in depth.items() if k < m) + (s.get("layer") or e + 1)
                       for e, (m, s) in enumerate(zip(model, info))], dtype=np.float64)


def _member_alone(cost: np.ndarray, model_index: np.ndarray, upto: int) -> np.ndarray:
    """Cost of stage ``upto``'s model run alone to that stage: its own increments, no earlier member's."""
    inc = np.diff(cost, axis=1, prepend=0.0)
    same = (model_index == model_index[upto]) & (np.arange(len(model_index)) <= upto)
    return inc[:, same].sum(1)


def _reference(cost, model_index, names, member_names, reference: str, single_model: bool):
    E = len(names)
    if reference == "all":
        return cost[:, -1], "every stage in turn" if not single_model else f"last exit ({names[-1]})"
    if reference == "last":
        e = E - 1
    elif reference in names:
        e = names.index(reference)
    elif reference in member_names:
        e = max(i for i, m in enumerate(member_names) if m == reference)
    else:
        raise ValueError(f"unknown reference {reference!r}: use 'last' (the last member alone), 'all' (every stage "
                         f"in turn) or a stage/model name: {list(names)}")
    if single_model:
        return _member_alone(cost, model_index, e), (f"last exit ({names[e]})" if e == E - 1 else
                                                     f"exit {names[e]}")
    return _member_alone(cost, model_index, e), f"{member_names[e]} alone"


def from_classification(cache: Cache, *, score: str = "max_prob", temperature=None, reference: str = "last",
                        metric: str | None = None, metrics=None) -> Staged:
    """The engine's view of a classification cache.

    Parameters
    ----------
    cache : Cache
        ``logits [N, E, C]``, cumulative ``flops [N, E]``.
    score : str
        A confidence score of :data:`toolkit.analysis.scores.classification.SCORES`.
    temperature : float or array of shape (E,), optional
        One temperature, or one per stage (e.g. fitted on cal).
    reference : str
        ``"last"`` (default: the last member alone), ``"all"`` (every stage in turn) or a stage/model name.
    metric : str, optional
        Headline metric; default the cache's task metric (``meta["metric"]``), else accuracy.
    metrics : sequence of str, optional
        Metrics computed (accuracy always): default accuracy, F1 and MCC for two classes, accuracy (and MCC when
        it is the headline metric) for more. Statistics per example and stage: 1 for accuracy, 3 for two classes,
        ``2C + 1`` for multiclass MCC (:class:`ClassMetrics`).
    """
    N, E, C = cache.logits.shape
    conf, pred = _confidence(cache.logits, score, temperature)
    labels = np.asarray(cache.labels)
    correct = pred == labels[:, None]
    model_index = np.array([s.get("model_index", 0) for s in cache.stage_info])
    members = [s.get("model_name") or str(s.get("model", f"model{s.get('model_index', 0)}")).rstrip("/").split("/")[-1]
               if len(set(model_index)) > 1 else s["name"] for s in cache.stage_info]
    ref_cost, ref_name = _reference(cache.flops, model_index, cache.stages, members, reference,
                                    single_model=len(set(model_index)) == 1)
    metric = metric or cache.meta.get("metric", "accuracy")
    names = tuple(dict.fromkeys(("accuracy", *(metrics if metrics is not None else
                                               default_class_metrics(C, metric)), metric)))
    cm = ClassMetrics(C, names)
    t = None if temperature is None else np.asarray(temperature, dtype=np.float64).tolist()
    return Staged(confidence=conf, cost=np.asarray(cache.flops, dtype=np.float64), stats=class_stats(pred, labels, cm),
                  metrics=cm, reference_cost=ref_cost, reference=ref_name,
                  loss=(correct[:, -1:] & ~correct).astype(np.float32), stage_names=tuple(cache.stages),
                  layers=stage_layers(cache), model_index=model_index, example_ids=np.asarray(cache.example_ids),
                  metric=metric, loss_kind="binary", quality=correct.astype(np.float32),
                  meta={"kind": "classification", "task": cache.task, "split": cache.split,
                        "identity": cache_identity(cache),
                        "score": score, "temperature": t, "cost_unit": cost_unit(cache), "path": cache.meta.get("path")},
                  strata=labels)


staged.register(Cache, from_classification)


# ------------------------------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class GenerationMetrics:
    """Corpus metrics of summed per-example statistics: ``layout`` = (metric, first column, last column + 1).
    ``exact_match`` is a mean of per-example values; ``bleu``/``chrf`` come from summed sacrebleu statistics."""

    layout: tuple[tuple[str, int, int], ...]

    def __call__(self, totals, n) -> dict[str, np.ndarray]:
        t = np.asarray(totals, dtype=np.float64)
        return {m: (corpus_score(m, stats=t[..., a:b]) if m in CORPUS else t[..., a] / n) for m, a, b in self.layout}

    def one(self, totals, n, name: str) -> np.ndarray:
        """Only metric ``name`` (see :meth:`Staged.metric_of`)."""
        t = np.asarray(totals, dtype=np.float64)
        for m, a, b in self.layout:
            if m == name:
                return corpus_score(m, stats=t[..., a:b]) if m in CORPUS else t[..., a] / n
        raise KeyError(name)


def _values(gen, metric) -> np.ndarray:
    """Per-example additive values whose sum determines the corpus metric: the quality itself, or statistics."""
    return gen.qstats[metric] if metric in CORPUS else gen.quality[metric][:, None]


def _dims_layers(info: dict) -> float | None:
    d = info.get("dims") or {}
    return float(d["enc_layers"] + d["dec_layers"]) if "enc_layers" in d and "dec_layers" in d else None


def from_generation(cache: GenCache, *, models=None, score: str = "energy", how: str = "mean",
                    temperature: float = 1.0, reference: str = "last", metric: str | None = None) -> Staged:
    """The engine's view of a generation cache: stage e = model e (Swift, then Super).

    Parameters
    ----------
    cache : GenCache
    models : sequence of str, optional
        Models in the order they run (default: the cache's order, cheapest first); E = len(models).
    score, how, temperature
        Token score, its aggregation over the generated sequence, and its temperature (one of the cache's); see
        :mod:`toolkit.analysis.scores.tokens`. An example goes on to the next model when the sequence confidence
        of the current one is below the threshold.
    reference : str
        ``"last"`` (default: the last model alone), ``"all"`` (every model in turn) or a model name.
    metric : str, optional
        Headline metric (default: the cache's first). Every metric of the cache is computed.

    Notes
    -----
    Risk control uses ``loss = clip(q_last - q_e, 0, s) / s`` with ``q`` the per-example quality of the headline
    metric (``s`` = 1 for exact match: a binary loss, "last model right, this one wrong"; ``s`` = 100 for sentence
    BLEU/chrF: a loss in [0, 1], controlled with a Hoeffding-Bentkus bound).
    """
    names = list(models) if models is not None else list(cache.models)
    for m in names:
        if m not in cache.models:
            raise KeyError(f"model {m!r} is not in this cache; it holds {list(cache.models)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"routing needs at least two different models in order, got {names}")
    metric = metric or cache.metrics[0]
    if metric not in cache.metrics:
        raise ValueError(f"metric {metric!r} not in the cache; it holds {cache.metrics}")
    gens = [cache.models[m] for m in names]
    N, E = cache.n_examples, len(names)
    conf = np.zeros((N, E))
    for e, m in enumerate(names[:-1]):
        conf[:, e] = sequence_confidence(cache, m, score=score, how=how, temperature=temperature)
    layout, a = [], 0
    for m in cache.metrics:
        k = _values(gens[0], m).shape[1]
        layout.append((m, a, a + k))
        a += k
    stats = np.stack([np.concatenate([_values(g, m) for m in cache.metrics], 1) for g in gens], 1)
    own = np.stack([g.flops for g in gens], 1)
    cost = np.cumsum(own, 1)
    q = np.stack([g.quality[metric] for g in gens], 1)
    scale = 1.0 if metric == "exact_match" else 100.0
    model_index = np.arange(E)
    ref_cost, ref_name = _reference(cost, model_index, tuple(names), names, reference, single_model=False)
    if reference == "all":
        ref_name = "every model in turn"
    depth = [_dims_layers(g.info) for g in gens]
    layers = np.cumsum([d if d is not None else 1.0 for d in depth])
    return Staged(confidence=conf, cost=cost, stats=stats, metrics=GenerationMetrics(tuple(layout)),
                  reference_cost=ref_cost, reference=ref_name, loss=np.clip(q[:, -1:] - q, 0, scale) / scale,
                  stage_names=tuple(names), layers=layers, model_index=model_index,
                  example_ids=np.asarray(cache.example_ids), metric=metric,
                  loss_kind="binary" if metric == "exact_match" else "bounded", quality=q,
                  extras={"tokens": np.cumsum(np.stack([g.n_steps for g in gens], 1), 1).astype(np.float64)},
                  meta={"kind": "generation", "task": cache.meta.get("task"), "split": cache.meta.get("split"),
                        "identity": cache_identity(cache),
                        "score": score, "how": how, "temperature": float(temperature), "cost_unit": "FLOPs",
                        "layers": "encoder + decoder layers of the models run" if None not in depth else
                        "models run", "path": cache.meta.get("path")},
                  strata=np.asarray(cache.labels))


staged.register(GenCache, from_generation)
