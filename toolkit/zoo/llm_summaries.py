"""What notebook 10 reads off the SmolLM2 results, computed once here: the counts, extremes and quoted points behind
each section's printed summary line and its "Reading the numbers above" conclusion.

Each summary is a frozen result (``to_dict()``, ``to_frame()``, an HTML repr); ``repr`` is the summary line the
notebook prints (the numbers its prose quotes) and ``markdown()`` the conclusion, written from the same numbers:

- :func:`reliability_summary`: per-layer agreement and ECE (a :class:`~toolkit.analysis.llm.intervals.LayerTable`):
  layers where the tuned exits agree more, have the lower or higher ECE, over- and underconfident layers;
- :func:`calm_summary`: CALM operating points and the tuned-minus-lens comparisons, quoted at one target;
- :func:`self_speculative_summary`: the (layer, draft length) grid's counts above and below 1x, the best pairs and
  the memory-bound ceiling, beside the pairs chosen on cal;
- :func:`classifier_summary`: the LLM-as-classifier section's peaks, operating points and paired differences;
- :func:`runtime_summary`: the committed runtime results (:mod:`toolkit.zoo.llm_results`): fidelity counts, the
  CALM simulation gap, measured against predicted speed-ups and the peer baseline.

The prose names the two exit families of the shipped caches, ``lens`` and ``tuned``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from ..analysis.engine.results import html_table, jsonable
from ..report import ci

FAMILIES = ("lens", "tuned")


def _plain(v):
    """Python scalars (no numpy types), recursively; tuples stay tuples."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return type(v)(_plain(x) for x in v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    return v


def _r(v, digits: int = 3):
    """``v`` rounded for a summary line (recursively)."""
    if isinstance(v, Mapping):
        return {k: _r(x, digits) for k, x in v.items()}
    if isinstance(v, tuple):
        return tuple(_r(x, digits) for x in v)
    if isinstance(v, list):
        return [_r(x, digits) for x in v]
    return round(v, digits) if isinstance(v, float) else v


def fmt(value: float, lo: float, hi: float, *, digits: int = 3, unit: str = "") -> str:
    """A value with its interval, as the tables print it and the conclusions quote it: ``0.466 [0.419, 0.521]``."""
    return f"{value:.{digits}f}{unit} {ci(lo, hi, digits=digits)}"


def _triple(row: Mapping, col: str) -> tuple[float, float, float]:
    return float(row[col]), float(row[f"{col} lo"]), float(row[f"{col} hi"])


@dataclass(frozen=True, repr=False, eq=False)
class _Summary:
    title = ""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_frame(self) -> pd.DataFrame:
        """One row, nested values as JSON-able lists and dicts."""
        return pd.DataFrame([{k: jsonable(v) for k, v in self.to_dict().items()}])

    def _repr_html_(self) -> str:
        return html_table(self.title, self.to_dict())

    def __repr__(self) -> str:
        return self.text()

    def text(self) -> str:  # pragma: no cover - every summary defines its line
        raise NotImplementedError


# ------------------------------------------------------------------------------------------- 1. reliability
@dataclass(frozen=True, repr=False, eq=False)
class ReliabilitySummary(_Summary):
    """Counts over the layers of a two-family :class:`~toolkit.analysis.llm.intervals.LayerTable` (``second`` minus
    ``first``, paired over prompts): layers where ``second`` agrees more (interval above 0), has the lower ECE
    (interval below 0) or the higher (above 0); per family the layers whose mean max-probability exceeds
    (``overconfident``) or falls below (``underconfident``) its agreement; the mean ECE over layers; and the values
    at ``quoted`` layers (agreement ``(value, lo, hi)`` and mean max-probability per family)."""

    families: tuple[str, str]
    n_prompts: int
    n_tokens: int
    n_layers: int
    agrees_more: tuple[int, ...]
    ece_lower: tuple[int, ...]
    ece_higher: tuple[int, ...]
    overconfident: Mapping
    underconfident: Mapping
    mean_ece: Mapping
    mean_ece_difference: Mapping
    quoted: Mapping
    title = "per-layer reliability, counted over layers (paired intervals over prompts)"

    def text(self) -> str:
        a, b = self.families
        return (f"mean ECE over layers: {_r({f: list(v) for f, v in self.mean_ece.items()})} {b} - {a}: "
                f"{_r(dict(self.mean_ece_difference))}\n"
                f"layers where {b} agrees more (paired interval above 0): {len(self.agrees_more)} of {self.n_layers}; "
                f"{b} ECE lower: {len(self.ece_lower)}, higher: {len(self.ece_higher)} {list(self.ece_higher)}; {a} "
                f"overconfident (mean max-prob > agreement): {self.overconfident[a]}; {b} underconfident: "
                f"{self.underconfident[b]}")

    def markdown(self) -> str:
        """The section's conclusion (families ``lens`` then ``tuned``)."""
        if self.families != FAMILIES:
            raise ValueError(f"the conclusion is written for families {FAMILIES}, got {self.families}")
        mid, last = sorted(self.quoted)
        q = self.quoted

        def at(layer, f):
            return fmt(*q[layer][f"{f} agreement"])

        worse = (f" and the higher at {len(self.ece_higher)} ({', '.join(map(str, self.ece_higher))})"
                 if self.ece_higher else "")
        d = self.mean_ece_difference
        return f"""
**Reading the numbers above.** Agreement with the full model's token (test, {self.n_tokens} tokens of
{self.n_prompts} prompts): at layer {mid} the logit lens {at(mid, 'lens')}, tuned exits
{at(mid, 'tuned')}; at layer {last} the lens {at(last, 'lens')}, tuned
{at(last, 'tuned')}. Tuned exits agree more often than the lens at {len(self.agrees_more)} of {self.n_layers} layers
with the paired interval above 0. Calibration: tuned exits have the lower ECE at {len(self.ece_lower)} layers (paired
interval below 0){worse}; mean ECE over layers {self.mean_ece['lens'][0]:.3f} for the lens and
{self.mean_ece['tuned'][0]:.3f} for tuned exits, a difference of {d['difference']:.3f} {ci(d['lo'], d['hi'])}. The
logit lens of this small model is nearly useless before its last few layers, and it does not know it: its mean
max-probability exceeds its agreement at {self.overconfident['lens']} of {self.n_layers} layers (at layer {mid}:
{q[mid]['lens confidence']:.3f} for {q[mid]['lens agreement'][0]:.3f}), so a confidence rule reading it exits wrong
tokens. Tuned exits are underconfident at {self.underconfident['tuned']} of {self.n_layers} layers (at layer {mid}:
{q[mid]['tuned confidence']:.3f} for {q[mid]['tuned agreement'][0]:.3f}), so a threshold on them errs on the safe
side; at the deepest layers the lens, which approaches the model itself there, is the better calibrated.
"""

    def shown(self, table) -> pd.DataFrame:
        """``table`` (the LayerTable summarised) with intervals as text, as the notebook prints it."""
        f, (a, b) = table.frame, self.families

        def col(value, lo, hi):
            return [fmt(*r) for r in f[[value, lo, hi]].to_numpy()]

        out = {f"{x} agreement": col(f"{x} agreement", f"{x} agreement lo", f"{x} agreement hi")
               for x in self.families}
        out[f"{b} - {a}"] = col(f"{b}-{a} agreement", "agreement diff lo", "agreement diff hi")
        out.update({f"{x} ECE": col(f"{x} ece", f"{x} ece lo", f"{x} ece hi") for x in self.families})
        out[f"{b} - {a} ECE"] = col(f"{b}-{a} ece", "ece diff lo", "ece diff hi")
        out.update({f"{x} mean max-prob": f[f"{x} confidence"] for x in self.families})
        out.update({f"{x} AUROC": f[f"{x} auroc"] for x in self.families})
        return pd.DataFrame(out, index=f.index)


def reliability_summary(table, cache, *, layers=None) -> ReliabilitySummary:
    """Count ``table``'s layers (a two-family :class:`~toolkit.analysis.llm.intervals.LayerTable` computed on
    ``cache``) and quote ``layers`` (default: the middle layer ``L // 2`` and the last exit ``L - 1``)."""
    if len(table.families) != 2:
        raise ValueError(f"reliability_summary compares two families; the table has {table.families}")
    a, b = table.families
    f = table.frame
    layers = layers or (cache.n_layers // 2, cache.n_layers - 1)
    missing = [k for k in layers if k not in f.index]
    if missing:
        raise KeyError(f"layers {missing} are not in the table (layers {f.index.min()}..{f.index.max()})")
    agreement = {x: f[f"{x} agreement"].to_numpy() for x in table.families}
    confidence = {x: f[f"{x} confidence"].to_numpy() for x in table.families}
    quoted = {int(k): {**{f"{x} agreement": _triple(f.loc[k], f"{x} agreement") for x in table.families},
                       **{f"{x} confidence": float(f.loc[k, f"{x} confidence"]) for x in table.families}}
              for k in layers}
    layer = f.index.to_numpy()
    return ReliabilitySummary(
        (a, b), int(cache.n_examples), int(cache.n_tokens), len(f),
        tuple(_plain(layer[f["agreement diff lo"].to_numpy() > 0].tolist())),
        tuple(_plain(layer[f["ece diff hi"].to_numpy() < 0].tolist())),
        tuple(_plain(layer[f["ece diff lo"].to_numpy() > 0].tolist())),
        {x: int((confidence[x] > agreement[x]).sum()) for x in table.families},
        {x: int((confidence[x] < agreement[x]).sum()) for x in table.families},
        _plain({x: tuple(v) for x, v in table.mean_ece.items()}), _plain(dict(table.mean_ece_difference)), quoted)


# --------------------------------------------------------------------------------------------------- 2. CALM
@dataclass(frozen=True, repr=False, eq=False)
class CalmSummary(_Summary):
    """CALM operating points quoted at ``target``: per family, design and rule (``global``, ``per layer``, the
    oracle, the ``transfer`` set) the point's agreement and speed-up with intervals and its share exiting early
    (``points[f"{family} | {design} | {rule}"]``); the oracles' speed-ups; the targets whose global threshold never
    exits; and the tuned-minus-lens comparisons with their verdict."""

    target: float
    points: Mapping
    oracle_speedup: Mapping
    never_exit: Mapping
    comparisons: Mapping
    checked: Mapping
    title = "CALM operating points quoted (thresholds chosen on cal)"

    def text(self) -> str:
        return (f"CALM at target {self.target}: oracle speed-ups {_r(dict(self.oracle_speedup))}; global thresholds "
                f"that never exit (targets): {dict(self.never_exit)}; tuned - lens: "
                + "; ".join(f"{k} {_r(v['difference'])} [{_r(v['lo'])}, {_r(v['hi'])}] ({v['verdict']})"
                            for k, v in self.comparisons.items()))

    def _said(self, key: str) -> str:
        p = self.points[key]
        return (f"{fmt(*p['agreement'])} agreement at {fmt(*p['speedup'], digits=2, unit='x')}, "
                f"{100 * p['exited early']:.1f}% of tokens exiting early")

    def _cmp(self, design: str, stat: str) -> str:
        c = self.comparisons[f"{design} | global | {stat}"]
        digits = 2 if stat == "speedup" else 3
        return f"{c['difference']:+.{digits}f} {ci(c['lo'], c['hi'], digits=digits)} ({c['verdict']})"

    def markdown(self, *, many: str = "every 3rd layer", one: str = "one checked layer",
                 transfer: str = "qnli (transfer)") -> str:
        lines = [f"- **{f}**: checking every third layer, the global threshold chosen on cal gives "
                 f"{self._said(f'{f} | {many} | global')} on test, per-layer thresholds "
                 f"{self._said(f'{f} | {many} | per layer')}; the oracle reaches only "
                 f"{self.oracle_speedup[f'{f} | {many}']:.2f}x. Checking layer {self.checked[f'{f} | {one}']} only "
                 f"(chosen on cal): {self._said(f'{f} | {one} | global')}; oracle "
                 f"{self.oracle_speedup[f'{f} | {one}']:.2f}x." for f in FAMILIES]
        return f"""
**Reading the numbers above** (test, target agreement {self.target} chosen on cal):

""" + "\n".join(lines) + f"""
- Tuned minus lens, paired over prompts: every third layer with a global threshold, speed-up
{self._cmp(many, 'speedup')} and agreement {self._cmp(many, 'agreement')}; one
checked layer, speed-up {self._cmp(one, 'speedup')} and agreement
{self._cmp(one, 'agreement')}.
- Transfer to QNLI (no cal of its own), one checked layer: lens {self._said(f'lens | {one} | {transfer}')}, tuned
{self._said(f'tuned | {one} | {transfer}')}.

Checking many layers cannot pay on this model: each check is an LM head over the full vocabulary, and the oracle
itself stays below 1x. A single checked layer is the only design near or above 1x, and only where the exit at that
layer is confident and right often enough.
"""


def calm_points_frame(points: Mapping) -> pd.DataFrame:
    """The rows of ``{(family, design): CalmPoints}`` in one frame with a ``design`` column."""
    return pd.concat([p.frame.assign(design=design) for (_, design), p in points.items()], ignore_index=True)


def calm_table(points: Mapping) -> pd.DataFrame:
    """``{(family, design): CalmPoints}`` as the notebook prints them: agreement and speed-up with intervals as text
    (the upper bounds, without intervals, as values)."""
    p = calm_points_frame(points)
    out = p[["family", "design", "checked", "rule", "target (cal)", "evaluated on"]].copy()
    ok = p["agreement lo"].notna().to_numpy()
    out["agreement"] = [fmt(*r) if k else f"{r[0]:.3f}" for r, k in
                        zip(p[["agreement", "agreement lo", "agreement hi"]].to_numpy(), ok)]
    out["speed-up"] = [fmt(*r, unit="x") if k else f"{r[0]:.3f}x" for r, k in
                       zip(p[["speedup", "speedup lo", "speedup hi"]].to_numpy(), ok)]
    out["mean layers"], out["exited early"] = p["mean layers"], p["exited early"]
    return out


def calm_summary(points: Mapping, differences, *, target: float, transfer: str = "qnli (transfer)",
                 oracle: str = "oracle (upper bound)") -> CalmSummary:
    """Quote ``points`` (``{(family, design): CalmPoints}``, first evaluation set ``test``) at ``target`` and read the
    verdict of each comparison in ``differences`` (a ``FamilyDifferences`` of ``calm_family_differences``): ahead
    where the paired interval excludes 0."""
    quoted, oracles, never, checked = {}, {}, {}, {}
    for (f, design), p in points.items():
        first = p.frame["evaluated on"].iloc[0]
        checked[f"{f} | {design}"] = ",".join(map(str, p.checked_layers))
        oracles[f"{f} | {design}"] = float(p.point(oracle, on=first).speedup)
        g = p.frame[(p.frame.rule == "global") & (p.frame["evaluated on"] == first)]
        never[f"{f} | {design}"] = [float(t) for t in g.loc[g["exited early"] == 0, "target (cal)"]]
        sets = [("global", first), ("per layer", first), ("global", transfer)]
        for rule, on in sets:
            f_ = p.frame
            sel = f_[(f_.rule == rule) & (f_["evaluated on"] == on) & (f_["target (cal)"] == target)]
            if len(sel):
                r = sel.iloc[0]
                quoted[f"{f} | {design} | {rule if on == first else on}"] = {
                    "agreement": _triple(r, "agreement"), "speedup": _triple(r, "speedup"),
                    "exited early": float(r["exited early"])}
    fa, fb = differences.families
    comparisons = {}
    for _, r in differences.frame.iterrows():
        lo, hi = float(r.lo), float(r.hi)
        verdict = f"{fa} ahead" if lo > 0 else f"{fb} ahead" if hi < 0 else "no difference shown"
        comparisons[f"{r.design} | {r.rule} | {r.statistic}"] = {"difference": float(r[f"{fa} - {fb}"]), "lo": lo,
                                                                  "hi": hi, "verdict": verdict}
    return CalmSummary(float(target), quoted, oracles, never, comparisons, checked)


# ---------------------------------------------------------------------------------------- 3. self-speculative
@dataclass(frozen=True, repr=False, eq=False)
class SpecSummary(_Summary):
    """The (family, layer, draft length) grid of self-speculative decoding on cal and test, counted: cases above 1x
    memory-bound on cal per family, cases below 1x in FLOPs and above 1x memory-bound on test, each family's best
    FLOPs and memory-bound speed-up on test (any pair, an upper bound), the memory-bound ``ceiling`` at
    ``ceiling_at`` (layer, draft length) with every draft accepted; and the quoted pairs of
    :func:`~toolkit.analysis.llm.intervals.self_speculative_points` and their tuned-minus-lens differences."""

    n_cases: int
    cal_above_1x_memory_bound: Mapping
    test_below_1x_flops: int
    test_above_1x_memory_bound: int
    best_flops: Mapping
    best_memory_bound: Mapping
    ceiling: float
    ceiling_at: tuple[int, int]
    pairs: Mapping
    differences: Mapping
    title = "self-speculative decoding: the (layer, draft length) grid counted"

    def text(self) -> str:
        k, d = self.ceiling_at
        return (f"{self.n_cases} (family, layer, draft length) cases per split; pairs chosen on cal by the memory-bound "
                f"speed-up; cases above 1x on cal (memory-bound): "
                + ", ".join(f"{f} {n}" for f, n in self.cal_above_1x_memory_bound.items())
                + f"; on test, below 1x in FLOPs: {self.test_below_1x_flops}, above 1x memory-bound: "
                f"{self.test_above_1x_memory_bound}\nbest memory-bound speed-up on test (any pair): "
                f"{_r(dict(self.best_memory_bound))}; best FLOPs speed-up: {_r(dict(self.best_flops))}; ceiling at "
                f"layer {k}, length {d}, every draft accepted: {self.ceiling:.3f}x")

    def markdown(self, *, transfer: str = "qnli (transfer)") -> str:
        lines = []
        for f in FAMILIES:
            c, q = self.pairs[f"{f} | chosen on cal"], self.pairs[f"{f} | chosen on cal, {transfer}"]
            s, ub = self.pairs[f"{f} | shallow draft"], self.pairs[f"{f} | best on test itself (upper bound)"]
            lines.append(f"- **{f}**: chosen on cal, layer {c['layer']} with draft length {c['draft length']}: "
                         f"on test {fmt(*c['memory_bound_speedup'], unit='x')} memory-bound, "
                         f"{fmt(*c['speedup'], unit='x')} in FLOPs, acceptance "
                         f"{c['acceptance'][0]:.3f}; the best pair on test itself (layer {ub['layer']}, length "
                         f"{ub['draft length']}) gives {ub['memory_bound_speedup'][0]:.3f}x memory-bound. On QNLI: "
                         f"{q['memory_bound_speedup'][0]:.3f}x memory-bound. Shallow draft (layer {s['layer']}, length "
                         f"{s['draft length']}): {s['tokens_per_block'][0]:.3f} tokens per block, "
                         f"{s['memory_bound_speedup'][0]:.3f}x memory-bound.")

        def sc(key):
            v = self.differences[key]
            return f"{v[0]:+.3f} {ci(v[1], v[2])}"

        return f"""
**Reading the numbers above.** {self.test_below_1x_flops} of the {self.n_cases} cases cost more
FLOPs than the full model, as argued above, and {self.test_above_1x_memory_bound} read fewer
weights per token; the output is the full model's in all of them.

""" + "\n".join(lines) + f"""

Tuned minus lens, paired over prompts: at the pairs chosen on cal, memory-bound speed-up
{sc('chosen on cal | memory_bound_speedup')} and FLOPs speed-up {sc('chosen on cal | speedup')}; at the shallow
draft, tokens per block {sc('shallow draft | tokens_per_block')}. The memory-bound proxy is a model of one kind of
hardware; whether the gain materialises is measured in the runtime section.

**What this means.** With these exits self-speculative decoding does not pay on SmolLM2: the best memory-bound
speed-up of any pair is {self.best_memory_bound['lens']:.3f}x for the logit lens and
{self.best_memory_bound['tuned']:.3f}x for tuned exits, at most a few percent and at a FLOPs cost. Even at layer
{self.ceiling_at[0]} with every draft accepted, length {self.ceiling_at[1]} would give {self.ceiling:.3f}x: a block
reads every layer once besides its drafts. What would pay is a shallow exit that agrees with the last layer far more
often, which a checkpoint trained for it (LayerSkip-style layer dropout and early-exit loss) has; these are exits
added after the fact to a model trained without them.
"""


def self_speculative_summary(cal_cases: pd.DataFrame, test_cases: pd.DataFrame, points: Mapping, differences, *,
                             ceiling: float, ceiling_at: tuple[int, int]) -> SpecSummary:
    """Count the grids ``cal_cases`` and ``test_cases`` (``toolkit.analysis.llm.exits.self_speculative`` rows of
    every family) and quote ``points`` (``{family: SpecPoints}``) and ``differences`` (a ``FamilyDifferences`` of
    ``spec_family_differences``); ``ceiling`` is ``memory_bound_ceiling`` at ``ceiling_at``."""
    for name, cases in (("cal_cases", cal_cases), ("test_cases", test_cases)):
        missing = {"family", "speedup", "memory_bound_speedup"} - set(cases.columns)
        if missing:
            raise ValueError(f"{name} lacks columns {sorted(missing)}; pass self_speculative(...) rows")
    fams = list(dict.fromkeys(test_cases.family))
    by = {f: test_cases[test_cases.family == f] for f in fams}
    pairs = {}
    for f, p in points.items():
        for _, r in p.frame.iterrows():
            pairs[f"{f} | {r.pair}"] = {"layer": int(r["layer k"]), "draft length": int(r["draft length d"]),
                                        **{m: _triple(r, m) for m in ("memory_bound_speedup", "speedup",
                                                                      "tokens_per_block", "acceptance")}}
    fa, fb = differences.families
    diffs = {f"{r.pair} | {r.statistic}": (float(r[f"{fa} - {fb}"]), float(r.lo), float(r.hi))
             for _, r in differences.frame.iterrows()}
    return SpecSummary(
        len(test_cases),
        {f: int((cal_cases[cal_cases.family == f].memory_bound_speedup.to_numpy() > 1).sum()) for f in fams},
        int((test_cases.speedup.to_numpy() < 1).sum()), int((test_cases.memory_bound_speedup.to_numpy() > 1).sum()),
        {f: float(by[f].speedup.max()) for f in fams}, {f: float(by[f].memory_bound_speedup.max()) for f in fams},
        float(ceiling), (int(ceiling_at[0]), int(ceiling_at[1])), pairs, diffs)


# ------------------------------------------------------------------------------------------- 4. classifier
def classifier_tables(results: Mapping) -> dict[str, pd.DataFrame]:
    """``{task: LLMClassifier}`` (:func:`toolkit.zoo.llm_classifier.llm_classifier`) as four frames over the tasks:
    ``stages``, ``peaks``, ``operating points`` and ``comparisons``."""
    return {"stages": pd.concat([r.stage_table() for r in results.values()], ignore_index=True),
            "peaks": pd.concat([r.peaks() for r in results.values()], ignore_index=True),
            "operating points": pd.concat([r.operating_points() for r in results.values()], ignore_index=True),
            "comparisons": pd.concat([r.comparisons.frame.assign(task=t) for t, r in results.items()],
                                     ignore_index=True)}


@dataclass(frozen=True, repr=False, eq=False)
class ClassifierSummary(_Summary):
    """Per task (``tasks[task]``) the numbers the classifier section quotes: the zero-shot peaks before the last
    layer (chosen on test: upper bounds), the probe at its best cal layer against MiniLM-L6, the probes' early exit
    and the cascade chosen on cal (accuracy ``(value, lo, hi)``), their paired differences ``(d, lo, hi)``, the
    cascade's best threshold on test itself and the share where either member is right; ``max_escalated`` the
    largest share the cascade chosen on cal escalates over the tasks."""

    max_drop: float
    tasks: Mapping
    max_escalated: float
    title = "SmolLM2 as a classifier: the quoted numbers"

    def text(self) -> str:
        return (str({t: {"cascade: either member right": round(v["either member right"], 3)}
                     for t, v in self.tasks.items()})
                + f"\nlargest share the cascade chosen on cal escalates: {self.max_escalated:.3f}")

    def markdown(self) -> str:
        def dif(d):
            return f"{100 * d[0]:+.1f} points {ci(d[1], d[2], points=True)}"

        lines = []
        for t, v in self.tasks.items():
            where = ("also the best layer on cal" if v["tuned best cal layer"] == v["tuned best layer"] else
                     f"a layer picked on test; cal's best is {v['tuned best cal layer']}")
            lines.append(
                f"- **{t}**: zero-shot through the lens is at most {v['lens best accuracy']:.3f} before the last layer "
                f"(majority class {v['majority class']:.3f}) and {v['lens last accuracy']:.3f} at it "
                f"({v['lens last gflops']:.2f} GFLOPs); through the tuned exits, before the last layer, it peaks at "
                f"{v['tuned best accuracy']:.3f} at {v['tuned best layer']} ({where}, against "
                f"{v['tuned last accuracy']:.3f} at the last layer). The probe at {v['probe layer']} (best on cal) "
                f"reaches {v['probe accuracy']:.3f} on test at {v['probe gflops']:.2f} GFLOPs, against MiniLM-L6's "
                f"{v['minilm accuracy']:.3f} at {v['minilm gflops']:.2f} GFLOPs: {dif(v['probe - minilm'])}. The "
                f"probes' early exit chosen on cal: {fmt(*v['early exit accuracy'])} at {v['early exit speedup']:.2f}x, "
                f"{100 * v['early exit drop']:.1f} points below the last exit where the rule allowed "
                f"{100 * self.max_drop:.0f} on cal. The cascade chosen on cal escalates a share of "
                f"{v['cascade escalated']:.3f} of the examples: {fmt(*v['cascade accuracy'])} at "
                f"{v['cascade gflops']:.2f} GFLOPs, {dif(v['cascade - minilm'])} against MiniLM-L6 alone; even its most "
                f"accurate threshold on test itself reaches only {v['cascade best on test']:.3f} (either member "
                f"right: {v['either member right']:.3f}).")
        return "**Reading the numbers above.**\n\n" + "\n".join(lines) + f"""

A 135M-parameter chat model quantized to 4 bits is a weak classifier here: its probes trail a fine-tuned MiniLM-L6
at many times its FLOPs, so a cascade gains nothing by escalating to it, and the rule chosen on cal (accuracy within
`MAX_DROP` of the cascade's last member, the LLM) escalates at most {self.max_escalated:.3f}
of the examples to it. SST-2's `cal` is carved from its training file, whose examples are much shorter phrases than
the dev sentences of `test` (the [calibration shift page](../docs/results/cal-shift.md) measures it), which is where a
threshold chosen on it can miss its promise.
"""


def classifier_summary(results: Mapping, *, max_drop: float) -> ClassifierSummary:
    """Quote ``{task: LLMClassifier}`` (chosen with ``max_drop``) for the section's conclusion."""
    from .llm_classifier import LLM_SETS

    tasks = {}
    for t, r in results.items():
        peaks, ops, cmps = r.peaks(), r.operating_points(), r.comparisons.frame

        def op(prefix, ops=ops):
            sel = ops[ops.policy.str.startswith(prefix)]
            if not len(sel):
                raise KeyError(f"{t}: no operating point starting {prefix!r}; policies: {ops.policy.tolist()}")
            return sel.iloc[0]

        def dif(prefix, cmps=cmps):
            c = cmps[cmps.comparison.str.startswith(prefix)].iloc[0]
            return float(c.difference), float(c.lo), float(c.hi)

        zs = peaks[peaks.model == LLM_SETS["smollm2_zs_lens"]].iloc[0]
        zt = peaks[peaks.model == LLM_SETS["smollm2_zs_tuned"]].iloc[0]
        pr = r.tables["smollm2_probe"].iloc[r.k]
        e, c = op("SmolLM2 probes"), op("cascade MiniLM-L6")
        m, ub = op("MiniLM-L6 alone"), op("cascade, most accurate")
        tasks[t] = _plain({
            "lens best accuracy": zs["its test accuracy"], "majority class": r.chance,
            "lens last accuracy": zs["last layer accuracy"],
            "lens last gflops": r.tables["smollm2_zs_lens"].gflops.iloc[-1],
            "tuned best accuracy": zt["its test accuracy"], "tuned best layer": zt["best test layer before the last"],
            "tuned best cal layer": zt["best cal layer"], "tuned last accuracy": zt["last layer accuracy"],
            "probe layer": r.layer, "probe accuracy": pr.accuracy, "probe gflops": pr.gflops,
            "minilm accuracy": m.accuracy, "minilm gflops": m.gflops, "probe - minilm": dif("SmolLM2 probe"),
            "early exit accuracy": _triple(e, "accuracy"), "early exit speedup": e.speedup,
            "early exit drop": e["drop vs last stage"], "cascade escalated": c.escalated,
            "cascade accuracy": _triple(c, "accuracy"), "cascade gflops": c.gflops, "cascade - minilm": dif("cascade"),
            "cascade best on test": ub.accuracy, "either member right": r.either})
    return ClassifierSummary(float(max_drop), tasks, max(v["cascade escalated"] for v in tasks.values()))


# ---------------------------------------------------------------------------------------------- 5. runtime
@dataclass(frozen=True, repr=False, eq=False)
class RuntimeSummary(_Summary):
    """The committed runtime results counted (each part ``None`` where its file is absent): ``fidelity`` (decodes,
    outputs and accepted counts equal to the cache, families of the pairs chosen on cal among those checked),
    ``calm_gap`` (at the operating points that exit at all: teacher-forced minus real agreement, the largest gap's
    row, real and estimated FLOPs speed-ups), ``speed`` (measured / predicted range, the fastest run, outputs equal to
    greedy per method as ``(equal, runs)``) and ``peer`` (Hugging Face's self-speculative runs beside this decoder's
    at batch 1 in the same files)."""

    fidelity: Mapping | None
    calm_gap: Mapping | None
    speed: Mapping | None
    peer: Mapping | None
    title = "LLM decoders: the committed runtime results counted"

    def text(self) -> str:
        out = []
        if self.fidelity:
            f = self.fidelity
            out.append(f"decodes: {f['decodes']}; output equal to the cache: {f['tokens equal']}; accepted counts "
                       f"equal: {f['accepted equal']}; pairs chosen on cal here among those checked: "
                       f"{bool(f['families checked'])}")
        if self.calm_gap:
            g = self.calm_gap
            out.append(f"CALM points that exit: {g['points']}; teacher-forced minus real agreement from "
                       f"{g['gap'][0]:.3f} to {g['gap'][1]:.3f}; real FLOPs speed-ups {_r(g['real speedup'])}, "
                       f"estimated {_r(g['offline speedup'])}")
        if self.speed:
            s = self.speed
            out.append(f"runs: {s['runs']}; measured / predicted from {s['ratio'][0]:.3f} to {s['ratio'][1]:.3f}; runs "
                       f"whose output equals greedy decoding (equal, runs): {dict(s['equal to greedy'])}")
        return "\n".join(out)

    def markdown(self, *, families=FAMILIES, fidelity_file: str = "llm_cache_fidelity.json",
                 calm_file: str = "llm_calm_fidelity.json") -> str:
        parts = []
        if self.fidelity:
            f = self.fidelity
            parts.append(
                f"**Fidelity** ({f['file']}): over {f['decodes']} decodes of the shipped test prompts, the real "
                f"self-speculative decoder's output equals the cached greedy output for {f['tokens equal']} and its "
                f"accepted counts equal the offline prediction block for block for {f['accepted equal']}; of the pairs "
                f"chosen on cal above, those of {', '.join(f['families checked']) or 'no family'} are among those "
                f"checked{'' if set(f['families checked']) >= set(families) else OTHERS_ABSENT}.")
        else:
            parts.append(f"**Fidelity**: `{fidelity_file}` is absent, so the exactness of the offline acceptance "
                         f"against the real decoder on these caches is not shown here (the unit tests check it on a "
                         f"tiny model).")
        if self.calm_gap:
            g, w = self.calm_gap, self.calm_gap["largest"]
            parts.append(
                f"**The CALM simulation gap** ({g['file']}): at the {g['points']} operating points that exit at all, the "
                f"real decode agrees with the full model's output position by position {g['gap'][0]:.3f} to "
                f"{g['gap'][1]:.3f} less than the teacher-forced estimate says; the largest gap is {w['family']} "
                f"({w['design']}) on {w['cache']}: estimated {w['offline agreement']:.3f}, real "
                f"{w['real agreement']:.3f}, with {w['identical outputs']:.2f} of outputs identical and quality "
                f"({w['quality']}) {w['real quality']:.3f} against the full model's {w['full model quality']:.3f}. "
                f"Once one exited token differs, the decode continues from its own text, so agreement measured on the "
                f"full model's trajectory overstates what CALM keeps; the real FLOPs speed-ups range from "
                f"{g['real speedup'][0]:.2f}x to {g['real speedup'][1]:.2f}x against estimates of "
                f"{g['offline speedup'][0]:.2f}x to {g['offline speedup'][1]:.2f}x.")
        if self.speed:
            s, b, eq = self.speed, self.speed["fastest"], self.speed["equal to greedy"]
            sp, calm = eq.get("self_speculative", (0, 0)), eq.get("calm", (0, 0))
            parts.append(
                f"**Speed** ({', '.join(s['files'])}): measured over predicted ranges from {s['ratio'][0]:.2f} to "
                f"{s['ratio'][1]:.2f}; the fastest run is {b['method']} at {b['operating point']}, batch {b['batch']}, "
                f"{b['measured']:.2f}x measured for {b['predicted']:.2f}x predicted. Self-speculative outputs equal "
                f"greedy decoding in {sp[0]} of {sp[1]} runs; CALM outputs (which may differ by design) equal it in "
                f"{calm[0]} of {calm[1]}. A ratio above 1 means the method spends less time per FLOP than greedy "
                f"decoding (a self-speculative verifier handles several positions in one pass), below 1 more; "
                f"`bench_llm_runtime.py --profile` shows where the time goes.")
        else:
            parts.append("**Speed**: no runtime benchmark results are committed (`bench_llm_*.json`), so measured "
                         "wall-clock speed-ups are absent here; the FLOPs predictions above stand alone.")
        if self.peer:
            p = self.peer

            def said(runs):
                return ", ".join(f"{op} {m:.2f}x [{lo:.2f}, {hi:.2f}]" for op, m, lo, hi in runs)

            parts.append(
                f"**A peer baseline** ({', '.join(p['files'])}): Hugging Face's own self-speculative path "
                f"(`generate(..., assistant_early_exit=k)`, draft length d, constant schedule, confidence threshold 0; "
                f"batch 1, against its own greedy `generate`) ran at {said(p['hf'])}, output equal to greedy decoding "
                f"in {p['hf equal to greedy'][0]} of {p['hf equal to greedy'][1]} runs; this project's decoder in the "
                f"same run: {said(p['this decoder'])}. The min-to-max ranges overlap: on these loaded cores neither "
                f"is shown faster, and both are slower than greedy decoding, as the corrected estimate says.")
        return "\n\n".join(parts)


OTHERS_ABSENT = " (the others need exits not in this checkout)"


def _equal_to_greedy(rows: pd.DataFrame) -> tuple[int, int]:
    return int((rows["equal to greedy"] == 1).sum()), len(rows)


def runtime_summary(fidelity=None, calm=None, runs=None) -> RuntimeSummary:
    """Count :func:`~toolkit.zoo.llm_results.cache_fidelity`, :func:`~toolkit.zoo.llm_results.calm_fidelity` and
    :func:`~toolkit.zoo.llm_results.runtime_runs` records (``None`` or an empty table: that part is ``None``)."""
    fid = None
    if fidelity is not None:
        t = fidelity.frame
        fid = _plain({"file": _file_name(fidelity.source), "decodes": t.prompts.sum(),
                      "tokens equal": t.tokens_equal.sum(), "accepted equal": t.accepted_equal.sum(),
                      "families checked": tuple(sorted(set(t.loc[t["chosen on cal here"].astype(bool), "family"])))})
    gap = None
    if calm is not None:
        t = calm.frame
        moved = t[t.threshold.to_numpy() < np.inf]
        if len(moved):
            d = (moved["offline agreement"] - moved["real agreement"]).to_numpy()
            w = moved.iloc[int(d.argmax())]
            gap = _plain({"file": _file_name(calm.source), "points": len(moved), "gap": (d.min(), d.max()),
                          "largest": {k: w[k] for k in ("family", "design", "cache", "offline agreement",
                                                        "real agreement", "identical outputs", "quality",
                                                        "real quality", "full model quality")},
                          "real speedup": (moved["real speed-up"].min(), moved["real speed-up"].max()),
                          "offline speedup": (moved["offline speed-up"].min(), moved["offline speed-up"].max())})
    speed = peer = None
    if runs is not None and len(runs.frame):
        b = runs.frame
        ratio = b["measured / predicted"].to_numpy()
        top = b.iloc[int(b.measured.to_numpy().argmax())]
        speed = _plain({"runs": len(b), "ratio": (ratio.min(), ratio.max()), "files": tuple(sorted(set(b.file))),
                        "devices": tuple(sorted(set(map(str, b.device)))),
                        "fastest": {"method": top.method, "operating point": top["operating point"],
                                    "batch": top.batch, "measured": top.measured,
                                    "predicted": top["predicted (FLOPs)"]},
                        "equal to greedy": {m: _equal_to_greedy(g) for m, g in b.groupby("method")}})
        hf = b[b.method == "hf_self_speculative"]
        if len(hf):
            mine = b[(b.method == "self_speculative") & b.file.isin(set(hf.file)) & (b.batch == 1)]

            def said(g):
                return tuple((r["operating point"], r.measured, r["measured min"], r["measured max"])
                             for _, r in g.iterrows())

            peer = _plain({"files": tuple(sorted(set(hf.file))), "hf": said(hf),
                           "hf equal to greedy": _equal_to_greedy(hf), "this decoder": said(mine)})
    return RuntimeSummary(fid, gap, speed, peer)


def _file_name(source: str) -> str:
    """The file name of a records' ``source``."""
    return source.replace("\\", "/").rsplit("/", 1)[-1]
