"""Risk control (Learn-then-Test, Angelopoulos et al. 2021) on any :class:`Staged` view with a loss.

Loss of an example at threshold tau: ``staged.loss[n, stop]`` in [0, 1]. For classification it is 1 when the last
stage is right and the stop is wrong; its mean bounds the accuracy drop against the last stage from above
(``drop = P(last right) - P(stop right) <= P(last right, stop wrong)``). Thresholds are tested in a fixed sequence
from the most conservative (tau = inf, loss 0) to the cheapest, each against ``H0: risk > delta``; testing stops at
the first non-rejection. With probability at least ``1 - epsilon`` over the cal sample, the chosen threshold's risk
is at most ``delta``.

p-values: a binary loss has the exact binomial p-value ``P(Binomial(n, delta) <= losses)``; a loss in [0, 1] has
the Hoeffding-Bentkus p-value ``min(exp(-n h(min(r, delta), delta)), e P(Binomial(n, delta) <= ceil(n r)))`` with
``h(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b))`` (Bates et al. 2021).

>>> min_examples(0.01, 0.05)  # even a cal set without a single loss cannot certify fewer
299
>>> round(float(binomial_p_value(0, 100, 0.05)), 4), round(float(hb_p_value(0.0, 100, 0.05)), 4)
(0.0059, 0.0059)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import binom

from toolkit.analysis.engine.curves import _stage_quantities, sweep_totals
from toolkit.analysis.engine.results import _Table
from toolkit.analysis.engine.staged import Staged


def binomial_p_value(losses, n: int, delta: float) -> np.ndarray:
    """Exact p-value of ``H0: risk > delta`` for a 0/1 loss with ``losses`` ones among ``n`` examples."""
    return binom.cdf(np.round(np.asarray(losses, dtype=np.float64)), n, delta)


def hb_p_value(risk, n: int, delta: float) -> np.ndarray:
    """Hoeffding-Bentkus p-value of ``H0: risk > delta`` for a loss in [0, 1] with empirical mean ``risk``."""
    r = np.minimum(np.asarray(risk, dtype=np.float64), delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(r > 0, r * np.log(r / delta), 0.0) + (1 - r) * np.log((1 - r) / (1 - delta))
    hoeffding = np.exp(-n * h)
    bentkus = math.e * binom.cdf(np.ceil(n * np.asarray(risk, dtype=np.float64) - 1e-9), n, delta)
    return np.minimum(np.minimum(hoeffding, bentkus), 1.0)


def min_examples(delta: float, epsilon: float) -> int:
    """Smallest cal set on which Learn-then-Test can certify anything: ``(1 - delta)^n <= epsilon`` (the p-value of
    a threshold without a single loss, for either p-value)."""
    _check(delta, epsilon)
    return int(math.ceil(math.log(epsilon) / math.log1p(-delta) - 1e-12))


def _check(delta, epsilon):
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")


@dataclass(frozen=True, repr=False, eq=False)
class RiskTable(_Table):
    """Every distinct threshold on cal with its total loss, empirical risk, headline-metric drop, cost and
    p-value, most conservative first (the fixed testing sequence)."""

    frame: pd.DataFrame
    delta: float
    metric: str
    reference: str
    loss_kind: str
    n: int
    title = "Risk table"


def risk_table(staged: Staged, *, delta: float = 0.01) -> RiskTable:
    """Learn-then-Test statistics at every distinct threshold (see the module docstring).

    Columns: ``threshold``, ``losses`` (sum of the loss), ``risk`` (its mean), ``{metric}_drop`` (last stage minus
    policy, headline metric), ``flops``, ``speedup``, ``p_value``.
    """
    _check(delta, 0.5)
    s = staged
    if s.loss is None:
        raise ValueError("this view has no loss, so no risk control (the adapter defines none for this cache kind)")
    N = s.n_examples
    q = _stage_quantities(s)
    thr, t = sweep_totals(s, {"stats": q["stats"], "cost": q["cost"], "loss": s.loss})
    m = s.metric_of(t["stats"], N, s.metric)
    final = s.metric_of(s.stats[:, -1].sum(0), N, s.metric)
    p = binomial_p_value(t["loss"], N, delta) if s.loss_kind == "binary" else hb_p_value(t["loss"] / N, N, delta)
    frame = pd.DataFrame({"threshold": thr, "losses": t["loss"], "risk": t["loss"] / N,
                          f"{s.metric}_drop": final - m, "flops": t["cost"] / N,
                          "speedup": s.reference_cost.mean() / (t["cost"] / N), "p_value": p})
    return RiskTable(frame, delta, s.metric, s.reference, s.loss_kind, N)


@dataclass(frozen=True, eq=False)
class Certified:
    """The cheapest threshold whose risk is certified at most ``delta`` with probability ``1 - epsilon``."""

    threshold: float
    delta: float
    epsilon: float
    n: int
    n_rejected: int  # thresholds certified along the sequence (0: none, threshold = inf)
    risk: float
    table: RiskTable = field(repr=False)


def certify(staged: Staged, *, delta: float = 0.01, epsilon: float = 0.05) -> Certified:
    """Fixed-sequence Learn-then-Test on ``staged`` (use cal). Refuses a cal set too small to certify anything."""
    need = min_examples(delta, epsilon)
    if staged.n_examples < need:
        raise ValueError(f"Learn-then-Test cannot certify delta={delta} at epsilon={epsilon} with "
                         f"{staged.n_examples} examples: even a threshold without a single loss has p-value "
                         f"{(1 - delta) ** staged.n_examples:.3f} > {epsilon}; it needs at least {need} examples "
                         f"(or a larger delta or epsilon)")
    table = risk_table(staged, delta=delta)
    rejected = table.frame["p_value"].to_numpy() <= epsilon
    k = len(rejected) if rejected.all() else int(np.argmin(rejected))  # fixed sequence: stop at first failure
    row = table.frame.iloc[max(k - 1, 0)]
    return Certified(float(row["threshold"]) if k else math.inf, delta, epsilon, staged.n_examples, k,
                     float(row["risk"]) if k else 0.0, table)
