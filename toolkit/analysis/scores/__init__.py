"""Confidence scores: per-stage scores of classification logits (:mod:`.classification`) and per-token
scores with sequence aggregations (:mod:`.tokens`).
"""

# the package's face: what the module of the same name held before the layout by concern
from .classification import (  # noqa: F401
    SCORES,
    Score,
    confidence,
    elang,
    energy,
    entropy,
    get_score,
    margin,
    max_prob,
    softmax,
    stage_confidence,
)
