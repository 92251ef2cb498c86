"""Notebook rendering: intervals as text, result rows as tables, conclusions as Markdown, figures with alt text.

Computing lives in the library (the engine, :mod:`toolkit.zoo`); this module only shows what it returns.

>>> from toolkit import report
>>> report.ci(0.01234, 0.0567)
'[0.012, 0.057]'
>>> report.ci(-0.01234, 0.0567, points=True)  # write "points" before it: "+2.2 points [-1.2, +5.7]"
'[-1.2, +5.7]'
>>> report.share(0.0261)
'2.6%'
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from toolkit.analysis.engine import Evaluation, Staged, crossfit
from toolkit.zoo import catalogue


# ------------------------------------------------------------------------------------------------- setup
def setup() -> None:
    """Notebook display defaults (pandas precision and width) and the evaluation protocol, printed once. Sets no
    warning filter: a warning a notebook should not show is silenced where it arises."""
    pd.set_option("display.precision", 4)
    pd.set_option("display.width", 150)
    pd.set_option("display.max_columns", 40)
    print(catalogue.protocol())


# ------------------------------------------------------------------------------------------------- text
def ci(lo: float, hi: float, *, digits: int = 3, points: bool = False) -> str:
    """An interval as text: ``[lo, hi]``, or in points (x 100, signed) with ``points=True`` (the text says
    "points" before it, as in "+2.2 points [-1.2, +5.7]")."""
    if points:
        return f"[{100 * lo:+.{max(digits - 2, 0)}f}, {100 * hi:+.{max(digits - 2, 0)}f}]"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def share(x: float) -> str:
    """A share as a percentage with one decimal: ``share(0.0261) == '2.6%'``."""
    return f"{100 * float(x):.1f}%"


def round_frame(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Floats rounded for display (what a table prints is what its conclusion quotes)."""
    return df.round(digits)


def dedent(text: str) -> str:
    """A conclusion's text without its common indentation and surrounding blank lines."""
    return textwrap.dedent(text).strip()


def conclude(text: str) -> None:
    """Display a conclusion written from computed values (an f-string) as Markdown."""
    from IPython.display import Markdown, display

    display(Markdown(dedent(text)))


# ------------------------------------------------------------------------------------------------- tables
def point_row(label: str, ev: Evaluation, *, metric: str | None = None) -> dict:
    """One operating point (an :class:`~toolkit.analysis.engine.Evaluation`) as a table row: the metric with its
    interval, the last stage's, the drop, the speed-up with its interval (NaN where no interval was computed)."""
    m = metric or ev.metric
    d = ev.to_dict()
    return {"point": label, m: d[m], f"{m}_lo": d.get(f"{m}_lo", np.nan), f"{m}_hi": d.get(f"{m}_hi", np.nan),
            f"final_{m}": d[f"final_{m}"], f"{m}_drop": ev.drop(m), "speedup": ev.speedup,
            "speedup_lo": d.get("speedup_lo", np.nan), "speedup_hi": d.get("speedup_hi", np.nan)}


def crossfit_table(views: Mapping[str, Sequence[Staged] | Staged], *, rule: str = "drop",
                   n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED, **rule_options) -> pd.DataFrame:
    """The engine's cross-fitted operating points (:func:`toolkit.analysis.engine.crossfit`), one row per policy and
    training seed, with 95% intervals.

    ``views``: label -> a view or a list of views (one per training seed). Columns: ``policy``, ``seed`` (the
    position in the list), each metric with ``_lo``/``_hi``, ``final_{metric}`` (last stage on every example),
    ``{metric}_drop``, ``speedup`` with its interval, ``escalated``, ``reference``.
    """
    rows = []
    for label, vs in views.items():
        for i, v in enumerate([vs] if isinstance(vs, Staged) else list(vs)):
            ev = crossfit(v, rule=rule, n_boot=n_boot, seed=seed, **rule_options).combined
            d = ev.to_dict()
            row = {"policy": label, "seed": i}
            for m in v.metric_names:
                row[m] = d[m]
                if f"{m}_lo" in d:
                    row[f"{m}_lo"], row[f"{m}_hi"] = d[f"{m}_lo"], d[f"{m}_hi"]
                row[f"final_{m}"] = d[f"final_{m}"]
            row[f"{v.metric}_drop"] = ev.drop()
            if v.metric != "accuracy" and "accuracy" in v.metric_names:
                row["accuracy_drop"] = ev.drop("accuracy")
            row.update(speedup=ev.speedup, speedup_lo=d.get("speedup_lo"), speedup_hi=d.get("speedup_hi"),
                       escalated=ev.escalated, reference=ev.reference)
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- conclusions
def operating_points_conclusion(*, crossfit_drop: Evaluation, crossfit_risk: Evaluation, cal_drop: Evaluation,
                                cal_risk: Evaluation, test_selected: Evaluation, max_drop: float = 0.01,
                                split: str = "SST-2 test") -> str:
    """The quickstart's reading of its operating points, as Markdown, from the evaluations it printed: the
    cross-fitted and cal-chosen ``drop`` and ``risk`` rules against the test-selected (in-sample) threshold."""
    cf, cr, oc, ts = crossfit_drop, crossfit_risk, cal_drop, test_selected
    pts = f"{100 * max_drop:g}-point"
    beyond = ("The cross-fitted drop rule lands beyond it: it applies a different threshold to each half, which one "
              "threshold on all of test cannot do, and its interval shows how far the split alone moves it."
              if cf.speedup > ts.speedup else "The cross-fitted drop rule stays below it.")
    return dedent(f"""
        **Reading the numbers above.** On {split} the last exit is at {cf.final['accuracy']:.3f}. Chosen by
        cross-fitting, the `drop` rule gives accuracy {cf['accuracy']:.3f} {ci(*cf.intervals['accuracy'])} at
        {cf.speedup:.2f}x {ci(*cf.intervals['speedup'], digits=2)}, {100 * cf.drop():.1f} points below the last exit
        ({"within" if cf.drop() <= max_drop else "beyond"} its {pts} target on the choosing halves); the `risk` rule,
        more conservative, gives {cr['accuracy']:.3f} at {cr.speedup:.2f}x ({100 * cr.drop():.1f} points lost). The
        best single threshold for test itself (test-selected, in-sample) keeps accuracy within {100 * max_drop:g} point
        up to {ts.speedup:.2f}x: the optimistic number that picking on test would report. {beyond}
        Chosen on `cal`, the `drop` rule loses {100 * oc.drop():.1f} points
        on test at {oc.speedup:.2f}x, {"more than" if oc.drop() > max_drop else "within"} the {100 * max_drop:g} point it
        promised: `cal`'s phrases are easier than the dev sentences, so confidences look more trustworthy there than
        they are on test. The `risk` rule chosen on `cal` loses {100 * cal_risk.drop():.1f} points at
        {cal_risk.speedup:.2f}x; its guarantee assumes `cal` and test are exchangeable, which only the cross-fitted
        halves are. The oracle (star) shows how much a perfect exit decision could still gain.
        """)


# ------------------------------------------------------------------------------------------------- figures
def merge_identical(curves: Mapping, *, columns=("speedup",)) -> dict:
    """Curves that coincide (same rows in ``columns`` and each curve's headline metric) merged into one entry
    labelled ``"a = b = c (identical)"``, so a figure draws each once and its legend still names every curve."""
    groups: list[list[str]] = []
    for k, c in curves.items():
        cols = [*columns, c.metric]
        for g in groups:
            ref = curves[g[0]].frame[cols].to_numpy()
            if ref.shape == c.frame[cols].shape and np.allclose(ref, c.frame[cols].to_numpy()):
                g.append(k)
                break
        else:
            groups.append([k])
    return {(" = ".join(g) + " (identical)" if len(g) > 1 else g[0]): curves[g[0]] for g in groups}


def figure_html(png: bytes, alt: str) -> str:
    """An ``<img>`` with the figure inline and its alt text (what nbconvert's HTML and JupyterLab render)."""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt, quote=True)}">'


def show(fig, alt: str, *, dpi: int = 100) -> None:
    """Display a matplotlib figure with alt text, then close it.

    The output carries the figure three ways: ``text/html`` (an ``<img alt=...>``: nbconvert's HTML and JupyterLab
    show this one, with the alt text), ``image/png`` with ``{"alt": ...}`` in its output metadata (nbconvert's
    classic template reads it) and ``text/plain`` (the alt text itself, for text-only readers).
    """
    import matplotlib.pyplot as plt
    from IPython.display import display

    if not alt or not alt.strip():
        raise ValueError("every figure needs alt text: say what it shows and what to read from it")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    png = buf.getvalue()
    alt = " ".join(alt.split())
    display({"text/html": figure_html(png, alt), "image/png": base64.b64encode(png).decode("ascii"),
             "text/plain": f"[figure] {alt}"}, raw=True, metadata={"image/png": {"alt": alt}})
