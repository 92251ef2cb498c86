"""Intervals over prompts for the offline LLM analyses (numpy only).

The generated tokens of one prompt are not independent draws (one continuation, one context), so every interval
here resamples *prompts* with replacement and keeps each prompt's tokens together: a resample is a vector of prompt
counts ``w`` (:func:`prompt_weights`; row 0 is the data itself, all ones) and every statistic is a ratio of
weighted sums, one matrix product for all resamples at once. Thresholds and (layer, draft length) pairs chosen on
cal are held fixed; the intervals are over the test prompts.

- :func:`layer_reliability_draws`: per-layer agreement with the full model's token and ECE;
- :func:`calm_draws`: agreement and FLOPs speed-up of CALM-style exit at given thresholds;
  :func:`calm_operating_points`: thresholds chosen on cal for target agreements, evaluated with those intervals;
- :func:`self_speculative_draws`: speed-up, full-depth passes per token, tokens per block, acceptance of one
  (draft layer, draft length);
- :func:`interval` and :func:`difference` (paired: both statistics on the same resampled prompts) summarise draws;
- :func:`paired_stop_differences`: the paired difference of a metric between two stop vectors on one view (e.g. a
  cascade against its first member alone), resampling the view's examples (its clusters together).

An evaluation set of another task than ``cal`` (QNLI against the AG News + SST-2 cal) is refused unless named in
``transfer=`` (a deliberate transfer; :func:`toolkit.caches.identity.check_transfer`).

>>> d = np.array([0.5, 0.4, 0.6, 0.5, 0.7])  # row 0: the data; rows 1..: resamples
>>> interval(d, ci=0.5)
(0.5, 0.475, 0.625)
>>> difference(d, np.array([0.3, 0.4, 0.3, 0.2, 0.3]), ci=0.5)["p_better"]
0.75
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.analysis import engine
from toolkit.analysis.engine import Staged
from toolkit.analysis.engine.curves import check_bootstrap
from toolkit.analysis.engine.results import _Table
from toolkit.analysis.llm.exits import (
    calm_layer_thresholds,
    full_model_reads,
    layer_confidence,
    self_speculative_by_prompt,
)
from toolkit.analysis.metrics.calibration import bin_index
from toolkit.caches.identity import check_transfer
from toolkit.caches.tokens import LLMTokenCache


def prompt_weights(n_prompts: int, *, n_boot: int, seed: int) -> np.ndarray:
    """``[1 + n_boot, n_prompts]`` prompt counts: row 0 all ones (the data), then ``n_boot`` bootstrap resamples:
    :func:`toolkit.analysis.engine.cluster_weights`, the engine's prompt resamples (the draws of every engine
    interval on a token view, whose ``clusters`` are its prompts)."""
    return engine.cluster_weights(int(n_prompts), n_boot=n_boot, seed=seed)


def _prompt_weights(weights, n_prompts: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != n_prompts:
        raise ValueError(f"weights must be [resamples, prompts] = [R, {n_prompts}] (prompt_weights), got shape "
                         f"{w.shape}")
    return w


def interval(draws, *, ci: float = 0.95) -> tuple[float, float, float]:
    """``(value, lo, hi)`` of a statistic's draws ``[1 + B]``: the data's value (row 0) and the percentile interval
    of the resamples (rows 1..)."""
    d = np.asarray(draws, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"draws must be [1 + B] with B >= 1 (row 0 the data), got shape {d.shape}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    a = (1 - ci) / 2
    lo, hi = np.nanquantile(d[1:], [a, 1 - a])
    return float(d[0]), float(lo), float(hi)


def difference(a, b, *, ci: float = 0.95) -> dict[str, float]:
    """Paired difference ``a - b`` of two statistics drawn on the same resamples (``[1 + B]`` each): its value,
    percentile interval and ``p_better``, the share of resamples where ``a > b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired draws must have one shape, got {a.shape} and {b.shape}")
    value, lo, hi = interval(a - b, ci=ci)
    return {"difference": value, "lo": lo, "hi": hi, "p_better": float(np.mean(a[1:] > b[1:]))}


def layer_reliability_draws(cache: LLMTokenCache, family: str, weights: np.ndarray, *, score: str = "max_prob",
                            temperature: float = 1.0, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per layer 1..L-1 and resample: ``agreement`` with the full model's token and ``ece`` (confidence against
    agreement, :func:`toolkit.analysis.metrics.calibration.confidence_ece`'s equal-width bins), each ``[R, L-1]``.

    Row 0 of ``weights`` (all ones) gives :func:`toolkit.analysis.llm.exits.layer_reliability`'s values exactly.
    """
    if score not in ("max_prob", "margin"):
        raise ValueError(f"ECE needs a probability: score 'max_prob' or 'margin', got {score!r}")
    wt = _prompt_weights(weights, cache.n_examples)[:, cache.example_index]  # [R, S]
    total = wt.sum(1, keepdims=True)
    agree = cache.agreement(family)[:, :-1].astype(np.float64)  # [S, E]
    conf = np.clip(layer_confidence(cache, family, score=score, temperature=temperature)[:, :-1], 0, 1)
    S, E = agree.shape
    idx, _ = bin_index(conf, n_bins=n_bins)  # [S, E]
    gap = np.zeros((S, E * n_bins))  # (agreement - confidence) of each token in its (layer, bin) column
    gap[np.arange(S)[:, None], np.arange(E) * n_bins + idx] = agree - conf
    ece = np.abs(wt @ gap).reshape(len(wt), E, n_bins).sum(-1) / total
    return {"agreement": wt @ agree / total, "ece": ece}


def calm_draws(view: Staged, thresholds, weights: np.ndarray) -> dict[str, np.ndarray]:
    """CALM-style exit on a token view (``engine.staged(token_cache, ...)``) at ``thresholds`` (``[A]`` global, or
    ``[A, E]`` per layer as :func:`toolkit.analysis.llm.exits.calm_layer_thresholds` gives; a 1-D list is always global)
    on each resample of prompts: ``agreement``, ``speedup`` (reference FLOPs / policy FLOPs, sums over the
    resampled tokens) and ``mean_layers``, each ``[R, A]``. Row 0 is ``engine.evaluation``'s."""
    w = np.asarray(weights, dtype=np.float64)
    prompts = view.clusters
    if prompts is None:
        raise ValueError("this view has no prompt of each token (clusters): build it with engine.staged(token_cache)")
    if w.ndim != 2 or prompts.max() >= w.shape[1]:
        raise ValueError(f"weights must be [resamples, prompts] with a column for each of the view's "
                         f"{prompts.max() + 1} prompts (prompt_weights), got shape {w.shape}")
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim <= 1:
        th = np.atleast_1d(th)[:, None]  # A global thresholds
    elif th.ndim != 2 or th.shape[1] != view.n_stages:
        raise ValueError(f"thresholds must be global ([A] or a scalar) or per layer ([A, E] with E = "
                         f"{view.n_stages} stages), got shape {np.shape(thresholds)}")
    wt = w[:, prompts]  # [R, S]
    stage = np.atleast_2d(view.stage_of(th))  # [A, S]
    rows = np.arange(stage.shape[1])[None, :]
    total = wt.sum(1, keepdims=True)
    return {"agreement": wt @ view.stats[rows, stage, 0].T / total,
            "speedup": (wt @ view.reference_cost)[:, None] / (wt @ view.cost[rows, stage].T),
            "mean_layers": wt @ view.layers[stage].T / total}


def self_speculative_draws(cache: LLMTokenCache, family: str, layer: int, draft_length: int,
                           weights: np.ndarray) -> dict[str, np.ndarray]:
    """One (draft layer, draft length) on each resample, each ``[R]``: ``speedup`` (full model's FLOPs / the
    blocks' FLOPs, same tokens), ``full_passes_per_token`` (verification passes per emitted token; greedy decoding
    needs 1), ``tokens_per_block``, ``acceptance`` (accepted / drafted) and ``memory_bound_speedup`` (the
    full model's weight reads / the blocks', same tokens: the latency proxy of
    :func:`toolkit.analysis.llm.exits.self_speculative`). Row 0 is
    :func:`toolkit.analysis.llm.exits.self_speculative`'s row."""
    w = _prompt_weights(weights, cache.n_examples)
    p = self_speculative_by_prompt(cache, family, layer, draft_length)
    s = {k: w @ p[k].to_numpy(dtype=np.float64) for k in ("tokens", "blocks", "drafted", "accepted", "emitted",
                                                          "flops", "reference_flops", "reads")}
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"speedup": s["reference_flops"] / s["flops"], "full_passes_per_token": s["blocks"] / s["tokens"],
                "tokens_per_block": s["emitted"] / s["blocks"], "acceptance": s["accepted"] / s["drafted"],
                "memory_bound_speedup": s["tokens"] * full_model_reads(cache) / s["reads"]}


def _check_transfers(cal, evaluations: Mapping, transfer, what: str) -> None:
    """Refuse an evaluation set whose task or models differ from ``cal``'s unless its name is in ``transfer``; a
    name in ``transfer`` that is not an evaluation set is refused too (a typo would silently check nothing)."""
    transfer = {transfer} if isinstance(transfer, str) else set(transfer)
    unknown = transfer - set(evaluations)
    if unknown:
        raise ValueError(f"{what}: transfer names {sorted(unknown)} are not evaluation sets; sets: "
                         f"{list(evaluations)}")
    for name, (c, _) in evaluations.items():
        check_transfer(cal, c, transfer=name in transfer, what=f"{what} (evaluation set {name!r})")


@dataclass(frozen=True, repr=False, eq=False)
class CalmPoints(_Table):
    """CALM-style operating points of one exit family and set of checked layers, chosen on cal and evaluated with
    intervals over prompts: one row per (rule, target, evaluated on) with ``threshold``, ``agreement``, ``speedup``
    (each with ``lo``/``hi``), ``mean layers`` and ``exited early``; then, on the first evaluation set, the oracle
    and the best global threshold chosen on that set itself (both upper bounds, no intervals). ``draws`` holds each
    row's resampled statistics (``[1 + B]`` arrays: row 0 the data) for paired comparisons (:func:`difference`)."""

    frame: pd.DataFrame
    draws: Mapping
    family: str
    checked_layers: tuple[int, ...]
    title = "CALM operating points (chosen on cal)"

    def point(self, rule: str, target: float | None = None, on: str | None = None) -> pd.Series:
        """The row of ``rule`` at ``target`` evaluated ``on`` (default: the first evaluation set)."""
        f = self.frame
        sel = f[(f.rule == rule) & (f["evaluated on"] == (on or f["evaluated on"].iloc[0]))]
        if target is not None:
            sel = sel[sel["target (cal)"] == target]
        if not len(sel):
            raise KeyError(f"no {rule!r} point at target {target} on {on!r}; rows: "
                           f"{sorted(set(zip(f.rule, f['target (cal)'], f['evaluated on'])))}")
        return sel.iloc[0]


ORACLE = "oracle (upper bound)"
BEST_ON_TEST = "best on test itself (upper bound)"


def calm_operating_points(cal: LLMTokenCache, evaluations: Mapping, family: str, *, checked_layers,
                          targets=(0.9, 0.95, 0.99), per_layer: bool = True, only_at: Mapping | None = None,
                          transfer=(), ci: float = 0.95) -> CalmPoints:
    """CALM-style exit of ``family`` at ``checked_layers``: for each target agreement, the global threshold chosen
    on ``cal`` by ``engine.choose(..., rule="target")`` and (``per_layer``, with more than one checked layer) the
    per-layer thresholds of :func:`toolkit.analysis.llm.exits.calm_layer_thresholds`, each evaluated on every set of
    ``evaluations`` (``{name: (token cache, prompt weights)}``, weights from :func:`prompt_weights`) with
    percentile intervals over prompts (:func:`calm_draws`). ``only_at`` ``{name: targets}`` limits a set to some
    targets (e.g. a transfer set at one target). A set of another task or model than ``cal`` is refused unless its
    name is in ``transfer`` (names of deliberate transfers)."""
    _check_transfers(cal, evaluations, transfer, "calm_operating_points")
    checked = [int(k) for k in checked_layers]
    views = {name: (engine.staged(c, family=family, checked_layers=checked), w) for name, (c, w) in
             evaluations.items()}
    s_cal = engine.staged(cal, family=family, checked_layers=checked)
    rules = [("global", t, np.array([engine.choose(s_cal, rule="target", target=t, metric="agreement").threshold]))
             for t in targets]
    if per_layer and len(checked) > 1:
        rules += [("per layer", t, calm_layer_thresholds(s_cal, [t])) for t in targets]
    rows, draws = [], {}
    base = {"family": family, "checked": ",".join(map(str, checked))}
    for rule, target, th in rules:
        for name, (view, w) in views.items():
            if only_at is not None and name in only_at and target not in only_at[name]:
                continue
            d = calm_draws(view, th, w)
            draws[rule, target, name] = {k: v[:, 0] for k, v in d.items()}
            row = {**base, "rule": rule, "target (cal)": target, "evaluated on": name,
                   "threshold": float(th[0]) if rule == "global" else tuple(th[0, :-1].tolist())}
            for m in ("agreement", "speedup"):
                row[m], row[f"{m} lo"], row[f"{m} hi"] = interval(d[m][:, 0], ci=ci)
            row["mean layers"] = d["mean_layers"][0, 0]
            row["exited early"] = 1 - engine.evaluation(view, th[0]).final_share
            rows.append(row)
    name, (view, _) = next(iter(views.items()))
    o = engine.oracle(view)
    middle = sorted(targets)[len(targets) // 2]  # the best threshold on the set itself, at the middle target
    best = engine.evaluation(view, engine.threshold_on_sweep(engine.sweep(view), rule="target", target=middle,
                                                             metric="agreement"))
    for rule, ev, target in ((ORACLE, o, np.nan), (BEST_ON_TEST, best, middle)):
        rows.append({**base, "rule": rule, "target (cal)": target, "evaluated on": name,
                     "threshold": ev.threshold, "agreement": ev.metrics["agreement"], "speedup": ev.speedup,
                     "mean layers": ev.mean_layers, "exited early": 1 - ev.final_share})
    return CalmPoints(pd.DataFrame(rows), draws, family, tuple(checked))


@dataclass(frozen=True, repr=False, eq=False)
class LayerTable(_Table):
    """Per layer 1..L-1 (index ``layer``), for each exit family: ``<f> agreement`` and ``<f> ece`` with ``lo``/``hi``
    (intervals over prompts), ``<f> confidence`` (mean max-probability) and ``<f> auroc``; and, for the pair
    ``(second, first)`` of ``families``, the paired difference ``<second>-<first> agreement`` / ``ece`` with
    ``agreement diff lo/hi`` and ``ece diff lo/hi``. ``mean_ece``: each family's ECE averaged over layers as
    ``(value, lo, hi)``; ``mean_ece_difference``: that average's paired difference (:func:`difference`)."""

    frame: pd.DataFrame
    families: tuple[str, ...]
    mean_ece: Mapping
    mean_ece_difference: Mapping
    title = "per-layer agreement and ECE (intervals over prompts)"


def layer_reliability_table(cache: LLMTokenCache, families, weights: np.ndarray, *, ci: float = 0.95) -> LayerTable:
    """Agreement with the full model's token and ECE per layer with intervals over prompts
    (:func:`layer_reliability_draws`), mean confidence and AUROC (:func:`toolkit.analysis.llm.exits.layer_reliability`),
    and, for two families ``(a, b)``, the paired difference ``b - a`` per layer and of the mean ECE."""
    from toolkit.analysis.llm.exits import layer_reliability

    families = tuple(families)
    rel = {f: layer_reliability_draws(cache, f, weights) for f in families}
    plain = {f: layer_reliability(cache, f) for f in families}
    frame = pd.DataFrame({"layer": np.arange(1, cache.n_layers)})
    for f in families:
        for m in ("agreement", "ece"):
            frame[[f"{f} {m}", f"{f} {m} lo", f"{f} {m} hi"]] = [interval(rel[f][m][:, j], ci=ci)
                                                                 for j in range(cache.n_layers - 1)]
        frame[f"{f} confidence"] = plain[f].confidence.to_numpy()
        frame[f"{f} auroc"] = plain[f].auroc.to_numpy()
    mean_diff = {}
    if len(families) == 2:
        a, b = families
        for m in ("agreement", "ece"):
            d = [difference(rel[b][m][:, j], rel[a][m][:, j], ci=ci) for j in range(cache.n_layers - 1)]
            frame[f"{b}-{a} {m}"] = [x["difference"] for x in d]
            frame[f"{m} diff lo"], frame[f"{m} diff hi"] = [x["lo"] for x in d], [x["hi"] for x in d]
        mean_diff = difference(rel[b]["ece"].mean(1), rel[a]["ece"].mean(1), ci=ci)
    return LayerTable(frame.set_index("layer"), families, {f: interval(rel[f]["ece"].mean(1), ci=ci) for f in families},
                      mean_diff)


SPEC_STATISTICS = ("memory_bound_speedup", "speedup", "full_passes_per_token", "tokens_per_block", "acceptance")


@dataclass(frozen=True, repr=False, eq=False)
class SpecPoints(_Table):
    """Self-speculative pairs of one exit family with intervals over prompts: the pair chosen on cal
    (:func:`toolkit.analysis.llm.exits.choose_self_speculative`) on every evaluation set (``chosen on cal`` on the first,
    ``chosen on cal, <name>`` on the others), a fixed ``shallow draft`` and the ``best on test itself (upper bound)``
    on the first set. Columns ``family``, ``pair``, ``layer k``, ``draft length d`` and each of
    :data:`SPEC_STATISTICS` with ``lo``/``hi``; ``draws[pair]`` the resampled statistics (row 0 the data)."""

    frame: pd.DataFrame
    draws: Mapping
    family: str
    title = "self-speculative pairs (intervals over prompts)"

    def point(self, pair: str) -> pd.Series:
        sel = self.frame[self.frame.pair == pair]
        if not len(sel):
            raise KeyError(f"no pair {pair!r}; pairs: {self.frame.pair.tolist()}")
        return sel.iloc[0]


def self_speculative_points(cal: LLMTokenCache, evaluations: Mapping, family: str, *, shallow: tuple[int, int],
                            draft_lengths=range(1, 9), transfer=(), ci: float = 0.95) -> SpecPoints:
    """The pair chosen on ``cal`` by the memory-bound speed-up, evaluated on each set of ``evaluations``
    (``{name: (token cache, prompt weights)}``), beside ``shallow`` ``(layer, draft length)`` and the best pair on
    the first set itself, each with percentile intervals over prompts (:func:`self_speculative_draws`). A set of
    another task or model than ``cal`` is refused unless its name is in ``transfer`` (deliberate transfers)."""
    _check_transfers(cal, evaluations, transfer, "self_speculative_points")
    from toolkit.analysis.llm.exits import choose_self_speculative, self_speculative

    choice = choose_self_speculative(cal, family, draft_lengths=draft_lengths)
    (first, (test, w_test)), *others = evaluations.items()
    on_test = self_speculative(test, family, draft_lengths=draft_lengths)
    top = on_test.iloc[int(on_test.memory_bound_speedup.to_numpy().argmax())]
    pairs = [("chosen on cal", choice.layer, choice.draft_length, test, w_test)]
    pairs += [(f"chosen on cal, {name}", choice.layer, choice.draft_length, c, w) for name, (c, w) in others]
    pairs += [("shallow draft", *shallow, test, w_test),
              ("best on test itself (upper bound)", int(top.layer), int(top.draft_length), test, w_test)]
    rows, draws = [], {}
    for label, k, d, c, w in pairs:
        draws[label] = self_speculative_draws(c, family, k, d, w)
        row = {"family": family, "pair": label, "layer k": k, "draft length d": d}
        for m in SPEC_STATISTICS:
            row[m], row[f"{m} lo"], row[f"{m} hi"] = interval(draws[label][m], ci=ci)
        rows.append(row)
    return SpecPoints(pd.DataFrame(rows), draws, family)


@dataclass(frozen=True, repr=False, eq=False)
class PairedDifferences(_Table):
    """Paired differences of one metric between two stop vectors on the same examples: one row per comparison with
    ``comparison``, ``first`` and ``second`` (the metric of each side on the data), ``difference`` (first minus
    second), ``lo``/``hi`` (percentile interval) and ``P(first better)`` (the share of resamples where the first
    side is ahead). ``draws[name]``: ``(first, second)`` ``[1 + B]`` arrays (row 0 the data, then the resamples)."""

    frame: pd.DataFrame
    draws: Mapping
    metric: str
    n: int
    title = "paired differences (intervals over resampled examples)"


def paired_stop_differences(view: Staged, pairs: Mapping, *, metric: str | None = None, n_boot: int,
                            seed: int = 0, ci: float = 0.95) -> PairedDifferences:
    """For each ``{name: (stops_a, stops_b)}`` (a stage index per example ``[N]`` or one stage for all), the paired
    difference of ``metric`` (default the view's headline) between stopping at ``stops_a`` and at ``stops_b``: both
    sides scored on the same ``n_boot`` resamples of the view's examples (its ``clusters`` together; the draws of
    :func:`toolkit.analysis.engine.weight_blocks`), e.g. a cascade against its first member alone."""
    check_bootstrap(n_boot, ci)
    metric = metric or view.metric
    if metric not in view.metric_names:
        raise ValueError(f"metric {metric!r} is not one of the view's metrics {view.metric_names}")
    N, rows_idx = view.n_examples, np.arange(view.n_examples)

    def totals(stops, name):
        st = np.broadcast_to(np.asarray(stops), (N,))
        if not np.issubdtype(st.dtype, np.integer) or st.min() < 0 or st.max() >= view.n_stages:
            raise ValueError(f"{name}: stops must be stage indices in 0..{view.n_stages - 1} (one per example or "
                             f"one for all), got dtype {st.dtype} and range [{st.min()}, {st.max()}]")
        return view.stats[rows_idx, st]  # [N, K]

    sides = {name: (totals(a, name), totals(b, name)) for name, (a, b) in pairs.items()}
    draws = {name: ([view.metric_of(a.sum(0), N, metric)], [view.metric_of(b.sum(0), N, metric)])
             for name, (a, b) in sides.items()}
    for _, w in engine.weight_blocks(N, n_boot=n_boot, seed=seed, clusters=view.clusters):
        n = w.sum(1)
        for name, (a, b) in sides.items():
            draws[name][0].append(view.metric_of(w @ a, n, metric))
            draws[name][1].append(view.metric_of(w @ b, n, metric))
    draws = {name: tuple(np.concatenate([np.atleast_1d(x) for x in d]) for d in ab) for name, ab in draws.items()}
    rows = []
    for name, (a, b) in draws.items():
        c = difference(a, b, ci=ci)
        rows.append({"comparison": name, "first": a[0], "second": b[0], "difference": c["difference"], "lo": c["lo"],
                     "hi": c["hi"], "P(first better)": c["p_better"]})
    return PairedDifferences(pd.DataFrame(rows), draws, metric, N)


@dataclass(frozen=True, repr=False, eq=False)
class FamilyDifferences(_Table):
    """Paired differences ``first - second`` between two exit families' operating points, on the same resampled
    prompts: one row per (point, statistic) with the family columns (``<first> - <second>``, ``lo``, ``hi``,
    ``P(<first> > <second>)``) and, for CALM points, each family's value and checked layers."""

    frame: pd.DataFrame
    families: tuple[str, str]
    title = "paired differences between exit families (intervals over prompts)"


def _family_rows(da, db, fa: str, fb: str, statistics, ci: float, values: bool = True) -> list[dict]:
    rows = []
    for m in statistics:
        c = difference(da[m], db[m], ci=ci)
        rows.append({"statistic": m, **({fa: float(da[m][0]), fb: float(db[m][0])} if values else {}),
                     f"{fa} - {fb}": c["difference"], "lo": c["lo"], "hi": c["hi"], f"P({fa} > {fb})": c["p_better"]})
    return rows


def calm_family_differences(first: Mapping, second: Mapping, *, target: float, on: str,
                            statistics=("agreement", "speedup"), ci: float = 0.95) -> FamilyDifferences:
    """For each design ``{name: CalmPoints}`` in both ``first`` and ``second`` (two families' points from
    :func:`calm_operating_points` with the same weights) and each rule at ``target`` evaluated ``on``: the paired
    difference first minus second of each statistic (agreement, FLOPs speed-up)."""
    fa, fb = (next(iter(x.values())).family for x in (first, second))
    rows = []
    for design, a in first.items():
        b = second[design]
        for (rule, t, name), da in a.draws.items():
            if t == target and name == on:
                base = {"design": design, f"{fa} checks": ",".join(map(str, a.checked_layers)),
                        f"{fb} checks": ",".join(map(str, b.checked_layers)), "rule": rule}
                rows += [{**base, **r} for r in _family_rows(da, b.draws[rule, t, name], fa, fb, statistics, ci)]
    return FamilyDifferences(pd.DataFrame(rows), (fa, fb))


def spec_family_differences(first: SpecPoints, second: SpecPoints, *, pairs=("chosen on cal", "shallow draft"),
                            statistics=("memory_bound_speedup", "speedup", "tokens_per_block"),
                            ci: float = 0.95) -> FamilyDifferences:
    """For each pair label of :func:`self_speculative_points` in ``pairs``: the paired difference first minus
    second (two families' points with the same weights) of each statistic."""
    fa, fb = first.family, second.family
    rows = [{"pair": p, **r} for p in pairs
            for r in _family_rows(first.draws[p], second.draws[p], fa, fb, statistics, ci, values=False)]
    return FamilyDifferences(pd.DataFrame(rows), (fa, fb))


def best_single_layer(cal: LLMTokenCache, family: str, *, target: float, metric: str = "agreement") -> int:
    """The layer whose threshold chosen on ``cal`` (``engine.choose(rule="target")`` at ``target``, one checked
    layer) gives the best cal speed-up: the single-checked-layer CALM design (the first layer on ties)."""
    speedup = [engine.choose(engine.staged(cal, family=family, checked_layers=[k]), rule="target", target=target,
                             metric=metric).cal.speedup for k in range(1, cal.n_layers)]
    return int(np.argmax(speedup)) + 1
