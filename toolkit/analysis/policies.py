"""Stopping rules on a classification cache, example by example: where each example stops and what it predicts.

Every rule returns a :class:`PolicyResult` (per-example stop, prediction, FLOPs), the offline twin of what
:mod:`toolkit.nn.encoder.runtime` does for real; :meth:`PolicyResult.evaluate` scores it with the engine. Early exit,
cascades and Swift/Super routing are one rule: stop at the first stage whose confidence is at least its threshold;
the last stage takes the rest. A hybrid (early exit inside Swift, then escalate to Super) is per-stage thresholds.
PABEE's patience rule is the one rule here that is not a threshold on a confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.analysis.engine import Curve, Evaluation, Staged, evaluate_stages, evaluation_at_stages, staged
from toolkit.analysis.engine.adapters import stage_layers
from toolkit.analysis.engine.staged import exit_stage
from toolkit.analysis.scores.classification import stage_confidence

__all__ = ["PolicyResult", "early_exit", "hybrid", "hybrid_thresholds", "patience", "patience_stage",
           "patience_sweep", "oracle", "final_stage", "exit_stage", "stage_layers"]


@dataclass(frozen=True, eq=False)
class PolicyResult:
    """Per-example outcome of a stopping rule on a cache."""

    exit_stage: np.ndarray  # [N] int, index of the stage that predicted
    prediction: np.ndarray  # [N] int
    flops: np.ndarray  # [N] FLOPs spent

    def evaluate(self, view: Staged) -> Evaluation:
        """Metrics, cost and speed-up (against ``view.reference``) of these stops on the engine view of the same
        cache (e.g. ``toolkit.analysis.engine.staged(cache)``)."""
        if len(view.example_ids) != len(self.exit_stage):
            raise ValueError(f"{len(self.exit_stage)} stops for a view of {len(view.example_ids)} examples")
        return evaluation_at_stages(view, self.exit_stage)

    def __repr__(self) -> str:
        stops = np.bincount(self.exit_stage)
        where = ", ".join(f"stage {e + 1}: {n}" for e, n in enumerate(stops) if n)
        return (f"PolicyResult: {len(self.exit_stage)} examples; where they stopped ({where}); mean cost "
                f"{self.flops.mean():.4g} per example; evaluate(view) for metrics and speed-up")


def _result(cache, stage: np.ndarray) -> PolicyResult:
    rows = np.arange(cache.n_examples)
    return PolicyResult(stage, cache.predictions[rows, stage], cache.flops[rows, stage])


def early_exit(cache, threshold, *, score: str = "max_prob", temperature=None) -> PolicyResult:
    """Stop at the first stage whose confidence (``score`` at ``temperature``) is at least ``threshold`` (a scalar,
    or one per stage for per-stage thresholds)."""
    return _result(cache, exit_stage(stage_confidence(cache.logits, score=score, temperature=temperature), threshold))


def hybrid_thresholds(model_index, swift_threshold: float, escalate_threshold: float) -> np.ndarray:
    """Per-stage thresholds ``[E]`` of a hybrid: ``swift_threshold`` on the non-final exits of model 0,
    ``escalate_threshold`` on its last exit, and no early stop inside later models (escalation goes to the last
    stage).

    >>> hybrid_thresholds([0, 0, 0, 1], 0.9, 0.6).tolist()
    [0.9, 0.9, 0.6, -inf]
    """
    model = np.asarray(model_index)
    swift = np.flatnonzero(model == 0)
    if len(swift) == len(model):
        raise ValueError("a hybrid needs a second model after Swift (collect a cache with two models)")
    t = np.full(len(model), np.inf)
    t[swift[:-1]] = swift_threshold
    t[swift[-1]] = escalate_threshold
    t[-1] = -np.inf
    return t


def hybrid(cache, *, swift_threshold: float, escalate_threshold: float, score: str = "max_prob",
           temperature=None) -> PolicyResult:
    """Early exit inside Swift (model 0's exits), then escalate to the last model when Swift's last exit is below
    ``escalate_threshold`` (see :func:`hybrid_thresholds`)."""
    model = [s.get("model_index", 0) for s in cache.stage_info]
    return early_exit(cache, hybrid_thresholds(model, swift_threshold, escalate_threshold), score=score,
                      temperature=temperature)


def patience_stage(predictions: np.ndarray, patience) -> np.ndarray:
    """PABEE: exit at the first stage whose prediction has stayed unchanged for ``patience`` consecutive stages.

    ``patience`` scalar or ``[P]`` array (result ``[P, N]``); patience >= E never exits early.

    >>> patience_stage(np.array([[1, 1, 0, 0], [0, 0, 0, 1]]), 2).tolist()
    [3, 2]
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


def patience_sweep(cache, *, reference: str = "last") -> Curve:
    """PABEE over every patience 1..E (E: never early), with the engine's columns; ``patience`` replaces
    ``threshold``."""
    pats = np.arange(1, cache.n_stages + 1)
    return evaluate_stages(staged(cache, reference=reference), patience_stage(cache.predictions, pats),
                           columns={"patience": pats})


def oracle(cache) -> PolicyResult:
    """The earliest correct stage; examples no stage gets right exit at the first stage (cheapest; wrong anyway)."""
    correct = cache.correct
    return _result(cache, np.where(correct.any(1), correct.argmax(1), 0))


def final_stage(cache) -> PolicyResult:
    return _result(cache, np.full(cache.n_examples, cache.n_stages - 1))
