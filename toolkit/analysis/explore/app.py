"""Explore a cache interactively in Jupyter: move the threshold, watch the operating point, see who exits where.

>>> ex = explore(cal, test)                      # doctest: +SKIP
>>> ex                                           # doctest: +SKIP

Controls: the score and temperature (per stage fitted on ``cal``, none, or one global value; for generation caches
the token score, its aggregation over tokens, a cached temperature and the metric), and the threshold, set by a
slider over ``cal``'s distinct thresholds, typed exactly, or chosen on ``cal`` for a target speed-up by the engine's
``budget`` rule. It starts where :func:`toolkit.analysis.operating.operating_point` would: the engine's ``drop``
rule on ``cal`` (the cheapest threshold whose cal accuracy is within ``max_drop`` of the last stage's), with
temperatures fitted on ``cal``. Shown: the operating point's numbers on ``cal`` and ``test`` (metric, accuracy,
speed-up against the engine's named reference, mean FLOPs, share escalated for cascades and Swift/Super, share
exiting at each stage; on test with percentile bootstrap intervals), the trade-off curves with the point marked
(its intervals as a cross, a band on the test curve), the exit histogram, the reliability diagram of
a chosen stage (all examples, and those that exit there), and the examples that exit at that stage, least
confident first, with their text joined from the data folder on request (never stored: the snapshot and the
default view show ids only).

Every number is the engine's (:mod:`toolkit.analysis.engine`): per setting of score and temperature the engine's
exact sweep of each split is computed once (:mod:`.explore_views`) and kept; a threshold move is then a binary
search in it plus one vectorised pass over the examples for the exit histogram, and the rules (drop, budget) are
applied to the kept cal sweep (``benchmarks/bench_explore.py``).

Without a live kernel (nbconvert HTML, GitHub), a second output holds a static snapshot (numbers, the figure as
an embedded PNG, the example ids) of the state the cell set up; a CSS rule hides it wherever the live widget
renders next to it (JupyterLab, Notebook 7, nbconvert HTML with the widget manager loaded).
"""

from __future__ import annotations

import base64
import html
import io
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import pandas as pd

from toolkit._api import check_batch, keyword_options
from toolkit.analysis.engine import threshold_grid
from toolkit.analysis.explore.views import (
    N_BOOT,
    Point,
    Precomputed,
    Resamples,
    n_boot_for,
    profile_model_names,
    view_class,
)
from toolkit.analysis.metrics.calibration import bin_index
from toolkit.analysis.plots.curves import speedup_label
from toolkit.caches.identity import check_transfer
from toolkit.caches.inputs import cost_label, cost_scale

LIVE_CLASS = "toolkit-explorer-live"
SNAPSHOT_CLASS = "toolkit-explorer-snapshot"
# hide the snapshot output when the live widget rendered in the output just before it
SNAPSHOT_CSS = (f".jp-OutputArea-child:has(.{LIVE_CLASS}) + .jp-OutputArea-child:has(.{SNAPSHOT_CLASS})"
                "{display:none}")
N_BINS = 15
MAX_CURVE_POINTS = 4000
BAND_POINTS = 40  # thresholds of the test curve's bootstrap band (the engine's threshold_grid)
KEEP_SETTINGS = 6


def _widgets():
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("the explorer needs ipywidgets: pip install -e '.[explore]' in the toolkit checkout") from None
    return ipywidgets


def explore(cal, test, **options) -> Explorer:
    """An :class:`Explorer` of a ``cal``/``test`` pair of caches (classification or generation).

    ``options``: starting values of the controls (``score=``, ``temperature=`` ..., see :attr:`Explorer.controls`),
    ``threshold=``, or ``speedup=`` (a target on ``cal``: the engine's ``budget`` rule), else the engine's ``drop``
    rule on ``cal`` with ``max_drop=0.01``; ``rule_metric=`` (what both rules look at: default accuracy where the
    cache has it, else the shown metric), ``stage=``, ``examples_split=``, ``n_examples=``, ``show_text=``,
    ``data_dir=``, and the view's own options (``reference=``; generation: ``swift=``, ``super_=``; LLM token
    caches: ``checked_layers=``, and ``decode=`` (token ids -> texts) or ``tokenizer=`` to show the tokens' text
    beside their ids). A ``cal`` of another task, label set or models than ``test`` is refused unless
    ``transfer=True`` (a deliberate transfer).

    Intervals: ``n_boot=`` resamples of test (default 200; fewer above 2**23 weights; 0: none) drawn once, seed
    ``seed=`` and coverage ``ci=``: the band on the test curve and the interval of the test point's metric,
    accuracy, speed-up and cost, each the engine's percentile bootstrap (:class:`.views.Resamples`).

    Cost in predicted time: ``profile=`` (a latency profile or its file, from ``toolkit profile``), with
    ``profile_models=`` (the profile's models for the cache's, default by name) and ``batch=`` (an integer >= 1,
    default 1; either without ``profile=`` is refused): every view is costed in predicted ms, at batch 1 per example
    (:func:`toolkit.analysis.cost.latency.with_predicted_time`), above it by the exact curve of the runtime's
    batches, precomputed per setting (:func:`toolkit.analysis.cost.latency.time_sweep`; intervals then cover the
    metrics only, as a resample forms other batches); the axis, the numbers and the title name the profile.
    """
    return Explorer(cal, test, **options)


# ------------------------------------------------------------------------------------------ formatting
def format_value(key: str, value: float) -> str:
    """How the explorer prints a number (the browser test compares against this)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if key == "threshold":
        return "inf" if np.isinf(value) else f"{value:.6g}"
    if key == "speedup":
        return f"{value:.3f}x"
    if key == "gflops":
        return f"{value:.4g}"
    if key in ("escalated",) or key.startswith("exit "):
        return f"{100 * value:.1f}%"
    return f"{value:.4f}"


@keyword_options
def reliability_bins(conf, outcome, *, n_bins: int = N_BINS) -> pd.DataFrame:
    """Per equal-width bin (the calibration module's convention): count, mean confidence, mean outcome."""
    idx, edges = bin_index(conf, n_bins=n_bins)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mc = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=outcome, minlength=n_bins) / count
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": count, "confidence": mc, "accuracy": acc})


def _thin(n: int, k: int = MAX_CURVE_POINTS) -> np.ndarray:
    """At most ``k`` evenly spaced row indices of a curve, first and last included (drawing only)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def _profile_options(profile, models, batch) -> int:
    """The batch size of ``profile=`` (default 1); ``batch=`` and ``profile_models=`` without a profile are refused
    (they would be ignored: the view stays in FLOPs)."""
    if profile is None:
        given = [f"batch={batch!r} prices the runtime's batches in predicted time"] if batch is not None else []
        given += [f"profile_models={models!r} names the profile's models"] if models is not None else []
        if given:
            raise ValueError(f"{' and '.join(given)} and needs profile= (a latency profile or its file, from "
                             f"`toolkit profile`); without one the explorer costs in FLOPs")
    profile_model_names(models, name="profile_models")
    return 1 if batch is None else check_batch(batch)


# ------------------------------------------------------------------------------------------ the explorer
class Explorer:
    """A cache explorer: ipywidgets controls over exact precomputed sweeps; see the module docstring.

    Python side: :attr:`controls` (name -> widget; set ``.value`` to drive it), :attr:`points` (``{"cal": Point,
    "test": Point}``), :meth:`numbers` (the displayed table, with the test interval in ``test_lo``/``test_hi``),
    :meth:`interval` and :meth:`band` (the test point's intervals, the test curve's band), :attr:`cost_unit`
    (FLOPs, the cache's unit, or predicted ms of ``profile=``), :meth:`examples` (the displayed examples),
    :attr:`widget` (the ipywidgets box), :meth:`snapshot_html`.
    """

    def __init__(self, cal, test, *, threshold: float | None = None, speedup: float | None = None,
                 max_drop: float = 0.01, rule_metric: str | None = None, stage: int | str = 0,
                 examples_split: str = "test", n_examples: int = 8, show_text: bool = False, data_dir=None,
                 transfer: bool = False, n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0, profile=None,
                 profile_models=None, batch: int | None = None, **options):
        cls = view_class(cal, test)
        check_transfer(cal, test, transfer=transfer, what="explore")
        batch = _profile_options(profile, profile_models, batch)
        controls = {k: options.pop(k) for k in cls.controls if k in options}
        self.view = cls(cal, test, **options)
        self.settings = self.view.settings(**controls)
        if profile is not None:
            self.view.use_profile(profile, models=profile_models, batch=batch)
        self.data_dir = data_dir
        self._pre: OrderedDict = OrderedDict()
        self._bands: OrderedDict = OrderedDict()
        self._intervals: OrderedDict = OrderedDict()
        self._boot = (n_boot_for(self.view.n_examples["test"], n_boot) if n_boot else 0, ci, seed)
        self._resamples = None
        self._reliability: dict = {}
        self._text: dict = {}
        self._syncing = False
        self.message = ""
        self.stage = self._stage_index(stage)
        self._build_widgets(examples_split, n_examples, show_text)
        self._figure = _Figure(self)
        self._load_setting()
        names = self.pre("cal").view.metric_names
        if rule_metric is not None and rule_metric not in names:
            raise ValueError(f"rule_metric={rule_metric!r} is not one of this cache's metrics {list(names)}")
        self._rule_metric = rule_metric
        if threshold is not None:
            tau = float(threshold)
        elif speedup is not None:
            tau = self._budget_threshold(float(speedup))
        else:
            try:
                tau = self.pre("cal").rule_threshold("drop", metric=self.rule_metric, max_drop=max_drop)
                self.message = (f"start: the drop rule on cal, the cheapest threshold whose cal {self.rule_metric} "
                                f"is within {max_drop:g} of the last stage's (engine.choose)")
            except ValueError as e:  # e.g. a cal set too small for the rule: start with every example at the end
                tau = np.inf
                self.message = f"start: threshold inf, as the drop rule refused this cal set: {e}"
        self.set_threshold(tau)

    # -------------------------------------------------------------- state
    def _stage_index(self, stage) -> int:
        names = self.view.stage_names
        e = names.index(stage) if isinstance(stage, str) else int(stage)
        if not 0 <= e < len(names):
            raise ValueError(f"stage {stage!r} is not one of {list(names)}")
        return e

    def pre(self, split: str) -> Precomputed:
        """The precomputed sweep of ``split`` under the current settings (computed once, then kept)."""
        key = (split, self.view.key(self.settings))
        if key not in self._pre:
            self._pre[key] = self.view.precomputed(split, self.settings)
            while len(self._pre) > 2 * KEEP_SETTINGS:
                self._pre.popitem(last=False)
        self._pre.move_to_end(key)
        return self._pre[key]

    @property
    def resamples(self) -> Resamples | None:
        """Test's bootstrap resamples (drawn at the first interval asked for; None with ``n_boot=0``)."""
        n_boot, ci, seed = self._boot
        if self._resamples is None and n_boot:
            self._resamples = Resamples.draw(self.pre("test").view, n_boot=n_boot, ci=ci, seed=seed)
        return self._resamples

    def band(self) -> pd.DataFrame | None:
        """The test curve's bootstrap band under the current settings (:data:`BAND_POINTS` thresholds of the
        engine's grid): computed once per setting, then kept."""
        if self.resamples is None:
            return None
        key = self.view.key(self.settings)
        if key not in self._bands:
            pre = self.pre("test")
            band = self.resamples.band(pre, threshold_grid(pre.view, n=BAND_POINTS))
            if not pre.per_example_cost:  # the view's costs are not the curve's: no cost or speed-up band
                band = band.drop(columns=[f"{k}_{e}" for k in ("flops", "speedup") for e in ("lo", "hi")])
            self._bands[key] = band
            while len(self._bands) > KEEP_SETTINGS:
                self._bands.popitem(last=False)
        return self._bands[key]

    def interval(self) -> dict[str, tuple[float, float]]:
        """The test point's percentile intervals (every metric, ``flops``, ``speedup``); {} without resamples.
        One matrix product per new test row, then kept."""
        if self.resamples is None:
            return {}
        key = (self.view.key(self.settings), self.points["test"].row)
        if key not in self._intervals:
            pre = self.pre("test")
            iv = self.resamples.interval(pre.view, self._stages["test"])
            self._intervals[key] = iv if pre.per_example_cost else {k: v for k, v in iv.items()
                                                                      if k not in ("flops", "speedup")}
            while len(self._intervals) > 64:
                self._intervals.popitem(last=False)
        return self._intervals[key]

    @property
    def cost_unit(self) -> str:
        """What costs count: FLOPs, the cache's own unit, or predicted ms of a latency profile (``profile=``)."""
        return self.pre("test").cost_unit

    @property
    def reference(self) -> str:
        return self.pre("test").reference

    @property
    def metric(self) -> str:
        """The headline metric shown (the curve's y axis)."""
        return self.pre("test").metric

    @property
    def rule_metric(self) -> str:
        """What the drop and budget rules look at: as given, else accuracy where the cache has it (the engine's
        default), else the metric shown."""
        pre = self.pre("cal")
        return self._rule_metric or ("accuracy" if "accuracy" in pre.view.metric_names else pre.metric)

    def _budget_threshold(self, speedup: float) -> float:
        """The engine's budget rule on cal: the best cal ``rule_metric`` among thresholds reaching ``speedup``."""
        pre = self.pre("cal")
        speed = pre.columns["speedup"]
        top = float(speed.max())
        if speedup > top + 1e-12:
            self.message = f"target {speedup:.2f}x is out of reach on cal (at most {top:.2f}x): the fastest threshold"
            return float(pre.columns["threshold"][np.argmax(speed)])
        self.message = (f"the budget rule on cal: the best cal {self.rule_metric} among thresholds reaching "
                        f"{speedup:.2f}x (engine.choose)")
        return pre.rule_threshold("budget", metric=self.rule_metric, budget=speedup)

    def set_threshold(self, threshold: float) -> None:
        """Move the operating point to ``threshold`` (confidence units of the current score) and redraw."""
        self.threshold = float(threshold)
        self._stages = {s: self.pre(s).exit_stage(self.threshold) for s in ("cal", "test")}
        self.points = {s: Point.at(self.pre(s), s, self.threshold, self._stages[s]) for s in ("cal", "test")}
        self._sync_threshold_controls()
        self._refresh()

    def numbers(self) -> pd.DataFrame:
        """The operating point's numbers as displayed: one row per quantity, columns ``cal`` and ``test``."""
        metric, p = self.metric, self.points
        rows = [("threshold", "threshold", lambda q: q.threshold), (metric, "metric", lambda q: q.value)]
        if metric != "accuracy" and "accuracy" in p["test"].metrics:
            rows.append(("accuracy", "accuracy", lambda q: q.metrics["accuracy"]))
        unit = self.cost_unit  # FLOPs (shown as GFLOPs), the cache's own unit, or predicted ms
        scale = cost_scale(unit)[0]
        rows += [(f"speed-up vs {self.reference}", "speedup", lambda q: q.speedup),
                 (f"mean {cost_label(unit)}", "gflops", lambda q: q.flops / scale)]
        if len(set(self.pre("test").view.model_index.tolist())) > 1:  # a cascade or Swift/Super: past model 0
            rows.append(("escalated", "escalated", lambda q: q.escalated))
        out = [(label, key, *(get(p[s]) for s in ("cal", "test"))) for label, key, get in rows]
        out += [(f"exit at {name}", f"exit {name}", *(self.points[s].exit_share[e] for s in ("cal", "test")))
                for e, name in enumerate(self.view.stage_names)]
        frame = pd.DataFrame(out, columns=["quantity", "key", "cal", "test"]).set_index("quantity")
        iv = self.interval()
        named = {"metric": metric, "accuracy": "accuracy", "speedup": "speedup", "gflops": "flops"}
        div = {"gflops": scale}
        frame["test_lo"], frame["test_hi"] = ([iv[named[k]][j] / div.get(k, 1.0) if named.get(k) in iv else np.nan
                                               for k in frame["key"]] for j in (0, 1))
        return frame

    def examples(self, split: str | None = None) -> pd.DataFrame:
        """The examples that exit at the chosen stage on ``split``, least (or most) confident first; with text
        joined from the data folder when ``show_text`` is ticked and the data is there."""
        split = split or self.controls["examples split"].value
        pre = self.pre(split)
        stage = self._stages[split]
        rows = np.flatnonzero(stage == self.stage)
        conf = pre.view.confidence[rows, self.stage]
        n = min(int(self.controls["examples"].value), len(rows))
        most = self.controls["order"].value == "most confident first"
        key = -conf if most else conf
        pick = np.argpartition(key, n - 1)[:n] if 0 < n < len(rows) else np.arange(len(rows))
        pick = pick[np.argsort(key[pick], kind="stable")]
        rows = rows[pick]
        frame = self.view.examples(split, self.settings, rows, stage[rows], pre)
        if self.controls["show text"].value and len(frame):
            text, why = self._joined_text(split)
            frame["text"] = text.reindex(frame["example_id"]).to_numpy() if text is not None else why
        return frame.reset_index(drop=True)

    def _joined_text(self, split):
        if split not in self._text:
            from toolkit.data.tasks import DataError, join_text

            task = self.view.task()
            ids = self.view.caches[split].example_ids
            frame, why = None, "the cache names no task, so its text cannot be joined"
            if task:
                try:
                    frame = join_text(ids, task, self.data_dir)
                    why = "no data folder found (pass data_dir= or set TOOLKIT_DATA_DIR)" if frame is None else ""
                except (ValueError, DataError, OSError) as e:
                    why = f"text not available: {e}"
            text = None
            if frame is not None:
                b = frame["text_b"].fillna("") if "text_b" in frame else ""
                text = (frame["text_a"].fillna("") + np.where(b != "", " ||| " + b, "")).rename("text")
            self._text[split] = (text, why or "")
        return self._text[split]

    def reliability(self, stage: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, str]]:
        """Reliability bins of a stage on ``test``: all examples, and only those that exit there now."""
        e = self.stage if stage is None else self._stage_index(stage)
        key = (e, self.view.key(self.settings))
        if key not in self._reliability:
            conf, outcome, xlabel, ylabel = self.view.reliability("test", e, self.settings)
            self._reliability = {key: (conf, outcome, (xlabel, ylabel), reliability_bins(conf, outcome))}
        conf, outcome, labels, everyone = self._reliability[key]
        here = self._stages["test"] == e
        return everyone, reliability_bins(conf[here], outcome[here]), labels

    # -------------------------------------------------------------- widgets
    def _build_widgets(self, examples_split, n_examples, show_text):
        w = _widgets()
        c = {}
        for name, choices in self.view.options.items():
            if isinstance(choices, float):  # a number (e.g. the global temperature)
                c[name] = w.BoundedFloatText(value=self.settings[name], min=0.01, max=100.0, step=0.05,
                                             description=name.replace("_", " "),
                                             style={"description_width": "initial"}, layout=w.Layout(width="200px"))
                c[name].observe(self._on_setting, "value")
                continue
            shown = self.view.labels.get(name, {})
            c[name] = w.Dropdown(options=[(shown.get(v, str(v)), v) for v in choices], value=self.settings[name],
                                 description=name,
                                 style={"description_width": "initial"}, layout=w.Layout(width="auto"))
            c[name].observe(self._on_setting, "value")
        c["position"] = w.IntSlider(value=0, min=0, max=1, description="threshold", readout=False,
                                    continuous_update=False, layout=w.Layout(width="420px"))
        c["position"].observe(self._on_position, "value")
        c["threshold"] = w.Text(value="", description="exact", continuous_update=False,
                                layout=w.Layout(width="200px"))
        c["threshold"].observe(self._on_threshold_text, "value")
        c["speedup"] = w.FloatSlider(value=1.0, min=1.0, max=2.0, step=0.01, description="speed-up",
                                     continuous_update=False, readout_format=".2f", layout=w.Layout(width="360px"))
        c["speedup"].observe(self._on_speedup, "value")
        c["stage"] = w.Dropdown(options=list(self.view.stage_names), index=self.stage, description="stage",
                                layout=w.Layout(width="auto"))
        c["stage"].observe(self._on_stage, "value")
        c["examples split"] = w.ToggleButtons(options=["test", "cal"], value=examples_split,
                                              style={"button_width": "60px"})
        c["order"] = w.Dropdown(options=["least confident first", "most confident first"],
                                layout=w.Layout(width="190px"))
        c["examples"] = w.BoundedIntText(value=n_examples, min=1, max=200, description="rows",
                                         layout=w.Layout(width="140px"))
        c["show text"] = w.Checkbox(value=bool(show_text), description="show text (from the data folder)",
                                    indent=False)
        for k in ("examples split", "order", "examples", "show text"):
            c[k].observe(self._on_examples, "value")
        for k, widget in c.items():  # stable hooks for browser tests and styling
            widget.add_class("toolkit-explorer-" + k.replace(" ", "-"))
        self.controls = c
        self._title = w.HTML()
        self._numbers_html = w.HTML()
        self._message_html = w.HTML()
        self._image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self._examples_html = w.HTML()
        self._numbers_html.add_class("toolkit-explorer-numbers")
        self._examples_html.add_class("toolkit-explorer-examples-panel")
        settings_row = [c[k] for k in self.view.options]
        self.widget = w.VBox([
            self._title, w.HBox(settings_row), w.HBox([c["position"], c["threshold"]]), c["speedup"],
            self._message_html, self._numbers_html, self._image,
            w.HBox([c["stage"], c["examples split"], c["order"], c["examples"], c["show text"]]),
            self._examples_html])
        self.widget.add_class(LIVE_CLASS)

    @contextmanager
    def _sync(self):
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _load_setting(self):
        """After a change of score or temperature: precompute (or fetch) both splits, reset the slider ranges."""
        pre = self.pre("cal")
        self.pre("test")
        top = float(pre.columns["speedup"].max())
        low = float(pre.columns["speedup"].min())
        with self._sync():
            self.controls["position"].max = len(pre.curve) - 1
            s = self.controls["speedup"]
            s.max = max(np.ceil(top * 100) / 100, 1.01)
            # targets from 1x up; lower where every policy costs more than the reference (an LLM's exit heads)
            s.min = min(1.0, np.floor(low * 100) / 100)
        self._figure.draw_curves()

    def _sync_threshold_controls(self):
        with self._sync():
            self.controls["position"].value = self.points["cal"].row
            self.controls["threshold"].value = format_value("threshold", self.threshold)
            s = self.controls["speedup"]
            s.value = float(np.clip(self.points["cal"].speedup, s.min, s.max))

    def _on_setting(self, change):
        if self._syncing:
            return
        before = self.view.key(self.settings)
        self.settings = {**self.settings, **{k: self.controls[k].value for k in self.view.options}}
        if self.view.key(self.settings) == before:  # e.g. the global temperature while it is not in use
            return
        target = self.controls["speedup"].value
        self._load_setting()
        self.set_threshold(self._budget_threshold(target))

    def _on_position(self, change):
        if self._syncing:
            return
        self.message = ""
        self.set_threshold(float(self.pre("cal").columns["threshold"][int(change["new"])]))

    def _on_threshold_text(self, change):
        if self._syncing:
            return
        try:
            tau = float(change["new"])
            if np.isnan(tau):
                raise ValueError
        except ValueError:
            self.message = f"not a number: {change['new']!r} (type e.g. 0.9 or inf)"
            self.set_threshold(self.threshold)
            return
        self.message = ""
        self.set_threshold(tau)

    def _on_speedup(self, change):
        if self._syncing:
            return
        self.set_threshold(self._budget_threshold(float(change["new"])))

    def _on_stage(self, change):
        if self._syncing:
            return
        self.stage = self._stage_index(change["new"])
        self._refresh()

    def _on_examples(self, change):
        if not self._syncing:
            self._examples_html.value = self._examples_table_html()

    # -------------------------------------------------------------- output
    def title(self) -> str:
        t = self.view.caches["test"]
        meta = getattr(t, "meta", {}) or {}
        n = self.view.n_examples
        unit = self.cost_unit
        return (f"{meta.get('task') or 'cache'} · {self.view.kind} · stages {', '.join(self.view.stage_names)} · "
                f"cal N={n['cal']:,}, test N={n['test']:,} · speed-up vs {self.reference} · cost: {unit}")

    def interval_heading(self) -> str:
        """What the interval column holds (its resamples and coverage), or why there is none."""
        n_boot, ci, seed = self._boot
        if not n_boot:
            return "no intervals (n_boot=0, or too many examples to hold their resamples)"
        return f"test {100 * ci:g}% interval (bootstrap, {n_boot} resamples, seed {seed})"

    def _numbers_table_html(self) -> str:
        df = self.numbers()
        rows = []
        for label, r in df.iterrows():
            cells = "".join(f'<td data-split="{s}" data-key="{html.escape(r["key"])}" data-value="{float(r[s])!r}" '
                            f'style="text-align:right;padding:1px 10px">{format_value(r["key"], r[s])}</td>'
                            for s in ("cal", "test"))
            iv = "" if np.isnan(r["test_lo"]) else (f"[{format_value(r['key'], r['test_lo'])}, "
                                                     f"{format_value(r['key'], r['test_hi'])}]")
            cells += (f'<td data-interval="test" data-key="{html.escape(r["key"])}" '
                      f'style="text-align:left;padding:1px 10px">{iv}</td>')
            rows.append(f'<tr><th style="text-align:left;padding:1px 10px">{html.escape(label)}</th>{cells}</tr>')
        head = ('<tr><th></th><th style="text-align:right;padding:1px 10px">cal</th>'
                '<th style="text-align:right;padding:1px 10px">test</th>'
                f'<th style="text-align:left;padding:1px 10px">{html.escape(self.interval_heading())}</th></tr>')
        return f'<table class="toolkit-explorer-table">{head}{"".join(rows)}</table>'

    def _examples_table_html(self) -> str:
        split = self.controls["examples split"].value
        frame = self.examples(split)
        stage = self.view.stage_names[self.stage]
        n_here = int((self._stages[split] == self.stage).sum())
        head = (f"<b>{n_here:,} of {self.view.n_examples[split]:,} {split} examples exit at {html.escape(stage)}"
                f"</b>; {len(frame)} shown, {html.escape(self.controls['order'].value)}")
        if not len(frame):
            return head
        body = frame.to_html(index=False, float_format=lambda v: f"{v:.4f}", classes="toolkit-explorer-examples",
                             border=0)
        return f"{head}{body}"

    def _refresh(self):
        # the numbers go last: the front end applies updates in order, so once it shows the new numbers, the
        # figure and the examples it shows are already those of the same point
        self._title.value = f"<b>{html.escape(self.title())}</b>"
        self._message_html.value = f"<i>{html.escape(self.message)}</i>" if self.message else ""
        self._figure.draw_point()
        self._image.value = self._figure.png()
        self._examples_html.value = self._examples_table_html()
        self._numbers_html.value = self._numbers_table_html()

    def figure_png(self) -> bytes:
        """The figure as displayed, PNG bytes."""
        return self._image.value

    def snapshot_html(self) -> str:
        """A static rendering of the current state: numbers, the figure (embedded PNG), the example ids (never
        their text); for viewers without a live kernel."""
        png = base64.b64encode(self.figure_png()).decode()
        examples = self._examples_table_html() if not self.controls["show text"].value else ""
        return (f'<div class="{SNAPSHOT_CLASS}"><style>{SNAPSHOT_CSS}</style>'
                f"<p><b>{html.escape(self.title())}</b><br><i>static snapshot of the explorer as this cell set it "
                f"up; run the notebook with a live kernel to move the threshold</i></p>"
                f"<div>{self._numbers_table_html()}</div><div><img alt='explorer figure' style='max-width:100%' "
                f"src='data:image/png;base64,{png}'/></div><div>{examples}</div></div>")

    def __repr__(self) -> str:
        p = self.points["test"]
        return (f"Explorer({self.view.kind}, threshold={format_value('threshold', self.threshold)}, test "
                f"{self.metric}={p.value:.4f}, speed-up={p.speedup:.3f}x vs "
                f"{self.reference})")

    def _ipython_display_(self):
        from IPython.display import display

        live = self.widget._repr_mimebundle_()
        live["text/plain"] = "toolkit explorer (interactive with a live kernel; a static snapshot follows)"
        display(live, raw=True)
        display({"text/html": self.snapshot_html(), "text/plain": repr(self)}, raw=True)


# ------------------------------------------------------------------------------------------ drawing
class _Figure:
    """Three panels: trade-off curves with the point, the exit histogram, the chosen stage's reliability diagram.

    Blitting (matplotlib's own technique for fast redraws): everything that does not move with the threshold is
    rendered once per setting or stage and kept as a background; a move restores it, draws the few moving artists
    (markers, bars, the overlay line, titles) and encodes the PNG.
    """

    def __init__(self, explorer: Explorer):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.ex = explorer
        self.fig = Figure(figsize=(13.5, 3.7), dpi=80)
        self.canvas = FigureCanvasAgg(self.fig)
        self.ax_curve, self.ax_exit, self.ax_rel = self.fig.subplots(1, 3, width_ratios=[1.25, 1, 1])
        self._rel_key = None
        self._background = None
        self._draw_exit_axes()

    def _moving(self, artist):
        artist.set_animated(True)
        return artist

    def draw_curves(self):
        ex, ax = self.ex, self.ax_curve
        ax.clear()
        for split, style in (("test", "-"), ("cal", "--")):
            pre = ex.pre(split)
            c = pre.columns
            idx = _thin(len(pre.curve))
            ax.plot(c["speedup"][idx], c[pre.metric][idx], style, lw=1.3,
                    color="C0" if split == "test" else "C7", label=f"{split} (every threshold)")
        band = ex.band()
        if band is not None:
            b = band.sort_values("speedup")
            ax.fill_between(b["speedup"], b[f"{ex.metric}_lo"], b[f"{ex.metric}_hi"], color="C0", alpha=0.18, lw=0,
                            label=f"test {100 * ex._boot[1]:g}% band")
        self.markers = {s: self._moving(ax.plot([], [], "o", ms=8, mfc=mfc, mec="C3", mew=1.8,
                                                label=f"point on {s}")[0])
                        for s, mfc in (("test", "C3"), ("cal", "none"))}
        self.errorbars = self._moving(ax.plot([], [], "-", color="C3", lw=1.4)[0])
        labels = (speedup_label(ex.reference, ex.cost_unit), ex.metric)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        ax.set_title(" ", fontsize=9)
        self._moving(ax.title)
        self._rel_key = None
        self._layout = labels != getattr(self, "_labels", None)  # new axis labels: lay out again
        self._labels = labels

    def _draw_exit_axes(self):
        ax, names = self.ax_exit, self.ex.view.stage_names
        x = np.arange(len(names))
        self.bars = {"test": ax.bar(x - 0.2, np.zeros(len(x)), width=0.4, color="C0", label="test"),
                     "cal": ax.bar(x + 0.2, np.zeros(len(x)), width=0.4, color="C7", label="cal")}
        for bars in self.bars.values():
            for b in bars:
                self._moving(b)
        self.chosen = self._moving(ax.bar([0], [0], width=0.4, fill=False, ec="C3", lw=2)[0])
        many = len(names) > 4
        ax.set_xticks(x, names, rotation=30 if many else 0, ha="right" if many else "center", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("exit stage")
        ax.set_ylabel("share of examples")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")

    def _draw_reliability_axes(self, everyone, labels):
        ax = self.ax_rel
        ax.clear()
        nz = everyone["count"].to_numpy() > 0
        w = (everyone["hi"] - everyone["lo"]).to_numpy()
        ax.bar(everyone["lo"].to_numpy()[nz], everyone["accuracy"].to_numpy()[nz], width=w[nz], align="edge",
               alpha=0.5, edgecolor="k", lw=0.5, label="all test examples")
        self.overlay = self._moving(ax.plot([], [], "o-", color="C3", ms=4, lw=1, label="those exiting here")[0])
        ax.plot([0, 1], [0, 1], "--", color="gray", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(labels[0], fontsize=9)
        ax.set_ylabel(labels[1])
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title(" ", fontsize=9)
        self._moving(ax.title)

    def draw_point(self):
        """Update the moving artists; re-render the background first when the setting or the stage changed."""
        ex = self.ex
        everyone, here, labels = ex.reliability()
        key = (ex.stage, ex.view.key(ex.settings))
        if key != self._rel_key:
            self._draw_reliability_axes(everyone, labels)
            self._rel_key = key
            if self._layout:  # costly; otherwise the axes keep their positions (tick labels change little)
                self.fig.set_layout_engine("constrained")
            self.canvas.draw()  # renders everything not animated
            self.fig.set_layout_engine("none")
            self._layout = False
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        for s, m in self.markers.items():
            m.set_data([ex.points[s].speedup], [ex.points[s].value])
        p, iv = ex.points["test"], ex.interval()
        if iv:  # the test point's intervals as a cross: metric vertical, speed-up horizontal (where it has one)
            (ylo, yhi), (xlo, xhi) = iv[ex.metric], iv.get("speedup", (p.speedup, p.speedup))
            self.errorbars.set_data([p.speedup, p.speedup, np.nan, xlo, xhi], [ylo, yhi, np.nan, p.value, p.value])
        self.ax_curve.title.set_text(f"threshold {format_value('threshold', ex.threshold)}: test "
                                     f"{format_value('metric', p.value)}"
                                     + (f" [{format_value('metric', iv[ex.metric][0])}, "
                                        f"{format_value('metric', iv[ex.metric][1])}]" if iv else "")
                                     + f" at {format_value('speedup', p.speedup)}"
                                     + (f" [{format_value('speedup', iv['speedup'][0])}, "
                                        f"{format_value('speedup', iv['speedup'][1])}]" if "speedup" in iv else ""))
        for s, bars in self.bars.items():
            for b, h in zip(bars, ex.points[s].exit_share):
                b.set_height(h)
        self.chosen.set_x(ex.stage - 0.4)
        self.chosen.set_height(ex.points["test"].exit_share[ex.stage])
        h = here["count"].to_numpy() > 0
        self.overlay.set_data(here["confidence"].to_numpy()[h], here["accuracy"].to_numpy()[h])
        self.ax_rel.title.set_text(f"reliability at {ex.view.stage_names[ex.stage]} (test, {N_BINS} bins); "
                                   f"{int(here['count'].sum()):,} exit here")
        self.canvas.restore_region(self._background)
        for a in (*self.markers.values(), self.errorbars, self.ax_curve.title, *self.bars["test"], *self.bars["cal"], self.chosen,
                  self.overlay, self.ax_rel.title):
            self.fig.draw_artist(a)

    def png(self) -> bytes:
        """The rendered canvas as PNG bytes (the blitted state, not a fresh savefig)."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())[..., :3]).save(buf, format="png", compress_level=1)
        return buf.getvalue()
