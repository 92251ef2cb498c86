"""The seed papers' claims, answered on the shipped caches in one table (the results page docs/results/claims.md).

Each row: one claim on one task, the statistic compared (the same computation as the notebook that discusses it),
the difference between the operating points each side chooses by cross-fitting (``engine.compare_crossfit``: the
rule picks the threshold on one half of test and it is applied to the other, then swapped; a claim that chooses no
threshold, CascadeBERT's reliability, compares each side's most confident share of test instead) with a 95% paired
bootstrap interval (over test examples, and over training seeds where the zoo has several: ``seeds`` says how
many), the share of resamples where the first side is ahead, and the verdict: "yes" when the interval lies above
0, "no: reversed" when it lies below, "not shown" when it includes 0. Beside it, the test-selected difference: each
side's best threshold chosen on all of test and scored on the same examples (in-sample, the notebooks' curves). It is
not a bound on the cross-fitted difference (a difference of two optima can fall on either side of it).

>>> from toolkit.zoo import claims
>>> table = claims.seed_claims()  # doctest: +SKIP
>>> claims.write_readme(table)  # doctest: +SKIP
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toolkit.analysis import engine
from toolkit.analysis.metrics.calibration import crossfit_temperatures
from toolkit.zoo import catalogue, readme

TASKS = ("sst2", "mrpc", "rte", "cola", "agnews")
SECTION = "seed-claims"
COMMAND = "python scripts/seed_claims.py"


def verdict(lo: float, hi: float, other_lo: float, other_hi: float, other_statistic: str) -> str:
    """The verdict of one claim from its interval ``[lo, hi]`` and the interval of the other quantity at the same
    operating points: a trade-off when the two point in opposite directions; a claim not shown says when the other
    quantity's interval lies on one side of 0."""
    if lo > 0 and other_hi < 0:
        return f"trade-off: ahead, but its realised {other_statistic} is lower"
    if hi < 0 and other_lo > 0:
        return f"trade-off: behind, but its realised {other_statistic} is higher"
    if lo > 0:
        return "yes"
    if hi < 0:
        return "no: reversed"
    # not shown, but the other quantity may still have moved at the same operating points: say which way
    other = (f", and its realised {other_statistic} is lower" if other_hi < 0 else
             f", but its realised {other_statistic} is higher" if other_lo > 0 else "")
    return f"not shown (interval includes 0){other}"


def _row(claim: str, task: str, statistic: str, crossfit: pd.DataFrame, which: str, in_sample: pd.DataFrame,
         unit: str, notebook: str) -> dict:
    """One claim's row: the verdict from the cross-fitted comparison (``which``: its ``metric`` or ``speedup``
    row; the first policy is the claimed winner), the test-selected (in-sample) difference beside it."""
    r = crossfit.iloc[0] if which == "metric" else crossfit.iloc[1]
    other = crossfit.iloc[1] if which == "metric" else crossfit.iloc[0]  # the realised other quantity
    a, b = crossfit.columns[crossfit.columns.get_loc("difference") - 2:crossfit.columns.get_loc("difference")]
    f = in_sample.iloc[0]
    return {"claim": claim, "task": task, "statistic": statistic, "rule": r["rule"], "winner": r[a], "other": r[b],
            "difference": r["difference"], "lo": r["lo"], "hi": r["hi"], "p_ahead": r[f"P({a} > {b})"],
            "realised": other["difference"], "realised_lo": other["lo"], "realised_hi": other["hi"],
            "realised_unit": "x" if which == "metric" else "pts",
            "test_selected": f["difference"], "test_selected_lo": f["lo"], "test_selected_hi": f["hi"],
            "seeds": r["seeds"], "unit": unit,
            "verdict": verdict(r["lo"], r["hi"], other["lo"], other["hi"], other["statistic"]), "notebook": notebook}


def _views(task: str, name: str, **options):
    return catalogue.load_seeds(task, name, verbose=False).views(**options)


def right_tool(*, tasks=TASKS, n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED) -> list[dict]:
    """Right Tool: temperature scaling per exit (cross-fitted on test halves) moves the early-exit trade-off."""
    rows = []
    for task in tasks:
        if not catalogue.available(task, "minilm6_me"):
            continue
        s = catalogue.load_seeds(task, "minilm6_me", verbose=False)
        scaled = [engine.staged(crossfit_temperatures(t, seed=seed).apply(t), reference=catalogue.REFERENCE)
                  for t in s.test]
        kw = dict(n_boot=n_boot, seed=seed, names=("calibrated", "T=1"), same_runs=True)  # one run, two scorings
        x = engine.compare_crossfit(scaled, s.views(), rule="budget", budget=2, **kw).frame
        c = engine.compare(scaled, s.views(), budgets=(2,), **kw).frame
        rows.append(_row("calibration moves the early-exit trade-off (Right Tool)", task,
                         "accuracy at 2x, MiniLM-L6 exits, calibrated minus T=1", x, "metric", c, "accuracy",
                         "02_calibration"))
    return rows


def _cascade_views(task: str) -> dict:
    casc = _views(task, "cascade")
    ref_cost, ref = casc[0].reference_cost, casc[0].reference
    out = {"cascade": casc}
    for name in ("cascade_da", "mpnet_me"):
        if catalogue.available(task, name):
            out[name] = [v.align(casc[0].example_ids).with_reference(ref_cost, ref) for v in _views(task, name)]
    return out


def cascade_bert(*, tasks=TASKS, n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED) -> list[dict]:
    """CascadeBERT: a cascade beats early exit inside the large model at high speed-up; its difficulty-aware
    ranking of the small models beats the plain cascade."""
    rows = []
    for task in tasks:
        if not catalogue.available(task, "cascade"):
            continue
        vs = _cascade_views(task)
        metric = vs["cascade"][0].metric
        if "mpnet_me" in vs:
            kw = dict(metric=metric, n_boot=n_boot, seed=seed, names=("cascade", "early exit"))
            x = engine.compare_crossfit(vs["cascade"], vs["mpnet_me"], rule="budget", budget=4, **kw).frame
            c = engine.compare(vs["cascade"], vs["mpnet_me"], budgets=(4,), **kw).frame
            rows.append(_row("cascade beats early exit at high speed-up (CascadeBERT)", task,
                             f"{metric} at 4x against MPNet-base alone, cascade L2->L6->MPNet minus early exit in "
                             f"multi-exit MPNet-base", x, "metric", c, metric, "04_early_exit_vs_cascade"))
        if "cascade_da" in vs:
            kw = dict(metric=metric, n_boot=n_boot, seed=seed, names=("difficulty-aware", "plain"))
            x = engine.compare_crossfit(vs["cascade_da"], vs["cascade"], rule="budget", budget=4, **kw).frame
            c = engine.compare(vs["cascade_da"], vs["cascade"], budgets=(4,), **kw).frame
            rows.append(_row("difficulty-aware cascade beats the plain one (CascadeBERT)", task,
                             f"{metric} at 4x, difficulty-aware minus plain cascade", x, "metric", c, metric,
                             "04_early_exit_vs_cascade"))
        else:
            rows.append({"claim": "difficulty-aware cascade beats the plain one (CascadeBERT)", "task": task,
                         "statistic": "not shipped yet: its difficulty-aware members are still to be trained "
                                      "(the shipped caches page lists the training plan)",
                         "verdict": "not answered", "notebook": "04_early_exit_vs_cascade"})
    return rows


def cascade_bert_reliability(*, tasks=TASKS, coverage: float = 0.5, n_boot: int = catalogue.N_BOOT,
                             seed: int = catalogue.SEED) -> list[dict]:
    """CascadeBERT: a shallow internal exit's confident predictions are less reliable than those of a complete
    model of the same depth: accuracy on each model's most confident ``coverage`` share of the examples (matched
    coverage, ``engine.compare_confident``). No threshold is chosen and no cost is involved, so the row has no
    test-selected side and no other quantity."""
    rows = []
    for task in tasks:
        if not (catalogue.available(task, "cascade") and catalogue.available(task, "minilm6_me")):
            continue
        r = engine.compare_confident(_views(task, "cascade"), _views(task, "minilm6_me"), coverage=coverage, stages=("minilm-l2:L2", "L2"),
                                     n_boot=n_boot, seed=seed, names=("complete L2", "internal exit L2")).frame.iloc[0]
        nan = float("nan")
        rows.append({"claim": "a complete small model's confident predictions are more reliable than a shallow "
                              "exit's (CascadeBERT)", "task": task,
                     "statistic": f"accuracy on each model's most confident {coverage:.0%} of examples (max-prob), "
                                  f"complete MiniLM-L2 minus exit L2 of multi-exit MiniLM-L6",
                     "rule": r["rule"], "winner": r["complete L2"], "other": r["internal exit L2"],
                     "difference": r["difference"], "lo": r["lo"], "hi": r["hi"],
                     "p_ahead": r["P(complete L2 > internal exit L2)"], "realised": nan, "realised_lo": nan,
                     "realised_hi": nan, "realised_unit": "", "test_selected": nan, "test_selected_lo": nan,
                     "test_selected_hi": nan, "seeds": r["seeds"], "unit": "accuracy",
                     "verdict": verdict(r["lo"], r["hi"], nan, nan, ""), "notebook": "03_exit_reliability"})
    return rows


def elang(*, tasks=TASKS, n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED) -> list[dict]:
    """E-LANG: energy routes Swift/Super better than softmax confidence (encoder pair and text-to-text pair)."""
    rows = []
    pair = ["minilm-l6:L6", "mpnet:L12"]
    for task in tasks:
        if not catalogue.available(task, "cascade"):
            continue
        tests = [t.select_stages(pair) for t in catalogue.load_seeds(task, "cascade", verbose=False).test]
        e = [engine.staged(t, score="energy", reference=catalogue.REFERENCE) for t in tests]
        m = [engine.staged(t, score="max_prob", reference=catalogue.REFERENCE) for t in tests]
        metric = e[0].metric
        kw = dict(metric=metric, n_boot=n_boot, seed=seed, names=("energy", "max-prob"), same_runs=True)
        x = engine.compare_crossfit(e, m, rule="drop", max_drop=0.0, **kw).frame
        c = engine.compare_speedups(e, m, max_drop=0.0, **kw).frame
        rows.append(_row("energy beats softmax routing (E-LANG, encoders)", task,
                         f"speed-up at Super's {metric}, Swift MiniLM-L6 / Super MPNet-base, energy minus "
                         f"max-prob", x, "speedup", c, "x", "05_energy_routing"))
    if "sst2" in tasks and catalogue.available("sst2", "t2t"):
        e = _views("sst2", "t2t", score="energy", how="mean")
        m = _views("sst2", "t2t", score="max_prob", how="mean")
        kw = dict(metric="exact_match", n_boot=n_boot, seed=seed, names=("energy", "max-prob"), same_runs=True)
        x = engine.compare_crossfit(e, m, rule="drop", max_drop=0.005, **kw).frame
        c = engine.compare_speedups(e, m, max_drop=0.005, **kw).frame
        rows.append(_row("energy beats softmax routing (E-LANG, text-to-text)", "sst2",
                         "speed-up within 0.5 point of Super's exact match, text-to-text Swift/Super, token "
                         "scores averaged, energy minus max-prob", x, "speedup", c, "x", "09_seq2seq_energy_routing"))
    return rows


def cost_eff(*, tasks=TASKS, n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED) -> list[dict]:
    """COST-EFF: a slenderized multi-exit model is more accurate than the full-width one at equal small cost. The
    full-width side is the model each slim copy was pruned from and distilled by, as its manifest entry records it
    (:func:`catalogue.derived_pair`: the first build's ``minilm6_me`` pair, checked by content hash), never per-seed
    runs of another build."""
    rows = []
    for task in tasks:
        for label, name in (("1/2 width", "minilm6_me_w50"), ("1/4 width", "minilm6_me_w25")):
            if not catalogue.available(task, name):
                continue
            slim_s, full_s = catalogue.derived_pair(task, name)  # the slim and its recorded teacher
            slim, full = slim_s.views(), full_s.views()
            kw = dict(reference="b", n_boot=n_boot, seed=seed, names=("slenderized", "full width"))
            x = engine.compare_crossfit(slim, full, rule="budget", budget=4, **kw).frame
            c = engine.compare(slim, full, budgets=(4,), **kw).frame
            rows.append(_row("slenderized multi-exit is Pareto-better (COST-EFF)", task,
                             f"accuracy at 1/4 of the full-width last exit's cost, {label} minus full-width "
                             f"MiniLM-L6 early exit", x, "metric", c, "accuracy", "07_objectives_and_slenderized"))
    return rows


def _num(v, unit: str) -> str:
    return f"{v:+.2f}x" if unit == "x" else f"{100 * v:+.1f} pts"  # metric differences in points (x 100)


@dataclass(frozen=True, repr=False, eq=False)
class SeedClaims:
    """Every claim on every task where the caches it needs are shipped (a row saying so where they are not).

    ``frame``: one row per claim and task (columns ``claim, task, statistic, rule, winner, other, difference, lo,
    hi, p_ahead, realised, realised_lo, realised_hi, realised_unit, test_selected, test_selected_lo,
    test_selected_hi, seeds, unit, verdict, notebook``; differences in the metric's units or in x of speed-up);
    ``n_boot``, ``seed``: the paired bootstrap's resamples and seed (also the cross-fitting halves' seed).
    """

    frame: pd.DataFrame
    n_boot: int
    seed: int

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_dict(self) -> dict:
        return {"n_boot": self.n_boot, "seed": self.seed, "rows": self.frame.to_dict("records")}

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def answered(self) -> pd.DataFrame:
        """The rows with a cross-fitted difference (the claims whose caches are shipped)."""
        return self.frame.dropna(subset=["difference"])

    def in_sample_vs_crossfit(self, *, tol: float = 1e-9) -> tuple[int, int, int]:
        """``(below, equal, answered)``: answered rows whose test-selected difference is below the cross-fitted
        one (by more than ``tol``), equal to it (within ``tol``), and the number of answered rows that choose a
        threshold (a row without a test-selected side, such as a reliability claim, is not counted)."""
        chosen = self.answered.dropna(subset=["test_selected"])  # rows that choose a threshold
        gap = chosen.test_selected - chosen.difference
        return int((gap < -tol).sum()), int((gap.abs() <= tol).sum()), len(gap)

    def markdown(self) -> str:
        """The table as Markdown (metric differences in points, speed-up differences in x)."""
        lines = ["| claim | task | statistic | difference [95% CI]: cross-fitted, or at matched coverage where no "
                 "threshold is chosen | P(first minus second > 0) | "
                 "at the same points, the other quantity [95% CI] | test-selected difference, in-sample [95% CI] | "
                 "seeds | verdict | notebook |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.frame.itertuples():
            if pd.isna(r.difference):
                lines.append(f"| {r.claim} | {r.task} | {r.statistic} | – | – | – | – | – | {r.verdict} | "
                             f"{r.notebook} |")
                continue
            x = f"{_num(r.difference, r.unit)} [{_num(r.lo, r.unit)}, {_num(r.hi, r.unit)}]"
            o = ("– (no cost involved)" if pd.isna(r.realised) else
                 f"{'speed-up' if r.realised_unit == 'x' else 'metric'} {_num(r.realised, r.realised_unit)} "
                 f"[{_num(r.realised_lo, r.realised_unit)}, {_num(r.realised_hi, r.realised_unit)}]")
            f = ("– (no threshold is chosen)" if pd.isna(r.test_selected) else
                 f"{_num(r.test_selected, r.unit)} [{_num(r.test_selected_lo, r.unit)}, "
                 f"{_num(r.test_selected_hi, r.unit)}]")
            lines.append(f"| {r.claim} | {r.task} | {r.statistic} | {x} | {r.p_ahead:.2f} | {o} | {f} | {r.seeds} | "
                         f"{r.verdict} | {r.notebook} |")
        return "\n".join(lines)

    def section(self) -> str:
        """The published section: the table and how it was computed, between the seed-claims markers."""
        start, end = readme.markers(SECTION)
        below, equal, answered = self.in_sample_vs_crossfit()
        return (f"{start}\n{self.markdown()}\n\nComputed by `{COMMAND}` on the shipped test caches ({self.n_boot} "
                f"paired bootstrap resamples, seed {self.seed}; speed-ups against the large model alone: MPNet-base, "
                f"Super, or the full-width model for COST-EFF; costs in FLOPs). Cross-fitted: each policy's threshold "
                f"is chosen by the rule on one half of test (halves seed {self.seed}, the same for both) and applied "
                f"to the other, then swapped, so the verdict rests on operating points a user can choose; beside it, "
                f"the test-selected difference (each side's best threshold chosen on all of test and scored there: "
                f"in-sample). It is no bound on the cross-fitted difference: it is below it in {below} of the "
                f"{answered} answered rows that choose a threshold and equal in {equal}. The reliability claim chooses "
                f"none: it compares accuracy on each model's most confident examples at the same coverage.\n{end}")

    def _repr_html_(self) -> str:
        shown = self.frame[["claim", "task", "difference", "lo", "hi", "test_selected", "seeds", "verdict"]]
        return (f"<b>{html.escape(f'Seed claims ({self.n_boot} paired resamples, seed {self.seed})')}</b>"
                + shown.to_html(index=False, float_format="{:.4g}".format))

    def __repr__(self) -> str:
        below, equal, answered = self.in_sample_vs_crossfit()
        return f"SeedClaims({len(self.frame)} rows, {answered} answered, n_boot={self.n_boot}, seed={self.seed})"


def seed_claims(*, tasks=TASKS, n_boot: int = catalogue.N_BOOT, seed: int = catalogue.SEED) -> SeedClaims:
    """Every seed claim on the shipped caches of ``tasks`` (:func:`toolkit.zoo.catalogue.data_dir`)."""
    kw = dict(tasks=tuple(tasks), n_boot=n_boot, seed=seed)
    rows = right_tool(**kw) + cascade_bert_reliability(**kw) + cascade_bert(**kw) + elang(**kw) + cost_eff(**kw)
    return SeedClaims(pd.DataFrame(rows), n_boot, seed)


def write_readme(claims: SeedClaims, path: Path | None = None) -> int:
    """Write ``claims`` into its results page (:func:`toolkit.zoo.readme.page`) between the seed-claims markers (1
    with a message if they are missing)."""
    return readme.write(SECTION, claims.section(), path)


def is_current(path: Path | None = None) -> bool:
    """Whether the published seed-claims section is what :func:`seed_claims` computes today."""
    return readme.current(SECTION, path) == seed_claims().section()


__all__ = ["SeedClaims", "seed_claims", "write_readme", "is_current", "verdict", "right_tool", "cascade_bert",
           "cascade_bert_reliability",
           "elang", "cost_eff", "TASKS", "SECTION"]
