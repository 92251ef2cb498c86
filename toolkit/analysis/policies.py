"""Policies over a staged cache: where each example stops, what it predicts, and what it cost.

Every policy returns a :class:`PolicyResult` (per-example exit stage, prediction, FLOPs). Early exit, cascades and
Swift/Super routing are one rule seen from the cache: stop at the first stage whose confidence is at least its
threshold; the last stage takes the rest. Cascades are caches whose stages are complete models; a hybrid (early
exit inside Swift, then escalate to Super) is per-stage thresholds over Swift's exits followed by Super.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import confusion_matrix, metric_from_confusion
from .scores import stage_confidence


@dataclass
class PolicyResult:
    exit_stage: np.ndarray  # [N] int, index of the stage that predicted
    prediction: np.ndarray  # [N] int
    flops: np.ndarray  # [N] FLOPs spent

    def summary(self, cache, metric: str | None = None) -> dict:
        """Metric, accuracy, mean FLOPs, speed-up over the last stage, mean layers, share escalated."""
        metric = metric or cache.meta.get("metric", "accuracy")
        cm = confusion_matrix(cache.labels, self.prediction, cache.n_classes)
        ref = cache.flops[:, -1].mean()
        layers = stage_layers(cache)[self.exit_stage]
        models = np.array([s.get("model_index", 0) for s in cache.stage_info])[self.exit_stage]
        return {"metric": float(metric_from_confusion(cm, metric)),
                "accuracy": float(metric_from_confusion(cm, "accuracy")),
                "flops": float(self.flops.mean()), "speedup": float(ref / self.flops.mean()),
                "mean_layers": float(layers.mean()), "escalated": float((models > 0).mean())}


def stage_layers(cache) -> np.ndarray:
    """Layers run when each stage predicts: earlier cascade members' layers plus this stage's layer."""
    info = cache.stage_info
    model = [s.get("model_index", 0) for s in info]
    depth = {m: s.get("num_layers", s.get("layer")) or 0 for m, s in zip(model, info)}  # each member's full depth
    return np.asarray([sum(d for k, d in depth.items() if k < m) + (s.get("layer") or e + 1)
                       for e, (m, s) in enumerate(zip(model, info))], dtype=np.float64)


def _result(cache, stage: np.ndarray) -> PolicyResult:
    rows = np.arange(cache.n_examples)
    return PolicyResult(stage, cache.predictions[rows, stage], cache.flops[rows, stage])


def exit_stage(conf: np.ndarray, thresholds) -> np.ndarray:
    """First stage whose confidence is >= its threshold (the last stage otherwise), for ``conf`` ``[N, E]``.

    ``thresholds``: a scalar, one per stage (``[E]`` or ``[E-1]``; the last stage always accepts), or ``[T, 1]``
    for T thresholds at once (result ``[T, N]``).
    """
    conf = np.asarray(conf)
    N, E = conf.shape
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 1 and t.shape[0] == E - 1:
        t = np.append(t, -np.inf)
    if t.ndim == 1 and t.shape[0] != E:
        raise ValueError(f"{t.shape[0]} thresholds for {E} stages (give one, E or E-1)")
    if t.ndim == 2:
        t = t[:, None, :] if t.shape[1] == E else t[:, :, None]
    ok = conf >= t
    ok[..., E - 1] = True
    return ok.argmax(-1)


def early_exit(cache, threshold, score: str = "max_prob", temperature=None) -> PolicyResult:
    """Stop at the first stage whose confidence (``score`` at ``temperature``) is at least ``threshold``
    (scalar, or one per stage for per-stage thresholds)."""
    return _result(cache, exit_stage(stage_confidence(cache.logits, score, temperature), threshold))


def cascade(cache, threshold, score: str = "max_prob", temperature=None) -> PolicyResult:
    """A cascade of complete models: the cache's stages are models; identical rule to :func:`early_exit`."""
    return early_exit(cache, threshold, score, temperature)


def hybrid(cache, swift_threshold: float, escalate_threshold: float, score: str = "max_prob",
           temperature=None) -> PolicyResult:
    """Early exit inside Swift (stages of model 0, threshold ``swift_threshold`` on its non-final exits), then
    escalate to the next model when Swift's last exit is below ``escalate_threshold``."""
    model = np.array([s.get("model_index", 0) for s in cache.stage_info])
    swift = np.flatnonzero(model == 0)
    if len(swift) == cache.n_stages:
        raise ValueError("hybrid needs a cache with a second model after Swift (use collect with two models)")
    t = np.full(cache.n_stages, -np.inf)
    t[swift[:-1]] = swift_threshold
    t[swift[-1]] = escalate_threshold
    t[len(swift):-1] = np.inf  # later non-final stages never stop early: escalation goes to the last model
    return early_exit(cache, t, score, temperature)


def patience_stage(predictions: np.ndarray, patience) -> np.ndarray:
    """PABEE: exit at the first stage whose prediction has stayed unchanged for ``patience`` consecutive stages.

    ``patience`` scalar or ``[P]`` array (result ``[P, N]``); patience >= E never exits early.
    """
    pred = np.asarray(predictions)
    N, E = pred.shape
    count = np.zeros((N, E), dtype=np.int64)
    for e in range(1, E):  # loop over stages (few), vectorised over examples
        count[:, e] = np.where(pred[:, e] == pred[:, e - 1], count[:, e - 1] + 1, 0)
    p = np.asarray(patience)
    ok = count >= (p[..., None, None] if p.ndim else p)
    ok[..., E - 1] = True
    return ok.argmax(-1)


def patience(cache, patience: int) -> PolicyResult:
    if int(patience) < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    return _result(cache, patience_stage(cache.predictions, int(patience)))


def oracle(cache) -> PolicyResult:
    """The earliest correct stage; examples no stage gets right exit at the first stage (cheapest; wrong anyway)."""
    correct = cache.correct
    return _result(cache, np.where(correct.any(1), correct.argmax(1), 0))


def final_stage(cache) -> PolicyResult:
    return _result(cache, np.full(cache.n_examples, cache.n_stages - 1))
