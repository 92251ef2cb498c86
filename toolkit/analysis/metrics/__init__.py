"""Metrics: task metrics (:mod:`.task`), generation quality (:mod:`.generation`: BLEU, chrF, exact match) and
calibration (:mod:`.calibration`: ECE, reliability, temperature scaling).
"""

# the package's face: what the module of the same name held before the layout by concern
from .task import (  # noqa: F401
    METRICS,
    accuracy,
    accuracy_from_confusion,
    confusion_matrix,
    f1,
    f1_from_confusion,
    mcc,
    mcc_from_confusion,
    metric_from_confusion,
    task_metric,
)
