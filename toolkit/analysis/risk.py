"""Risk-controlled thresholds (Learn-then-Test, Angelopoulos et al. 2021) for early exit and cascades.

Loss of an example at threshold tau: 1 if the last stage is right and the policy's exit is wrong. Its mean bounds the
accuracy drop versus the full model from above (``drop = P(final right) - P(policy right) <= P(final right, policy
wrong)``), and being binary it admits an exact binomial p-value for ``H0: risk > delta``. Thresholds are tested in a
fixed sequence from the most conservative (tau = inf, risk 0) to the cheapest; testing stops at the first
non-rejection. With probability at least ``1 - epsilon`` over the cal sample, every threshold returned has risk at
most ``delta``, so its accuracy drop is at most ``delta`` too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom

from .policies import early_exit
from .scores import stage_confidence
from .sweep import _check_cache, breakpoints, cumulate


def ltt_table(cal, delta: float = 0.01, score: str = "max_prob", temperature=None) -> pd.DataFrame:
    """Every distinct threshold on ``cal`` with its flip count (final right, policy wrong), empirical risk,
    accuracy drop and binomial p-value, most conservative first."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    logits, labels, flops = _check_cache(cal)
    N = len(labels)
    conf = stage_confidence(logits, score, temperature)
    correct = logits.argmax(-1) == labels[:, None]
    loss = correct[:, -1:] & ~correct  # [N, E]: flip if exiting at stage e
    rn, re, nxt, vals, last = breakpoints(conf)
    flips = cumulate(loss[rn, re].astype(np.int64) - loss[rn, nxt], 0, last)
    right = cumulate(correct[rn, re].astype(np.int64) - correct[rn, nxt], int(correct[:, -1].sum()), last)
    fl = cumulate(flops[rn, re] - flops[rn, nxt], flops[:, -1].sum(), last) / N
    return pd.DataFrame({"threshold": np.concatenate([[np.inf], vals[last]]), "flips": flips, "risk": flips / N,
                         "accuracy_drop": (correct[:, -1].sum() - right) / N, "flops": fl,
                         "speedup": flops[:, -1].mean() / fl, "p_value": binom.cdf(flips, N, delta)})


def risk_controlled_threshold(cal, delta: float = 0.01, epsilon: float = 0.05, score: str = "max_prob",
                              temperature=None, test=None) -> dict:
    """Cheapest threshold whose accuracy drop versus the last stage is at most ``delta`` with probability at least
    ``1 - epsilon`` (fixed-sequence testing on ``cal``); with ``test``, the realized drop and speed-up there."""
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    table = ltt_table(cal, delta, score, temperature)
    rejected = table["p_value"].to_numpy() <= epsilon
    n_ok = int(np.argmin(rejected)) if not rejected.all() else len(rejected)  # fixed sequence: stop at first failure
    row = table.iloc[max(n_ok - 1, 0)]
    out = {"threshold": float(row["threshold"]) if n_ok else float("inf"), "delta": delta, "epsilon": epsilon,
           "score": score, "n_cal": int(len(cal.labels)), "n_rejected": n_ok,
           "cal_risk": float(row["risk"]) if n_ok else 0.0, "cal_accuracy_drop": float(row["accuracy_drop"]) if n_ok
           else 0.0, "cal_speedup": float(row["speedup"]) if n_ok else 1.0}
    if test is not None:
        res = early_exit(test, out["threshold"], score, temperature)
        c = res.prediction == test.labels
        final = test.correct[:, -1]
        out.update({"test_accuracy_drop": float(final.mean() - c.mean()),
                    "test_risk": float((final & ~c).mean()),
                    "test_speedup": float(test.flops[:, -1].mean() / res.flops.mean())})
    return out
