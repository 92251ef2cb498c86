"""The seed papers' claims, answered on the shipped caches in one table (README section "The seed claims").

Each row: one claim on one task, the statistic compared (the same computation as the notebook that discusses it),
the difference with a 95% paired bootstrap interval (over test examples, and over training seeds where the zoo has
several: ``seeds`` says how many), the share of resamples where the claimed winner is ahead, and the verdict:
"yes" when the interval lies above 0, "no: reversed" when it lies below, "not shown" when it includes 0.

Frontier statistics ("best metric at 4x", "speed-up at the large model's metric") take each policy's best threshold
on test, the same optimistic choice on both sides, and redo that choice in every resample; the notebooks give the
operating points chosen by cross-fitting next to them.

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


def _row(claim: str, task: str, statistic: str, frame: pd.DataFrame, unit: str, notebook: str) -> dict:
    """One claim's row from a one-row :func:`engine.compare` / :func:`engine.compare_speedups` frame whose first
    policy (``a``) is the claimed winner."""
    r = frame.iloc[0]
    a, b = frame.columns[frame.columns.get_loc("difference") - 2:frame.columns.get_loc("difference")]
    verdict = "yes" if r["lo"] > 0 else "no: reversed" if r["hi"] < 0 else "not shown (interval includes 0)"
    return {"claim": claim, "task": task, "statistic": statistic, "winner": r[a], "other": r[b],
            "difference": r["difference"], "lo": r["lo"], "hi": r["hi"], "p_ahead": r[f"P({a} > {b})"],
            "seeds": r["seeds"], "unit": unit, "verdict": verdict, "notebook": notebook}


def right_tool() -> list[dict]:
    """Right Tool: temperature scaling per exit (cross-fitted on test halves) moves the early-exit trade-off."""
    rows = []
    for task in TASKS:
        if not nb.available(task, "minilm6_me"):
            continue
        s = nb.load_seeds(task, "minilm6_me", verbose=False)
        scaled = [nb.view(nb.crossfit_temperatures(t).apply(t)) for t in s.test]
        c = engine.compare(scaled, s.views(), budgets=(2,), n_boot=nb.N_BOOT, seed=nb.SEED,
                           names=("calibrated", "T=1")).frame
        rows.append(_row("calibration moves the early-exit trade-off (Right Tool)", task,
                         "best accuracy at 2x, MiniLM-L6 exits, calibrated minus T=1", c, "accuracy",
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
            c = engine.compare(vs["cascade"], vs["mpnet_me"], budgets=(4,), metric=metric, n_boot=nb.N_BOOT,
                               seed=nb.SEED, names=("cascade", "early exit")).frame
            rows.append(_row("cascade beats early exit at high speed-up (CascadeBERT)", task,
                             f"best {metric} at 4x against MPNet-base alone, cascade L2->L6->MPNet minus early "
                             f"exit in multi-exit MPNet-base", c, metric, "04_early_exit_vs_cascade"))
        if "cascade_da" in vs:
            c = engine.compare(vs["cascade_da"], vs["cascade"], budgets=(4,), metric=metric, n_boot=nb.N_BOOT,
                               seed=nb.SEED, names=("difficulty-aware", "plain")).frame
            rows.append(_row("difficulty-aware cascade beats the plain one (CascadeBERT)", task,
                             f"best {metric} at 4x, difficulty-aware minus plain cascade", c, metric,
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
        c = engine.compare_speedups(e, m, max_drop=0.0, metric=metric, n_boot=nb.N_BOOT, seed=nb.SEED,
                                    names=("energy", "max-prob")).frame
        rows.append(_row("energy beats softmax routing (E-LANG, encoders)", task,
                         f"speed-up at Super's {metric}, Swift MiniLM-L6 / Super MPNet-base, energy minus "
                         f"max-prob", c, "x", "05_energy_routing"))
    if nb.available("sst2", "t2t"):
        s = nb.load_seeds("sst2", "t2t", verbose=False)
        e = [nb.view(t, score="energy", how="mean") for t in s.test]
        m = [nb.view(t, score="max_prob", how="mean") for t in s.test]
        c = engine.compare_speedups(e, m, max_drop=0.005, metric="exact_match", n_boot=nb.N_BOOT, seed=nb.SEED,
                                    names=("energy", "max-prob")).frame
        rows.append(_row("energy beats softmax routing (E-LANG, text-to-text)", "sst2",
                         "speed-up within 0.5 point of Super's exact match, text-to-text Swift/Super, token "
                         "scores averaged, energy minus max-prob", c, "x", "09_seq2seq_energy_routing"))
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
            c = engine.compare(slim, full, budgets=(4,), reference="b", n_boot=nb.N_BOOT, seed=nb.SEED,
                               names=("slenderized", "full width")).frame
            rows.append(_row("slenderized multi-exit is Pareto-better (COST-EFF)", task,
                             f"best accuracy at 1/4 of the full-width last exit's cost, {label} minus full-width "
                             f"MiniLM-L6 early exit", c, "accuracy", "07_objectives_and_slenderized"))
    return rows


def claims() -> pd.DataFrame:
    """Every claim on every task where the caches it needs are shipped (a row saying so where they are not)."""
    return pd.DataFrame(right_tool() + cascade_bert() + elang() + cost_eff())


def _num(v, unit: str) -> str:
    return f"{v:+.2f}x" if unit == "x" else f"{100 * v:+.1f} pts"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| claim | task | statistic | difference [95% CI] | P(winner ahead) | seeds | verdict | notebook |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        if pd.isna(r.difference):
            lines.append(f"| {r.claim} | {r.task} | {r.statistic} | – | – | – | {r.verdict} | {r.notebook} |")
            continue
        ci = (f"{_num(r.difference, r.unit)} [{_num(r.lo, r.unit)}, {_num(r.hi, r.unit)}]")
        lines.append(f"| {r.claim} | {r.task} | {r.statistic} | {ci} | {r.p_ahead:.2f} | {r.seeds} | {r.verdict} | "
                     f"{r.notebook} |")
    return "\n".join(lines)


def render() -> str:
    return (f"{START}\n{markdown(claims())}\n\nComputed by `python scripts/seed_claims.py` on the shipped test "
            f"caches: {nb.N_BOOT} paired bootstrap resamples, seed {nb.SEED}; speed-ups against the large model "
            f"alone (MPNet-base; Super), costs in FLOPs.\n{END}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    a = ap.parse_args(argv)
    text = render()
    print(text)
    return readme_sections.write(SECTION, text) if a.readme else 0


if __name__ == "__main__":
    sys.exit(main())
