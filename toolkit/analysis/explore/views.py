"""What the explorer shows, per cache kind, computed by the sweep engine (no widgets, no drawing).

A *view* adapts one cache kind to the explorer: the controls it offers (score, temperature ...), and for a split
under one setting of those controls the engine's view of it (:class:`toolkit.analysis.engine.Staged`, built by the
engine's adapter for that cache kind) with its exact sweep (:func:`toolkit.analysis.engine.sweep`), kept together
as a :class:`Precomputed`; plus the per-example outcome for a reliability diagram and the example table. Every
number the explorer prints is a lookup in the engine's sweep; speed-ups are against the engine's named reference;
the rules that place the point (``drop``, ``budget``) are the engine's (:func:`toolkit.analysis.engine.choose`,
applied to the kept sweep by :func:`toolkit.analysis.engine.threshold_on_sweep`).

Adding a cache kind is one class with the :class:`View` methods, named in its
:data:`toolkit.caches.kinds.KINDS` record.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from toolkit._api import check_batch
from toolkit.analysis import engine
from toolkit.analysis.engine.curves import check_bootstrap
from toolkit.analysis.metrics.calibration import fit_stage_temperatures
from toolkit.analysis.operating import check_pair
from toolkit.analysis.scores.classification import SCORES, softmax
from toolkit.analysis.scores.tokens import AGGREGATIONS, TOKEN_SCORES, sequence_confidence

TEMPERATURE_MODES = ("cal", "none", "global")
TEMPERATURE_LABELS = {"cal": "fitted on cal (per stage)", "none": "none (T = 1)", "global": "global value"}


@dataclass(frozen=True, eq=False)
class Precomputed:
    """One split under one setting: the engine's view and its exact sweep (one row per distinct threshold, most
    conservative first: row 0 is ``threshold = inf``, every example at the last stage).

    ``per_example_cost``: whether the view's costs are the curve's per example (FLOPs, the cache's unit, predicted
    ms at batch 1). False where the curve prices a runtime's batches (predicted time above batch 1,
    :func:`toolkit.analysis.cost.latency.time_sweep`): the view then keeps its own costs, and cost and speed-up
    come from the curve only (no resampled interval: a resample forms other batches)."""

    view: engine.Staged
    curve: engine.Curve
    columns: Mapping[str, np.ndarray] = field(init=False, repr=False)
    _neg_thresholds: np.ndarray = field(init=False, repr=False)
    per_example_cost: bool = True

    def __post_init__(self):
        cols = {k: self.curve.frame[k].to_numpy() for k in self.curve.frame}
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "_neg_thresholds", -cols["threshold"][1:])

    @property
    def reference(self) -> str:
        return self.curve.reference

    @property
    def cost_unit(self) -> str:
        return self.curve.meta.get("cost_unit", "FLOPs")

    @property
    def metric(self) -> str:
        """The headline metric (the curve's y axis)."""
        return self.view.metric

    def row(self, threshold: float) -> int:
        """Row of the sweep that early exit at ``threshold`` yields: the number of distinct thresholds >= it."""
        return int(np.searchsorted(self._neg_thresholds, -float(threshold), side="right"))

    def exit_stage(self, threshold: float) -> np.ndarray:
        """``[N]`` stage index where each example stops at ``threshold``."""
        return self.view.stage_of(float(threshold))

    def rule_threshold(self, rule: str, *, metric: str, max_drop: float = 0.01, budget: float | None = None) -> float:
        """The threshold the engine's ``drop`` or ``budget`` rule picks on this (cal) sweep, as
        :func:`toolkit.analysis.engine.choose` would on the same view: a lookup, no new sweep."""
        return engine.threshold_on_sweep(self.curve, rule=rule, metric=metric, max_drop=max_drop, budget=budget)


@dataclass(frozen=True)
class Point:
    """An operating point on one split: the sweep's row at ``threshold`` (every metric by name, mean FLOPs per
    example, speed-up against the view's reference, escalated and final shares) and the share exiting at each
    stage."""

    split: str
    threshold: float
    row: int
    metric: str  # the headline metric's name
    metrics: Mapping[str, float]
    flops: float
    speedup: float
    escalated: float
    final_share: float
    exit_share: tuple[float, ...]  # per stage, sums to 1

    @property
    def value(self) -> float:
        """The headline metric at this point."""
        return self.metrics[self.metric]

    @classmethod
    def at(cls, pre: Precomputed, split: str, threshold: float, stage: np.ndarray | None = None) -> Point:
        """The point at ``threshold``; ``stage``: its exit stages when already computed."""
        row = pre.row(threshold)
        c = pre.columns
        stage = pre.exit_stage(threshold) if stage is None else stage
        share = np.bincount(stage, minlength=pre.view.n_stages) / len(stage)
        return cls(split, float(threshold), row, pre.metric, {m: float(c[m][row]) for m in pre.view.metric_names},
                   float(c["flops"][row]), float(c["speedup"][row]), float(c["escalated"][row]),
                   float(c["final_share"][row]), tuple(float(x) for x in share))


def precompute(view: engine.Staged) -> Precomputed:
    """The engine's exact sweep of one view, kept with it (the only sweep the explorer runs)."""
    return Precomputed(view, engine.sweep(view))


# ------------------------------------------------------------------------------------------ intervals
N_BOOT = 200  # resamples of the explorer's intervals (fewer where a split is large: RESAMPLE_ELEMENTS)
RESAMPLE_ELEMENTS = 2**23  # resample weights held per split: float32, 32 MB
MIN_BOOT = 50  # fewer resamples than this give no interval worth showing: none is shown


def n_boot_for(n: int, n_boot: int = N_BOOT) -> int:
    """Resamples the explorer holds for ``n`` examples: ``n_boot``, fewer where ``n_boot x n`` weights would pass
    :data:`RESAMPLE_ELEMENTS`, 0 (no intervals) below :data:`MIN_BOOT`."""
    b = min(int(n_boot), RESAMPLE_ELEMENTS // max(int(n), 1))
    return b if b >= min(MIN_BOOT, int(n_boot)) and b >= 2 else 0


@dataclass(frozen=True, eq=False)
class Resamples:
    """Bootstrap resamples of one split, drawn once and kept, so the interval of any operating point is a matrix
    product: the engine's draws (:func:`toolkit.analysis.engine.resample_weights`, seeded; a view's clusters, e.g.
    a token's prompt, resampled whole) held as float32 counts, example-major ``[N, B]``. At a threshold they give
    the percentile intervals :func:`toolkit.analysis.engine.evaluation` gives with the same ``n_boot`` and ``seed``
    (every metric, ``flops``, ``speedup``), and along a grid of thresholds
    :func:`toolkit.analysis.engine.bootstrap_bands` (float32 sums: equal to about 1e-6 relative).

    Moving the point updates the resampled totals from the last point's: only the examples whose stage changed
    enter the product (a full product every :data:`REFRESH` updates and whenever most examples changed)."""

    weights: np.ndarray  # [N, B]
    n: np.ndarray  # [B] examples in each resample
    ci: float
    seed: int
    _last: dict = field(default_factory=dict, repr=False)  # slot -> (view, stage, totals [B, K + 2], updates)

    REFRESH = 32

    @classmethod
    def draw(cls, view: engine.Staged, *, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> Resamples:
        check_bootstrap(n_boot, ci)
        w = engine.resample_weights(view.n_examples, n_boot=n_boot, seed=seed, clusters=view.clusters)
        return cls(np.ascontiguousarray(w.T, dtype=np.float32), w.sum(1), float(ci), int(seed))

    @property
    def n_boot(self) -> int:
        return self.weights.shape[1]

    @staticmethod
    def _columns(view: engine.Staged, rows: np.ndarray, stage: np.ndarray) -> np.ndarray:
        """``[len(rows), K + 2]`` float32: each row's stats at its stage, its cost there, the reference cost."""
        return np.concatenate([view.stats[rows, stage].reshape(len(rows), -1), view.cost[rows, stage][:, None],
                               np.asarray(view.reference_cost)[rows][:, None]], axis=1).astype(np.float32)

    def totals(self, view: engine.Staged, stage: np.ndarray, *, slot: str = "point") -> np.ndarray:
        """``[B, K + 2]`` resampled sums when example n stops at ``stage[n]`` (stats, cost, reference cost)."""
        N = view.n_examples
        if self.weights.shape[0] != N:
            raise ValueError(f"these resamples are of {self.weights.shape[0]} examples, the view has {N}")
        stage = np.asarray(stage)
        last = self._last.get(slot)
        if last is not None and last[0] is view and last[3] < self.REFRESH:
            changed = np.flatnonzero(stage != last[1])
            if len(changed) <= N // 2:
                dx = self._columns(view, changed, stage[changed]) - self._columns(view, changed, last[1][changed])
                tot = last[2] + (self.weights[changed].T @ dx).astype(np.float64)
                self._last[slot] = (view, stage.copy(), tot, last[3] + 1)
                return tot
        tot = (self.weights.T @ self._columns(view, np.arange(N), stage)).astype(np.float64)
        self._last[slot] = (view, stage.copy(), tot, 0)
        return tot

    def draws(self, view: engine.Staged, stage: np.ndarray, *, slot: str = "point") -> dict[str, np.ndarray]:
        """``[B]`` resampled values of every metric, ``flops`` and ``speedup`` when example n stops at
        ``stage[n]``."""
        tot = self.totals(view, stage, slot=slot)
        cost = tot[:, -2] / self.n
        return {**view.metrics(tot[:, :-2], self.n), "flops": cost, "speedup": tot[:, -1] / self.n / cost}

    def interval(self, view: engine.Staged, stage: np.ndarray, *, slot: str = "point") -> dict[str, tuple]:
        """Percentile interval ``(lo, hi)`` of every metric, ``flops`` and ``speedup`` at the stops ``stage``."""
        a = (1 - self.ci) / 2
        return {k: tuple(float(q) for q in np.quantile(v, [a, 1 - a]))
                for k, v in self.draws(view, stage, slot=slot).items()}

    def band(self, pre: Precomputed, thresholds) -> pd.DataFrame:
        """The kept sweep's rows at ``thresholds`` (``[T]``, most conservative first) with ``{name}_lo`` and
        ``{name}_hi`` of every metric, ``flops`` and ``speedup``, like :func:`toolkit.analysis.engine.bootstrap_bands`."""
        t = np.asarray(thresholds, dtype=np.float64)
        out = pre.curve.frame.iloc[[pre.row(x) for x in t]].reset_index(drop=True)
        out["threshold"] = t
        view = pre.view
        draws = [self.draws(view, st, slot="band") for st in view.stage_of(t[:, None])]  # neighbours: few changes
        a = (1 - self.ci) / 2
        for k in draws[0] if draws else ():
            out[f"{k}_lo"], out[f"{k}_hi"] = np.quantile(np.stack([d[k] for d in draws]), [a, 1 - a], axis=1)
        return out


def profile_model_names(models, *, name: str = "models") -> list[str] | None:
    """``None`` (the defaults: the profile's models for the cache's, by name) or ``models`` as a list of names;
    an empty list is refused (it fell back on the defaults silently), as is a bare string
    (:func:`~toolkit.analysis.cost.latency.check_profile_models`)."""
    if models is None:
        return None
    from toolkit.analysis.cost.latency import check_profile_models

    return check_profile_models(models, name=name, default="omit it for the defaults (the profile's models for the "
                                "cache's, by name)")


# ------------------------------------------------------------------------------------------ views
class View:
    """The interface every cache kind implements (see :class:`ClassificationView`)."""

    kind: str
    controls: tuple[str, ...]  # the names of the settings (keyword arguments of the explorer)
    stage_names: tuple[str, ...]
    options: dict[str, tuple | float]  # control -> choices (the first is the default), or a number's default
    labels: dict[str, dict] = {}  # control -> {choice: how the widget shows it}, where not str(choice)
    n_examples: dict[str, int]

    def settings(self, **chosen) -> dict:
        """Defaults for every control, overridden by ``chosen`` (validated)."""
        out = {k: v if isinstance(v, float) else v[0] for k, v in self.options.items()}
        for k, v in chosen.items():
            if k not in self.options:
                raise ValueError(f"unknown control {k!r} for a {self.kind} cache; it has {list(self.options)}")
            if isinstance(self.options[k], float):
                if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                    raise ValueError(f"{k} must be a positive finite number, got {v!r}")
                v = float(v)
            elif v not in self.options[k]:
                raise ValueError(f"{k}={v!r} is not one of {list(self.options[k])}")
            out[k] = v
        return out

    def key(self, settings: dict) -> tuple:
        return tuple(settings[k] for k in self.options)

    def staged(self, split: str, settings: dict) -> engine.Staged:
        """The engine's view of ``split`` under ``settings`` (the engine adapter of this cache kind)."""
        raise NotImplementedError

    latency: tuple | None = None  # (profile, its models, batch) once :meth:`use_profile` was called

    def precomputed(self, split: str, settings: dict) -> Precomputed:
        """The view of ``split`` and its exact sweep in the cost unit in use; in predicted time above batch 1 the
        exact sweep of the runtime's batches (:func:`~toolkit.analysis.cost.latency.time_sweep`)."""
        staged = self.staged(split, settings)
        if self.latency is None or self.latency[2] == 1:
            return precompute(self.costed(split, staged))
        from toolkit.analysis.cost.latency import time_sweep

        prof, names, batch = self.latency
        curve = time_sweep(staged, prof, n_tokens=getattr(self.caches[split], "n_tokens", None), models=names,
                           batch_size=batch)
        return Precomputed(staged, curve, per_example_cost=False)

    def profile_models(self, profile) -> list[str]:
        """The profile's models for this view's caches (its ``models=`` default)."""
        from toolkit.analysis.cost.latency import models_for

        return models_for(self.caches["test"].meta, profile)

    def use_profile(self, profile, *, models=None, batch: int = 1) -> None:
        """Cost every view in predicted ms from a latency profile (a :class:`~toolkit.analysis.cost.latency.
        LatencyProfile` or its file, from ``toolkit profile``) instead of FLOPs, as the sweep does with
        ``--profile``: at batch 1 each example alone (:func:`~toolkit.analysis.cost.latency.with_predicted_time`),
        above it the runtime's batches at every threshold (:func:`~toolkit.analysis.cost.latency.time_sweep`).
        ``models``: the profile's model for the cache's model (one per cascade member; default: the cache's model
        names, then their sources)."""
        from toolkit.analysis.cost.latency import LatencyProfile, load_profile

        batch = check_batch(batch)
        models = profile_model_names(models)
        prof = profile if isinstance(profile, LatencyProfile) else load_profile(profile)
        names = models if models is not None else self.profile_models(prof)
        self.latency = (prof, names, 1)
        self.costed("test", self.staged("test", self.settings()))  # refuse a mismatched profile now, not later
        self.latency = (prof, names, int(batch))

    def costed(self, split: str, staged: engine.Staged) -> engine.Staged:
        """``staged`` in the cost unit in use: as built (FLOPs, or the cache's unit), or in predicted ms at batch 1
        (above it the costs are the exact curve's only: :meth:`precomputed`)."""
        if self.latency is None or self.latency[2] != 1:
            return staged
        from toolkit.analysis.cost.latency import with_predicted_time

        prof, names, _ = self.latency
        return with_predicted_time(staged, prof, getattr(self.caches[split], "n_tokens", None), models=names)

    def reliability(self, split: str, stage: int, settings: dict) -> tuple[np.ndarray, np.ndarray, str, str]:
        """Per example at ``stage``: a confidence in [0, 1], the outcome it should match, and the axis labels."""
        raise NotImplementedError

    def examples(self, split: str, settings: dict, rows: np.ndarray, stage: np.ndarray,
                 pre: Precomputed) -> pd.DataFrame:
        """One row per example of ``rows`` stopping at ``stage`` (``[len(rows)]``): its id, what it predicted
        there, the confidence there, and whether it was right."""
        raise NotImplementedError

    def task(self) -> str | None:
        raise NotImplementedError


def _adapter_first(adapter, option: str, choices) -> tuple:
    """``choices`` with the engine adapter's default for ``option`` first (the explorer's starting value)."""
    default = inspect.signature(adapter).parameters[option].default
    return (default, *[c for c in choices if c != default]) if default in choices else tuple(choices)


def _split_name(cache, fallback):
    return (getattr(cache, "meta", None) or {}).get("split") or fallback


class ClassificationView(View):
    """Multi-exit and cascade classification caches (:class:`toolkit.caches.classification.Cache`), through the engine's
    :func:`~toolkit.analysis.engine.from_classification` (headline metric: the cache's task metric).

    Temperatures: fitted per stage on ``cal`` (NLL, as :func:`toolkit.analysis.operating.operating_point` does),
    none, or one ``global_temperature`` for every stage. ``reference``: what speed-ups divide by (the adapter's
    ``"last"``, ``"all"`` or a stage/model name).
    """

    kind = "classification"
    controls = ("score", "temperature", "global_temperature")

    def __init__(self, cal, test, *, reference: str = "last"):
        check_pair(cal, test)
        self.caches = {"cal": cal, "test": test}
        self.reference = reference
        self.stage_names = tuple(test.stages)
        self.options = {"score": _adapter_first(engine.from_classification, "score", SCORES), "temperature": TEMPERATURE_MODES, "global_temperature": 1.0}
        self.labels = {"temperature": TEMPERATURE_LABELS}
        self.n_examples = {k: c.n_examples for k, c in self.caches.items()}
        self._fitted = None

    def task(self):
        return self.caches["test"].task

    def fitted_temperatures(self) -> np.ndarray:
        if self._fitted is None:
            self._fitted = fit_stage_temperatures(self.caches["cal"]).temperatures
        return self._fitted

    def temperatures(self, settings) -> np.ndarray:
        """``[E]`` temperatures of a setting."""
        mode = settings["temperature"]
        E = len(self.stage_names)
        if mode == "cal":
            return self.fitted_temperatures()
        return np.full(E, 1.0 if mode == "none" else settings["global_temperature"])

    def key(self, settings):
        return (settings["score"], settings["temperature"],
                settings["global_temperature"] if settings["temperature"] == "global" else None)

    def staged(self, split, settings):
        return engine.from_classification(self.caches[split], score=settings["score"],
                                          temperature=self.temperatures(settings), reference=self.reference)

    def reliability(self, split, stage, settings):
        c = self.caches[split]
        p = softmax(c.logits[:, stage], temperature=float(self.temperatures(settings)[stage]))
        return (p.max(1), (p.argmax(1) == c.labels).astype(np.float64), "confidence (max probability)",
                "accuracy in bin")

    def examples(self, split, settings, rows, stage, pre):
        c = self.caches[split]
        pred = c.logits[rows].argmax(-1)  # [n, E]
        at = pred[np.arange(len(rows)), stage]
        y = c.labels[rows]
        names = c.meta.get("label_names")
        lab = (lambda k: np.asarray(names, dtype=object)[k]) if names and len(names) == c.n_classes else (lambda k: k)
        return pd.DataFrame({"example_id": c.example_ids[rows], "exit": np.asarray(self.stage_names)[stage],
                             "label": lab(y), "prediction": lab(at), "confidence": pre.view.confidence[rows, stage],
                             "right": at == y, "last stage right": pred[:, -1] == y})


class GenerationView(View):
    """Swift/Super generation caches (:class:`toolkit.caches.generation.GenCache`), through the engine's
    :func:`~toolkit.analysis.engine.from_generation`: E = 2 stages, the threshold routes an example to Super when
    Swift's sequence confidence is below it. ``reference`` as in the adapter (default: Super alone)."""

    kind = "generation"
    controls = ("score", "aggregation", "temperature", "metric")

    def __init__(self, cal, test, *, swift: str | None = None, super_: str | None = None, reference: str = "last"):
        names = list(test.models)
        self.swift, self.super_ = swift or names[0], super_ or names[-1]
        for c in (cal, test):
            for m in (self.swift, self.super_):
                if m not in c.models:
                    raise KeyError(f"model {m!r} is not in the {_split_name(c, 'cal/test')} cache; it holds "
                                   f"{list(c.models)}")
        if _split_name(cal, "cal") == "test" or _split_name(test, "test") == "cal":
            raise ValueError(f"choose on a cal cache and report on a test cache (got cal split "
                             f"{_split_name(cal, None)!r}, test split {_split_name(test, None)!r})")
        self.caches = {"cal": cal, "test": test}
        self.reference = reference
        self.stage_names = (self.swift, self.super_)
        temps = tuple(test.temperatures)
        temps = (1.0, *[t for t in temps if t != 1.0]) if 1.0 in temps else temps
        self.options = {"score": _adapter_first(engine.from_generation, "score", TOKEN_SCORES),
                        "aggregation": _adapter_first(engine.from_generation, "how", AGGREGATIONS), "temperature": temps,
                        "metric": tuple(test.metrics)}
        self.n_examples = {k: c.n_examples for k, c in self.caches.items()}

    def task(self):
        return self.caches["test"].meta.get("task")

    def profile_models(self, profile):
        raise ValueError("predicted time costs classification caches (early exit, cascades) and LLM token caches; "
                         "a generation cache has no latency model: explore it in FLOPs (drop profile=)")

    def staged(self, split, settings):
        return engine.from_generation(self.caches[split], models=[self.swift, self.super_], score=settings["score"],
                                      how=settings["aggregation"], temperature=settings["temperature"],
                                      reference=self.reference, metric=settings["metric"])

    def reliability(self, split, stage, settings):
        c = self.caches[split]
        m = self.stage_names[stage]
        conf = sequence_confidence(c, m, score="max_prob", how=settings["aggregation"], temperature=settings["temperature"])
        return (np.clip(conf, 0, 1), c.models[m].quality[settings["metric"]].astype(np.float64),
                f"{m}'s max probability ({settings['aggregation']} over tokens)", f"{settings['metric']} in bin")

    def examples(self, split, settings, rows, stage, pre):
        c = self.caches[split]
        a, b = c.models[self.swift], c.models[self.super_]
        q = settings["metric"]
        return pd.DataFrame({"example_id": c.example_ids[rows], "exit": np.asarray(self.stage_names)[stage],
                             f"{self.swift} output": a.text[rows], f"{self.super_} output": b.text[rows],
                             f"{self.swift} confidence": pre.view.confidence[rows, 0],
                             f"{self.swift} {q}": a.quality[q][rows], f"{self.super_} {q}": b.quality[q][rows]})


class LLMTokenView(View):
    """Per-token exit inside a causal LM (:class:`toolkit.caches.tokens.LLMTokenCache`), through the engine's
    :func:`~toolkit.analysis.llm.exits.from_llm_tokens`: one "example" per generated token, stages = the checked layers,
    metric = agreement with the full model's token (CALM-style exit, teacher-forced on the full model's output),
    speed-ups against the full model per token. Controls: exit family (logit lens, tuned exits), score and cached
    temperature; the layers whose exits are checked are fixed per explorer (``checked_layers``, default every
    third layer; the last layer always answers)."""

    kind = "llm_tokens"
    controls = ("family", "score", "temperature")

    def __init__(self, cal, test, *, checked_layers=None, decode=None, tokenizer=None):
        if decode is not None and tokenizer is not None:
            raise ValueError("give decode= (token ids -> texts) or tokenizer= (one with batch_decode), not both")
        if tokenizer is not None:
            if not hasattr(tokenizer, "batch_decode"):
                raise TypeError(f"tokenizer= needs a batch_decode method (a transformers tokenizer), got "
                                f"{type(tokenizer).__name__}; or pass decode=")
            decode = token_decoder(tokenizer)
        if decode is not None and not callable(decode):
            raise TypeError(f"decode= must be a callable from token ids to their texts, got {type(decode).__name__}")
        self.decode = decode
        if (cal.family_names != test.family_names or cal.n_layers != test.n_layers
                or tuple(cal.temperatures) != tuple(test.temperatures)):
            raise ValueError(f"cal and test token caches need the same exit families, layers and temperatures (cal: "
                             f"{cal.family_names}, {cal.n_layers} layers, T {tuple(cal.temperatures)}; test: "
                             f"{test.family_names}, {test.n_layers} layers, T {tuple(test.temperatures)})")
        if _split_name(cal, "cal") == "test" or _split_name(test, "test") == "cal":
            raise ValueError(f"choose on a cal cache and report on a test cache (got cal split "
                             f"{_split_name(cal, None)!r}, test split {_split_name(test, None)!r})")
        self.caches = {"cal": cal, "test": test}
        temps = tuple(test.temperatures)
        self.options = {"family": tuple(test.family_names), "score": TOKEN_SCORES,
                        "temperature": (1.0, *[t for t in temps if t != 1.0]) if 1.0 in temps else temps}
        L = test.n_layers
        checked = np.arange(3, L, 3) if checked_layers is None and L > 3 else np.asarray(
            checked_layers if checked_layers is not None else np.arange(1, L), dtype=int)
        if checked.ndim != 1 or len(checked) == 0 or checked.min() < 1 or checked.max() >= L:
            raise ValueError(f"checked_layers must be a list of layers in 1..{L - 1} (the last layer, {L}, always "
                             f"answers), got {checked_layers!r}")
        self.layers = np.unique(np.append(checked, L))
        self.stage_names = tuple(f"L{k}" for k in self.layers)
        self.n_examples = {k: c.n_tokens for k, c in self.caches.items()}

    def task(self):
        return self.caches["test"].meta.get("task")

    def profile_models(self, profile):
        return [str(self.caches["test"].model.get("path"))]

    def staged(self, split, settings):
        from toolkit.analysis.llm.exits import from_llm_tokens

        return from_llm_tokens(self.caches[split], family=settings["family"], score=settings["score"],
                               temperature=settings["temperature"], checked_layers=self.layers[:-1])

    def reliability(self, split, stage, settings):
        from toolkit.analysis.llm.exits import layer_confidence

        c = self.caches[split]
        layer = int(self.layers[stage])
        conf = layer_confidence(c, settings["family"], temperature=settings["temperature"])[:, layer - 1]
        return (conf, c.agreement(settings["family"])[:, layer - 1].astype(np.float64),
                f"layer {layer} exit's max probability", "agreement with the full model in bin")

    def examples(self, split, settings, rows, stage, pre):
        c = self.caches[split]
        layers = self.layers[stage]
        top1, _ = c.family(settings["family"])
        frame = pd.DataFrame({"example_id": np.repeat(c.example_ids, c.lengths)[rows], "step": c.steps[rows],
                              "exit": np.asarray(self.stage_names)[stage], "exit token id": top1[rows, layers - 1],
                              "full model token id": c.tokens[rows], "confidence": pre.view.confidence[rows, stage],
                              "agrees": top1[rows, layers - 1] == c.tokens[rows]})
        if self.decode is not None and len(frame):  # the shown rows only
            ids = np.concatenate([frame["exit token id"].to_numpy(), frame["full model token id"].to_numpy()])
            text = np.asarray(self.decode([int(i) for i in ids]), dtype=object)
            if text.shape != ids.shape:
                raise ValueError(f"decode= returned {text.shape[0] if text.ndim else 'a scalar'} texts for "
                                 f"{len(ids)} token ids: it must return one text per id")
            frame.insert(4, "exit token", text[: len(frame)])
            frame.insert(6, "full model token", text[len(frame):])
        return frame

    def settings(self, **chosen) -> dict:
        out = super().settings(**chosen)
        if out["temperature"] not in self.caches["test"].temperatures:
            raise ValueError(f"temperature {out['temperature']} is not cached; cached: {self.caches['test'].temperatures}")
        return out


def token_decoder(tokenizer):
    """``decode(ids) -> [text]`` of a tokenizer with ``batch_decode`` (a transformers tokenizer): each id as its
    own text (special tokens kept), for :class:`LLMTokenView`'s ``decode=``."""
    return lambda ids: tokenizer.batch_decode([[int(i)] for i in ids], skip_special_tokens=False)


def view_class(cal, test) -> type[View]:
    """The view class of a (cal, test) pair of caches, by their kind (:data:`toolkit.caches.kinds.KINDS`)."""
    from toolkit.caches.kinds import kind_for

    try:
        kt, kc = kind_for(test), kind_for(cal)
    except TypeError as e:
        raise TypeError(f"no explorer view: {e}") from None
    if kt is not kc:
        raise TypeError(f"cal and test are different cache kinds ({type(cal).__name__}, {type(test).__name__})")
    return kt.view()
