"""The seed papers' claims, answered on the shipped caches in one table (README section "The seed claims").

Each row: one claim on one task, the statistic compared (the same computation as the notebook that discusses it),
the difference between the operating points each side chooses by cross-fitting (``engine.compare_crossfit``: the
rule picks the threshold on one half of test and it is applied to the other, then swapped) with a 95% paired
bootstrap interval (over test examples, and over training seeds where the zoo has several: ``seeds`` says how
many), the share of resamples where the first side is ahead, and the verdict: "yes" when the interval lies above
0, "no: reversed" when it lies below, "not shown" when it includes 0. Beside it, the test-selected difference: each
side's best threshold chosen on all of test and scored on the same examples (in-sample, the notebooks' curves). It is
not a bound on the cross-fitted difference (a difference of two optima can fall on either side of it).

    python scripts/seed_claims.py             # print the table
    python scripts/seed_claims.py --readme    # also write it into README.md between the claims markers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_sections  # noqa: E402

from toolkit.analysis import engine  # noqa: E402
from toolkit.analysis import notebook as nb  # noqa: E402

TASKS = ("sst2", "mrpc", "rte", "cola", "agnews")
SECTION = "seed-claims"
START, END = readme_sections.markers(SECTION)


def _row(claim: str, task: str, statistic: str, crossfit: pd.DataFrame, which: str, in_sample: pd.DataFrame,
         unit: str, notebook: str) -> dict:
    """One claim's row: the verdict from the cross-fitted comparison (``which``: its ``metric`` or ``speedup``
    row; the first policy is the claimed winner), the test-selected (in-sample) difference beside it."""
    r = crossfit.iloc[0] if which == "metric" else crossfit.iloc[1]
    other = crossfit.iloc[1] if which == "metric" else crossfit.iloc[0]  # the realised other quantity
    a, b = crossfit.columns[crossfit.columns.get_loc("difference") - 2:crossfit.columns.get_loc("difference")]
    f = in_sample.iloc[0]
    verdict = "yes" if r["lo"] > 0 else "no: reversed" if r["hi"] < 0 else "not shown (interval includes 0)"
    if r["lo"] > 0 and other["hi"] < 0:
        verdict = f"trade-off: ahead, but its realised {other['statistic']} is lower"
    elif r["hi"] < 0 and other["lo"] > 0:
        verdict = f"trade-off: behind, but its realised {other['statistic']} is higher"
    return {"claim": claim, "task": task, "statistic": statistic, "rule": r["rule"], "winner": r[a], "other": r[b],
            "difference": r["difference"], "lo": r["lo"], "hi": r["hi"], "p_ahead": r[f"P({a} > {b})"],
            "realised": other["difference"], "realised_lo": other["lo"], "realised_hi": other["hi"],
            "realised_unit": "x" if which == "metric" else "pts",
            "test_selected": f["difference"], "test_selected_lo": f["lo"], "test_selected_hi": f["hi"], "seeds": r["seeds"],
            "unit": unit, "verdict": verdict, "notebook": notebook}


def right_tool() -> list[dict]:
    """Right Tool: temperature scaling per exit (cross-fitted on test halves) moves the early-exit trade-off."""
    rows = []
    for task in TASKS:
        if not nb.available(task, "minilm6_me"):
            continue
        s = nb.load_seeds(task, "minilm6_me", verbose=False)
        scaled = [nb.view(nb.crossfit_temperatures(t).apply(t)) for t in s.test]
        kw = dict(n_boot=nb.N_BOOT, seed=nb.SEED, names=("calibrated", "T=1"))
        x = engine.compare_crossfit(scaled, s.views(), rule="budget", budget=2, **kw).frame
        c = engine.compare(scaled, s.views(), budgets=(2,), **kw).frame
        rows.append(_row("calibration moves the early-exit trade-off (Right Tool)", task,
                         "accuracy at 2x, MiniLM-L6 exits, calibrated minus T=1", x, "metric", c, "accuracy",
                         "02_calibration"))
    return rows


def _cascade_views(task: str) -> dict:
    casc = nb.load_seeds(task, "cascade", verbose=False).views()
    ref_cost, ref = casc[0].reference_cost, casc[0].reference
    out = {"cascade": casc}
    for name in ("cascade_da", "mpnet_me"):
        if nb.available(task, name):
            out[name] = [v.align(casc[0].example_ids).with_reference(ref_cost, ref)
                         for v in nb.load_seeds(task, name, verbose=False).views()]
    return out


def cascade_bert() -> list[dict]:
    """CascadeBERT: a cascade beats early exit inside the large model at high speed-up; its difficulty-aware
    ranking of the small models beats the plain cascade."""
    rows = []
    for task in TASKS:
        if not nb.available(task, "cascade"):
            continue
        vs = _cascade_views(task)
        metric = vs["cascade"][0].metric
        if "mpnet_me" in vs:
            kw = dict(metric=metric, n_boot=nb.N_BOOT, seed=nb.SEED, names=("cascade", "early exit"))
            x = engine.compare_crossfit(vs["cascade"], vs["mpnet_me"], rule="budget", budget=4, **kw).frame
            c = engine.compare(vs["cascade"], vs["mpnet_me"], budgets=(4,), **kw).frame
            rows.append(_row("cascade beats early exit at high speed-up (CascadeBERT)", task,
                             f"{metric} at 4x against MPNet-base alone, cascade L2->L6->MPNet minus early exit in "
                             f"multi-exit MPNet-base", x, "metric", c, metric, "04_early_exit_vs_cascade"))
        if "cascade_da" in vs:
            kw = dict(metric=metric, n_boot=nb.N_BOOT, seed=nb.SEED, names=("difficulty-aware", "plain"))
            x = engine.compare_crossfit(vs["cascade_da"], vs["cascade"], rule="budget", budget=4, **kw).frame
            c = engine.compare(vs["cascade_da"], vs["cascade"], budgets=(4,), **kw).frame
            rows.append(_row("difficulty-aware cascade beats the plain one (CascadeBERT)", task,
                             f"{metric} at 4x, difficulty-aware minus plain cascade", x, "metric", c, metric,
                             "04_early_exit_vs_cascade"))
        else:
            rows.append({"claim": "difficulty-aware cascade beats the plain one (CascadeBERT)", "task": task,
                         "statistic": "not shipped: the difficulty-aware members are zoo v2 (GPU training)",
                         "verdict": "not answered", "notebook": "04_early_exit_vs_cascade"})
    return rows


def elang() -> list[dict]:
    """E-LANG: energy routes Swift/Super better than softmax confidence (encoder pair and text-to-text pair)."""
    rows = []
    pair = ["minilm-l6:L6", "mpnet:L12"]
    for task in TASKS:
        if not nb.available(task, "cascade"):
            continue
        tests = [t.select_stages(pair) for t in nb.load_seeds(task, "cascade", verbose=False).test]
        e, m = [nb.view(t, score="energy") for t in tests], [nb.view(t, score="max_prob") for t in tests]
        metric = e[0].metric
        kw = dict(metric=metric, n_boot=nb.N_BOOT, seed=nb.SEED, names=("energy", "max-prob"))
        x = engine.compare_crossfit(e, m, rule="drop", max_drop=0.0, **kw).frame
        c = engine.compare_speedups(e, m, max_drop=0.0, **kw).frame
        rows.append(_row("energy beats softmax routing (E-LANG, encoders)", task,
                         f"speed-up at Super's {metric}, Swift MiniLM-L6 / Super MPNet-base, energy minus "
                         f"max-prob", x, "speedup", c, "x", "05_energy_routing"))
    if nb.available("sst2", "t2t"):
        s = nb.load_seeds("sst2", "t2t", verbose=False)
        e = [nb.view(t, score="energy", how="mean") for t in s.test]
        m = [nb.view(t, score="max_prob", how="mean") for t in s.test]
        kw = dict(metric="exact_match", n_boot=nb.N_BOOT, seed=nb.SEED, names=("energy", "max-prob"))
        x = engine.compare_crossfit(e, m, rule="drop", max_drop=0.005, **kw).frame
        c = engine.compare_speedups(e, m, max_drop=0.005, **kw).frame
        rows.append(_row("energy beats softmax routing (E-LANG, text-to-text)", "sst2",
                         "speed-up within 0.5 point of Super's exact match, text-to-text Swift/Super, token "
                         "scores averaged, energy minus max-prob", x, "speedup", c, "x", "09_seq2seq_energy_routing"))
    return rows


def cost_eff() -> list[dict]:
    """COST-EFF: a slenderized multi-exit model is more accurate than the full-width one at equal small cost."""
    rows = []
    for task in TASKS:
        if not nb.available(task, "minilm6_me"):
            continue
        full = nb.load_seeds(task, "minilm6_me", verbose=False).views()
        for label, name in (("1/2 width", "minilm6_me_w50"), ("1/4 width", "minilm6_me_w25")):
            if not nb.available(task, name):
                continue
            slim = nb.load_seeds(task, name, verbose=False).views()
            kw = dict(reference="b", n_boot=nb.N_BOOT, seed=nb.SEED, names=("slenderized", "full width"))
            x = engine.compare_crossfit(slim, full, rule="budget", budget=4, **kw).frame
            c = engine.compare(slim, full, budgets=(4,), **kw).frame
            rows.append(_row("slenderized multi-exit is Pareto-better (COST-EFF)", task,
                             f"accuracy at 1/4 of the full-width last exit's cost, {label} minus full-width "
                             f"MiniLM-L6 early exit", x, "metric", c, "accuracy", "07_objectives_and_slenderized"))
    return rows


def claims() -> pd.DataFrame:
    """Every claim on every task where the caches it needs are shipped (a row saying so where they are not)."""
    return pd.DataFrame(right_tool() + cascade_bert() + elang() + cost_eff())


def _num(v, unit: str) -> str:
    return f"{v:+.2f}x" if unit == "x" else f"{100 * v:+.1f} pts"  # metric differences in points (x 100)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| claim | task | statistic | cross-fitted difference [95% CI] | P(first minus second > 0) | "
             "at the same points, the other quantity [95% CI] | test-selected difference, in-sample [95% CI] | seeds | "
             "verdict | notebook |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        if pd.isna(r.difference):
            lines.append(f"| {r.claim} | {r.task} | {r.statistic} | – | – | – | – | – | {r.verdict} | {r.notebook} |")
            continue
        x = f"{_num(r.difference, r.unit)} [{_num(r.lo, r.unit)}, {_num(r.hi, r.unit)}]"
        o = (f"{'speed-up' if r.realised_unit == 'x' else 'metric'} {_num(r.realised, r.realised_unit)} "
             f"[{_num(r.realised_lo, r.realised_unit)}, {_num(r.realised_hi, r.realised_unit)}]")
        f = f"{_num(r.test_selected, r.unit)} [{_num(r.test_selected_lo, r.unit)}, {_num(r.test_selected_hi, r.unit)}]"
        lines.append(f"| {r.claim} | {r.task} | {r.statistic} | {x} | {r.p_ahead:.2f} | {o} | {f} | {r.seeds} | "
                     f"{r.verdict} | {r.notebook} |")
    return "\n".join(lines)


def in_sample_vs_crossfit(table: pd.DataFrame, *, tol: float = 1e-9) -> tuple[int, int, int]:
    """``(below, equal, answered)``: answered rows whose test-selected difference is below the cross-fitted one
    (by more than ``tol``), equal to it (within ``tol``), and the number of answered rows."""
    shown = table.dropna(subset=["difference"])
    gap = shown.test_selected - shown.difference
    return int((gap < -tol).sum()), int((gap.abs() <= tol).sum()), len(shown)


def render() -> str:
    table = claims()
    below, equal, answered = in_sample_vs_crossfit(table)
    return (f"{START}\n{markdown(table)}\n\nComputed by `python scripts/seed_claims.py` on the shipped test "
            f"caches ({nb.N_BOOT} paired bootstrap resamples, seed {nb.SEED}; speed-ups against the large model "
            f"alone: MPNet-base, Super, or the full-width model for COST-EFF; costs in FLOPs). Cross-fitted: each "
            f"policy's threshold is chosen by the rule on one half of test (halves seed {nb.SEED}, the same for "
            f"both) and applied to the other, then swapped, so the verdict rests on operating points a user can "
            f"choose; beside it, the test-selected difference (each side's best threshold chosen on all of test and "
            f"scored there: in-sample). It is no bound on the cross-fitted difference: it is below it in {below} of the "
            f"{answered} answered rows and equal in {equal}.\n{END}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    a = ap.parse_args(argv)
    text = render()
    print(text)
    return readme_sections.write(SECTION, text) if a.readme else 0


if __name__ == "__main__":
    sys.exit(main())
