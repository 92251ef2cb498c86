"""Task metrics from confusion counts, vectorised over many operating points at once.

``confusion`` is ``[..., C, C]`` (rows: gold, columns: predicted). Accuracy for every task, F1 of class 1 for
MRPC (GLUE convention), Matthews correlation for CoLA (multiclass form, Gorodkin 2004).

>>> import numpy as np
>>> y, p = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
>>> float(accuracy(y, p)), round(float(f1(y, p)), 4), round(float(mcc(y, p)), 4)
(0.75, 0.6667, 0.5774)
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "f1", "mcc")


def confusion_matrix(labels, preds, n_classes: int | None = None) -> np.ndarray:
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")
    C = n_classes or int(max(labels.max(), preds.max())) + 1
    return np.bincount(labels * C + preds, minlength=C * C).reshape(C, C)


def accuracy_from_confusion(cm) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum((-2, -1))


def f1_from_confusion(cm, positive: int = 1) -> np.ndarray:
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


def accuracy(labels, preds) -> float:
    return float(accuracy_from_confusion(confusion_matrix(labels, preds)))


def f1(labels, preds) -> float:
    return float(f1_from_confusion(confusion_matrix(labels, preds, 2)))


def mcc(labels, preds) -> float:
    return float(mcc_from_confusion(confusion_matrix(labels, preds)))


def task_metric(labels, preds, metric: str, n_classes: int | None = None) -> float:
    return float(metric_from_confusion(confusion_matrix(labels, preds, n_classes), metric))
