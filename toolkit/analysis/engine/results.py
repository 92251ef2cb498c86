"""Result types of the engine: small frozen dataclasses with ``to_frame()``, ``to_dict()`` and an HTML repr.

Column vocabulary (every result, every cache kind): ``threshold`` (confidence units, higher = more confident),
one column per metric (``accuracy``, ``f1``, ``mcc``, ``exact_match``, ``bleu``, ``chrf``, ``agreement``...),
``flops`` (mean FLOPs per example), ``speedup`` (mean FLOPs of the named ``reference`` / mean FLOPs of the policy),
``escalated`` (share past the first model), ``final_share`` (share reaching the last stage), ``mean_layers``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def html_table(title: str, rows: Mapping) -> str:
    """A two-column HTML table (notebook repr of small results)."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in rows.items())
    return f"<b>{html.escape(title)}</b><table>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def text_repr(title: str, frame: pd.DataFrame, *, header: str | None = None, max_lines: int = 24,
              width: int = 110) -> str:
    """Script-mode repr of a result: a title line, then ``frame`` (its ``to_frame()``) as text, truncated.

    One row, or a few rows of many columns, is turned (one line per column, one column per row, headed by column
    ``header`` when given), with ``x_lo``/``x_hi`` folded into ``x [lo, hi]``; a longer frame keeps its shape.
    """
    if (len(frame) == 1 and frame.shape[1] > 1) or (0 < len(frame) <= 4 and frame.shape[1] > 8):
        heads = [str(h) for h in frame[header]] if header else [""] * len(frame)
        rows = frame.drop(columns=[header] if header else [])
        keys = [k for k in rows.columns if not (str(k).endswith(("_lo", "_hi")) and str(k)[:-3] in rows.columns)]
        cells = {h or f"{i}": [_interval_cell(r, k) for k in keys] for i, (h, (_, r)) in
                 enumerate(zip(heads, rows.iterrows()))}
        body = pd.DataFrame(cells, index=[f"  {k}" for k in keys]).to_string(header=bool(header), line_width=width)
    else:
        body = frame.to_string(index=False, max_rows=max_lines, float_format="{:.4g}".format, line_width=width)
    lines = body.splitlines()
    if len(lines) > max_lines + 1:
        lines = [*lines[:max_lines], f"  ... {len(lines) - max_lines} more lines (to_frame() holds them all)"]
    return "\n".join([title, *lines])


def _interval_cell(row: pd.Series, key) -> str:
    v = row[key]
    shown = f"({', '.join(map(_fmt, v))})" if isinstance(v, tuple) else _fmt(v)  # per-stage thresholds
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if isinstance(lo, (float, np.floating)) and isinstance(hi, (float, np.floating)) and np.isfinite([lo, hi]).all():
        return f"{shown} [{_fmt(lo)}, {_fmt(hi)}]"
    return shown


def jsonable(v):
    """Plain JSON types with non-finite floats as None (``json.dumps(..., allow_nan=False)`` accepts the result)."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [jsonable(x) for x in np.asarray(v, dtype=object).tolist()] if isinstance(v, np.ndarray) else \
            [jsonable(x) for x in v]
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v


class _Table:
    """Shared repr for results that hold one frame."""

    frame: pd.DataFrame
    title = ""

    def to_frame(self) -> pd.DataFrame:
        """The rows as a new pandas frame (a copy: the result itself stays frozen)."""
        return self.frame.copy()

    def __len__(self) -> int:
        return len(self.frame)

    def _caption(self) -> str:
        unit = (getattr(self, "meta", None) or {}).get("cost_unit", "FLOPs")
        cost = "" if unit == "FLOPs" else f"; flops column in {unit}"  # the cache's own cost unit (meta cost_unit)
        return f"{self.title}: speed-up against {self.reference}{cost}" if hasattr(self, "reference") else self.title

    def _repr_html_(self) -> str:
        return f"<b>{html.escape(self._caption())}</b>" + self.frame.to_html(index=False, float_format="{:.4g}".format,
                                                                          max_rows=30)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._caption()}, {len(self.frame)} rows)\n" + \
            self.frame.to_string(index=False, max_rows=12, float_format="{:.4g}".format)


@dataclass(frozen=True, repr=False, eq=False)
class Curve(_Table):
    """Outcomes at many thresholds: one row per threshold, from the most conservative (``inf``) to the cheapest.

    ``exact``: True when the rows are every distinct threshold (:func:`~toolkit.analysis.engine.sweep`).
    ``metric``: the headline metric; ``reference``: what ``speedup`` divides by.
    """

    frame: pd.DataFrame
    metric: str
    reference: str
    n: int
    exact: bool = False
    meta: Mapping = field(default_factory=dict)
    title = "Curve"

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy()


@dataclass(frozen=True, repr=False, eq=False)
class Bands(_Table):
    """Percentile bootstrap intervals (resampling examples) at given thresholds: each metric, ``flops`` and
    ``speedup`` with ``_lo``/``_hi`` columns beside the point estimate."""

    frame: pd.DataFrame
    metric: str
    reference: str
    n: int
    n_boot: int
    ci: float
    seed: int
    meta: Mapping = field(default_factory=dict)
    title = "Bootstrap bands"


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One policy on one split: metrics, cost and where examples stopped.

    ``final``: the last stage on every example (the same examples), so ``drop(metric)`` is what early decisions
    cost. ``intervals``: percentile bootstrap intervals (metric name, ``flops``, ``speedup`` or ``{metric}_drop``
    -> (lo, hi)) when asked for; a drop's interval is paired (policy and last stage on the same resamples):
    :meth:`drop_interval`.
    """

    metrics: Mapping[str, float]
    final: Mapping[str, float]
    flops: float
    speedup: float
    escalated: float
    final_share: float
    mean_layers: float
    n: int
    metric: str
    reference: str
    threshold: float | tuple = math.inf
    split: str | None = None
    extras: Mapping[str, float] = field(default_factory=dict)
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    cost_unit: str = "FLOPs"  # what ``flops`` counts (the cache's ``meta["cost_unit"]``)

    def __getitem__(self, name: str) -> float:
        """A metric or a cost field by name (``ev["accuracy"]``, ``ev["speedup"]``)."""
        if name in self.metrics:
            return self.metrics[name]
        return self.to_dict()[name]

    def drop(self, metric: str | None = None) -> float:
        """Metric of the last stage minus the policy's (positive = the policy loses), on the same examples."""
        m = metric or self.metric
        return float(self.final[m] - self.metrics[m])

    def drop_interval(self, metric: str | None = None) -> tuple[float, float]:
        """Paired percentile bootstrap interval ``(lo, hi)`` of :meth:`drop` (``evaluate(..., n_boot=...)``)."""
        m = metric or self.metric
        if f"{m}_drop" not in self.intervals:
            raise ValueError(f"no interval of the {m} drop: evaluate with n_boot > 0 (e.g. op.evaluate(test, "
                             f"n_boot=1000))")
        return self.intervals[f"{m}_drop"]

    def to_dict(self) -> dict:
        drops = {f"{k}_drop": self.drop(k) for k in self.metrics if f"{k}_drop" in self.intervals}
        out = {"split": self.split, "n": self.n, "threshold": self.threshold, **self.metrics,
               **{f"final_{k}": v for k, v in self.final.items()}, f"{self.metric}_drop": self.drop(), **drops,
               "flops": self.flops, "speedup": self.speedup, "reference": self.reference,
               "escalated": self.escalated, "final_share": self.final_share, "mean_layers": self.mean_layers,
               **self.extras}
        for k, (lo, hi) in self.intervals.items():
            out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def _title(self) -> str:
        return f"Evaluation on {self.split or 'data'} (speed-up against {self.reference}; cost in {self.cost_unit})"

    def _repr_html_(self) -> str:
        return html_table(self._title(), self.to_dict())

    def __repr__(self) -> str:
        return text_repr(f"{self._title()}:", self.to_frame())


@dataclass(frozen=True, eq=False)
class Summary:
    """Headline numbers of one curve, described on the curve's own data.

    Every ``*_upper_bound`` is an optimum over the curve's own thresholds: what the best threshold *for this very
    data* gives, an upper bound on what a threshold chosen elsewhere (on cal, by :func:`choose`) achieves here.

    ``final``: the metric with every example at the last stage; ``speedup_at_drop_upper_bound``: largest speed-up
    whose metric is within ``max_drop`` (absolute) of ``final``; ``metric_at_upper_bound``: speed-up ``k`` -> best
    metric among rows with speed-up at least ``k`` (NaN if none); ``auc``: area under the metric/speed-up frontier
    between its extremes, divided by that range (a mean metric over speed-ups; the frontier starts at 1x).
    """

    metric: str
    reference: str
    final: float
    max_drop: float
    speedup_at_drop_upper_bound: float
    metric_at_upper_bound: Mapping[float, float]
    best_upper_bound: float
    auc: float

    def to_dict(self) -> dict:
        return {"metric": self.metric, "reference": self.reference, "final": self.final, "max_drop": self.max_drop,
                "speedup_at_drop_upper_bound": self.speedup_at_drop_upper_bound,
                **{f"{self.metric}_at_{k:g}x_upper_bound": v for k, v in self.metric_at_upper_bound.items()},
                "best_upper_bound": self.best_upper_bound, "auc": self.auc}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def _repr_html_(self) -> str:
        return html_table("Summary (optima on this curve's own data are upper bounds)", self.to_dict())

    def __repr__(self) -> str:
        return text_repr("Summary (optima on this curve's own data are upper bounds):", self.to_frame())
