"""An operating point from a pair of classification caches in one call: fit temperatures on cal, build the engine
views, :func:`~toolkit.analysis.engine.choose` on cal, evaluate on test.

Two names, two concepts: :class:`~toolkit.analysis.engine.OperatingPoint` is a threshold chosen on cal by a rule
(applied unchanged to any view); :class:`OperatingPointReport` is what :func:`operating_point` returns, that point
together with the temperatures it was chosen with and its evaluation on test (``CacheOperatingPoint`` before 0.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit._api import renamed
from toolkit.analysis.engine import Evaluation, OperatingPoint, choose, staged
from toolkit.analysis.engine.choose import is_test_split
from toolkit.analysis.engine.results import html_table, text_repr
from toolkit.analysis.metrics.calibration import fit_stage_temperatures


def check_pair(cal, test) -> None:
    """Refuse a cal/test pair that cannot share an operating point (other stages, classes, or swapped splits)."""
    if list(cal.stages) != list(test.stages):
        raise ValueError(f"cal and test caches have different stages: {cal.stages} vs {test.stages}; collect both "
                         f"with the same models")
    if cal.n_classes != test.n_classes:
        raise ValueError(f"cal has {cal.n_classes} classes, test {test.n_classes}")
    if is_test_split(cal.split) or test.split == "cal":
        raise ValueError(f"fit on a cal cache and report on a test cache (got cal split {cal.split!r}, test split "
                         f"{test.split!r})")


@dataclass(frozen=True, eq=False)
class OperatingPointReport:
    """Temperatures fitted on cal, the operating point chosen there (:class:`~toolkit.analysis.engine.OperatingPoint`),
    and its evaluation on test."""

    temperatures: np.ndarray
    point: OperatingPoint
    test: Evaluation

    def to_dict(self) -> dict:
        return {**self.point.to_dict(), **{f"test_{k}": v for k, v in self.test.to_dict().items()
                                           if k not in ("reference", "threshold", "split")}}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def _repr_html_(self) -> str:
        return html_table("Operating point: chosen on cal, evaluated on test", self.to_dict())

    def __repr__(self) -> str:
        return text_repr("Operating point: chosen on cal, evaluated on test:", self.to_frame())


def operating_point(cal, test, *, score: str = "max_prob", calibrate: bool = True, reference: str = "last",
                    rule: str = "drop", metric: str = "accuracy", max_drop: float = 0.01, delta: float = 0.01,
                    epsilon: float = 0.05, budget: float | None = None) -> OperatingPointReport:
    """Choose a threshold on the ``cal`` cache and report it on the ``test`` cache.

    ``calibrate``: one temperature per stage fitted on cal (NLL), used on both. ``rule``, ``metric`` and the
    rule's options as in :func:`toolkit.analysis.engine.choose`; ``reference`` as in the classification adapter.
    """
    check_pair(cal, test)
    temps = fit_stage_temperatures(cal).temperatures if calibrate else np.ones(cal.n_stages)
    views = [staged(c, score=score, temperature=temps, reference=reference) for c in (cal, test)]
    point = choose(views[0], rule=rule, metric=metric, max_drop=max_drop, delta=delta, epsilon=epsilon, budget=budget)
    return OperatingPointReport(temps, point, point.evaluate(views[1]))


__getattr__ = renamed({"CacheOperatingPoint": ("OperatingPointReport", OperatingPointReport)}, module=__name__)
