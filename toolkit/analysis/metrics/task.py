"""Task metrics from confusion counts, vectorised over many operating points at once.

``confusion`` is ``[..., C, C]`` (rows: gold, columns: predicted). Accuracy for every task, F1 of class 1 for
MRPC (GLUE convention), Matthews correlation for CoLA (multiclass form, Gorodkin 2004).

Predictions first, labels second, as everywhere on the analysis side since 0.3 (``docs/protocol.md``, "Argument
order"); before 0.3 these took the labels first. Accuracy, F1 of class 1 and MCC are symmetric in the two, so a call
in the old order returns the same number; :func:`confusion_matrix` is not (it would come out transposed).

>>> import numpy as np
>>> p, y = np.array([0, 1, 0, 0]), np.array([0, 1, 1, 0])
>>> float(accuracy(p, y)), round(float(f1(p, y)), 4), round(float(mcc(p, y)), 4)
(0.75, 0.6667, 0.5774)
>>> confusion_matrix(p, y).tolist()  # rows: gold, columns: predicted
[[2, 0], [1, 1]]
"""

from __future__ import annotations

import numpy as np

from toolkit._api import keyword_options

METRICS = ("accuracy", "f1", "mcc")


@keyword_options
def confusion_matrix(preds, labels, *, n_classes: int | None = None) -> np.ndarray:
    """``[C, C]`` counts, rows gold, columns predicted; ``C`` is ``n_classes`` or the largest class seen plus one."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")
    C = n_classes or int(max(labels.max(), preds.max())) + 1
    return np.bincount(labels * C + preds, minlength=C * C).reshape(C, C)


def accuracy_from_confusion(cm) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum((-2, -1))


@keyword_options
def f1_from_confusion(cm, *, positive: int = 1) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    tp = cm[..., positive, positive]
    fp = cm[..., :, positive].sum(-1) - tp
    fn = cm[..., positive, :].sum(-1) - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def mcc_from_confusion(cm) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    s = cm.sum((-2, -1))
    c = np.trace(cm, axis1=-2, axis2=-1)
    t = cm.sum(-1)  # gold counts
    p = cm.sum(-2)  # predicted counts
    num = c * s - (t * p).sum(-1)
    den = np.sqrt((s * s - (p * p).sum(-1)) * (s * s - (t * t).sum(-1)))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def metric_from_confusion(cm, metric: str) -> np.ndarray:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    return {"accuracy": accuracy_from_confusion, "f1": f1_from_confusion, "mcc": mcc_from_confusion}[metric](cm)


def accuracy(preds, labels) -> float:
    return float(accuracy_from_confusion(confusion_matrix(preds, labels)))


def f1(preds, labels) -> float:
    """F1 of class 1 (binary tasks)."""
    return float(f1_from_confusion(confusion_matrix(preds, labels, n_classes=2)))


def mcc(preds, labels) -> float:
    return float(mcc_from_confusion(confusion_matrix(preds, labels)))


@keyword_options
def task_metric(preds, labels, *, metric: str, n_classes: int | None = None) -> float:
    """``metric`` (one of :data:`METRICS`) of ``preds`` against ``labels``.

    >>> task_metric(np.array([0, 1, 1]), np.array([0, 1, 0]), metric="accuracy")
    0.6666666666666666
    """
    return float(metric_from_confusion(confusion_matrix(preds, labels, n_classes=n_classes), metric))
