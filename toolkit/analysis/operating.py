"""Operating points: fit temperatures and thresholds on ``cal``, report on ``test``, in one call."""

from __future__ import annotations

import numpy as np

from .calibration import fit_stage_temperatures
from .policies import early_exit, final_stage
from .risk import risk_controlled_threshold
from .sweep import sweep


def _check_pair(cal, test):
    if list(cal.stages) != list(test.stages):
        raise ValueError(f"cal and test caches have different stages: {cal.stages} vs {test.stages}; collect both "
                         f"with the same models")
    if cal.n_classes != test.n_classes:
        raise ValueError(f"cal has {cal.n_classes} classes, test {test.n_classes}")
    if cal.split == "test" or test.split == "cal":
        raise ValueError(f"fit on a cal cache and report on a test cache (got cal split {cal.split!r}, test split "
                         f"{test.split!r})")


def operating_point(cal, test, score: str = "max_prob", calibrate: bool = True, rule: str = "drop",
                    max_drop: float = 0.01, delta: float = 0.01, epsilon: float = 0.05) -> dict:
    """Choose a threshold on ``cal`` and report it on ``test``.

    ``calibrate``: fit one temperature per stage on cal (NLL) and score with it. ``rule="drop"``: the cheapest
    threshold whose cal metric is within ``max_drop`` (absolute) of the last stage's cal metric; ``rule="risk"``:
    the Learn-then-Test threshold (:func:`toolkit.analysis.risk.risk_controlled_threshold`). Returns temperatures, threshold
    and cal/test summaries (metric, accuracy, FLOPs, speed-up, mean layers, share escalated), plus the full model's
    test metric for reference.
    """
    _check_pair(cal, test)
    temps = fit_stage_temperatures(cal) if calibrate else np.ones(cal.n_stages)
    if rule == "drop":
        df = sweep(cal, score, temps)
        ok = df[df["metric"] >= df["metric"].iloc[0] - max_drop - 1e-12]
        thr = float(ok.loc[ok["flops"].idxmin(), "threshold"])
        extra = {"max_drop": max_drop}
    elif rule == "risk":
        r = risk_controlled_threshold(cal, delta, epsilon, score, temps)
        thr = r["threshold"]
        extra = {"delta": delta, "epsilon": epsilon}
    else:
        raise ValueError(f"unknown rule {rule!r}; use 'drop' or 'risk'")
    return {"score": score, "rule": rule, **extra, "temperatures": temps.tolist(), "threshold": thr,
            "cal": early_exit(cal, thr, score, temps).summary(cal),
            "test": early_exit(test, thr, score, temps).summary(test),
            "test_full_model": final_stage(test).summary(test)}
