"""What the explorer shows, per cache kind, computed with the analysis functions (no widgets, no drawing).

A *view* adapts one cache kind to the explorer: the controls it offers (score, temperature ...), and for a split
under one setting of those controls a :class:`Precomputed` (the exact sweep over every distinct threshold and the
per-example confidences), the per-example outcome for a reliability diagram, and the example table. Everything
the explorer draws or prints is a lookup in these.

Adding a cache kind is one class with the :class:`View` methods, registered in :data:`VIEWS`.

The engine adapter: the functions under "engine adapter" below are the only calls into the sweep machinery
(:mod:`toolkit.analysis.engine`); every speed-up is against the engine's named reference (the last member alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .calibration import fit_stage_temperatures
from .metrics import METRICS
from .policies import exit_stage
from .scores import SCORES, softmax, stage_confidence
from .token_scores import AGGREGATIONS, TOKEN_SCORES, sequence_confidence

TEMPERATURE_MODES = ("cal", "none", "global")
TEMPERATURE_LABELS = {"cal": "fitted on cal (per stage)", "none": "none (T = 1)", "global": "global value"}


@dataclass(frozen=True)
class Precomputed:
    """One split under one setting: the exact sweep and the per-example confidences.

    ``curve``: one row per distinct threshold, most conservative first (row 0: ``threshold = inf``, every example
    goes to the last stage), columns ``threshold``, ``metric``, ``accuracy`` (NaN where not defined), ``flops``
    (mean per example), ``speedup`` (``reference_flops / flops``), ``escalated`` (share past the first model).
    ``confidence``: ``[N, E]``, higher = more confident; the last stage's column is ignored.
    """

    curve: pd.DataFrame
    confidence: np.ndarray
    reference_flops: float
    reference: str
    _neg_thresholds: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_neg_thresholds", -self.curve["threshold"].to_numpy()[1:])

    def row(self, threshold: float) -> int:
        """Row of ``curve`` that early exit at ``threshold`` yields: the number of distinct thresholds >= it."""
        return int(np.searchsorted(self._neg_thresholds, -float(threshold), side="right"))

    def exit_stage(self, threshold: float) -> np.ndarray:
        """``[N]`` stage index where each example stops at ``threshold``."""
        return exit_stage(self.confidence, float(threshold))

    def drop_row(self, max_drop: float) -> int:
        """The cheapest row whose metric is within ``max_drop`` (absolute) of row 0's (every example at the last
        stage): the ``drop`` rule of :func:`toolkit.analysis.operating.operating_point`."""
        c = self.curve
        ok = c["metric"].to_numpy() >= c["metric"].iloc[0] - max_drop - 1e-12
        flops = np.where(ok, c["flops"].to_numpy(), np.inf)
        return int(np.argmin(flops))

    def budget_row(self, speedup: float) -> int:
        """The most conservative row whose speed-up reaches ``speedup`` (the fastest row if none does).

        Speed-up never falls as the threshold falls (each breakpoint moves an example to an earlier, no dearer
        stage), so this is a binary search.
        """
        s = self.curve["speedup"].to_numpy()
        return int(min(np.searchsorted(s, float(speedup) - 1e-12, side="left"), len(s) - 1))


@dataclass(frozen=True)
class Point:
    """An operating point on one split: the curve's row at ``threshold`` and where examples exit."""

    split: str
    threshold: float
    row: int
    metric: float
    accuracy: float
    flops: float
    speedup: float
    escalated: float
    exit_share: tuple[float, ...]  # per stage, sums to 1

    @classmethod
    def at(cls, pre: Precomputed, split: str, threshold: float, stage: np.ndarray | None = None) -> Point:
        """The point at ``threshold``; ``stage``: its exit stages when already computed."""
        row = pre.row(threshold)
        r = pre.curve.iloc[row]
        stage = pre.exit_stage(threshold) if stage is None else stage
        share = np.bincount(stage, minlength=pre.confidence.shape[1]) / len(stage)
        return cls(split, float(threshold), row, float(r["metric"]), float(r["accuracy"]), float(r["flops"]),
                   float(r["speedup"]), float(r["escalated"]), tuple(float(x) for x in share))


# ------------------------------------------------------------------------------------------ engine adapter
def _precomputed(view) -> Precomputed:
    """The explorer's table from the engine's exact sweep of one view (see :mod:`toolkit.analysis.engine`)."""
    from . import engine

    frame = engine.sweep(view).frame
    curve = pd.DataFrame({"threshold": frame["threshold"], "metric": frame[view.metric],
                          "accuracy": frame["accuracy"] if "accuracy" in frame else np.nan,
                          "flops": frame["flops"], "speedup": frame["speedup"], "escalated": frame["escalated"]})
    return Precomputed(curve, view.confidence, float(view.reference_cost.mean()), view.reference)


def classification_precomputed(cache, score: str, temperature) -> Precomputed:
    """Exact sweep of early exit / a cascade on a classification cache; speed-up against the last member alone."""
    from . import engine

    return _precomputed(engine.from_classification(cache, score=score, temperature=temperature))


def generation_precomputed(cache, swift: str, super_: str, score: str, how: str, temperature: float,
                           metric: str) -> Precomputed:
    """Exact Swift/Super routing sweep of a generation cache; speed-up against Super alone."""
    from . import engine

    return _precomputed(engine.from_generation(cache, models=[swift, super_], score=score, how=how,
                                               temperature=temperature, metric=metric))


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

    def metric_name(self, settings: dict) -> str:
        raise NotImplementedError

    def precompute(self, split: str, settings: dict) -> Precomputed:
        raise NotImplementedError

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


def _split_name(cache, fallback):
    return (getattr(cache, "meta", None) or {}).get("split") or fallback


class ClassificationView(View):
    """Multi-exit and cascade classification caches (:class:`toolkit.analysis.cache.Cache`).

    Temperatures: fitted per stage on ``cal`` (NLL), none, or one ``global_temperature`` for every stage.
    """

    kind = "classification"
    controls = ("score", "temperature", "global_temperature")

    def __init__(self, cal, test):
        if list(cal.stages) != list(test.stages) or cal.n_classes != test.n_classes:
            raise ValueError(f"cal and test caches differ (stages {cal.stages} vs {test.stages}, classes "
                             f"{cal.n_classes} vs {test.n_classes}); explore two splits of one model set")
        self.caches = {"cal": cal, "test": test}
        self.stage_names = tuple(test.stages)
        metric = test.meta.get("metric", "accuracy")
        self._metric = metric if metric in METRICS else "accuracy"
        self.options = {"score": SCORES, "temperature": TEMPERATURE_MODES, "global_temperature": 1.0}
        self.labels = {"temperature": TEMPERATURE_LABELS}
        self.n_examples = {k: c.n_examples for k, c in self.caches.items()}
        self._fitted = None

    def task(self):
        return self.caches["test"].task

    def metric_name(self, settings):
        return self._metric

    def fitted_temperatures(self) -> np.ndarray:
        if self._fitted is None:
            self._fitted = fit_stage_temperatures(self.caches["cal"])
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

    def precompute(self, split, settings):
        return classification_precomputed(self.caches[split], settings["score"], self.temperatures(settings))

    def reliability(self, split, stage, settings):
        c = self.caches[split]
        p = softmax(c.logits[:, stage], float(self.temperatures(settings)[stage]))
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
                             "label": lab(y), "prediction": lab(at), "confidence": pre.confidence[rows, stage],
                             "right": at == y, "last stage right": pred[:, -1] == y})


class GenerationView(View):
    """Swift/Super generation caches (:class:`toolkit.analysis.generation_cache.GenCache`): E = 2 stages, the
    threshold routes an example to Super when Swift's sequence confidence is below it."""

    kind = "generation"
    controls = ("score", "aggregation", "temperature", "metric")

    def __init__(self, cal, test, *, swift: str | None = None, super_: str | None = None):
        names = list(test.models)
        self.swift, self.super_ = swift or names[0], super_ or names[-1]
        for c in (cal, test):
            for m in (self.swift, self.super_):
                if m not in c.models:
                    raise KeyError(f"model {m!r} is not in the {_split_name(c, 'cal/test')} cache; it holds "
                                   f"{list(c.models)}")
        self.caches = {"cal": cal, "test": test}
        self.stage_names = (self.swift, self.super_)
        temps = tuple(test.temperatures)
        temps = (1.0, *[t for t in temps if t != 1.0]) if 1.0 in temps else temps
        self.options = {"score": TOKEN_SCORES, "aggregation": AGGREGATIONS, "temperature": temps,
                        "metric": tuple(test.metrics)}
        self.n_examples = {k: c.n_examples for k, c in self.caches.items()}

    def task(self):
        return self.caches["test"].meta.get("task")

    def metric_name(self, settings):
        return settings["metric"]

    def precompute(self, split, settings):
        return generation_precomputed(self.caches[split], self.swift, self.super_, settings["score"],
                                      settings["aggregation"], settings["temperature"], settings["metric"])

    def reliability(self, split, stage, settings):
        c = self.caches[split]
        m = self.stage_names[stage]
        conf = sequence_confidence(c, m, "max_prob", settings["aggregation"], settings["temperature"])
        return (np.clip(conf, 0, 1), c.models[m].quality[settings["metric"]].astype(np.float64),
                f"{m}'s max probability ({settings['aggregation']} over tokens)", f"{settings['metric']} in bin")

    def examples(self, split, settings, rows, stage, pre):
        c = self.caches[split]
        a, b = c.models[self.swift], c.models[self.super_]
        q = settings["metric"]
        return pd.DataFrame({"example_id": c.example_ids[rows], "exit": np.asarray(self.stage_names)[stage],
                             f"{self.swift} output": a.text[rows], f"{self.super_} output": b.text[rows],
                             f"{self.swift} confidence": pre.confidence[rows, 0],
                             f"{self.swift} {q}": a.quality[q][rows], f"{self.super_} {q}": b.quality[q][rows]})


def _is_generation(cache) -> bool:
    return hasattr(cache, "models") and hasattr(cache, "temperatures")


VIEWS = [(_is_generation, GenerationView), (lambda c: hasattr(c, "logits"), ClassificationView)]


def view_class(cal, test) -> type[View]:
    """The view class of a (cal, test) pair of caches, by their kind."""
    for accepts, cls in VIEWS:
        if accepts(test):
            if not accepts(cal):
                raise TypeError(f"cal and test are different cache kinds ({type(cal).__name__}, "
                                f"{type(test).__name__})")
            return cls
    raise TypeError(f"no explorer view for {type(test).__name__}; kinds: classification (Cache), generation "
                    f"(GenCache)")
