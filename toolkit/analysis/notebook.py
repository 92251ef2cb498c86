"""What every notebook shares, defined once: where the shipped caches are, every training seed of a cache set (the
per-seed files of zoo v2 when present, else the single-seed v1 file, saying which), the one speed-up reference,
figures with alt text, and conclusions rendered as Markdown from computed values.

Notebooks import it as ``from toolkit.analysis import notebook as nb``:

>>> from toolkit.analysis import notebook as nb
>>> nb.REFERENCE
'last'
>>> nb.ci(0.01234, 0.0567)
'[0.012, 0.057]'
>>> nb.ci(-0.01234, 0.0567, points=True)  # write "points" before it: "+2.2 points [-1.2, +5.7]"
'[-1.2, +5.7]'

Cache files (relative to :func:`data_dir`): ``<task>/<set>-s<seed>-<split>.parquet`` for each training seed (zoo
v2), ``<task>/<set>-<split>.parquet`` for the single-seed v1 caches. :func:`load_seeds` takes every seed that has
both a ``cal`` and a ``test`` file and falls back to the v1 pair when there is none.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import Cache, load_cache
from .cache_io import read_header
from .calibration import DegenerateFitWarning, fit_stage_temperatures
from .engine import CrossFit, OperatingPoint, Staged, crossfit, halves, resample_weights, staged
from .generation_cache import load_generation_cache

# The speed-up reference of every notebook: the last member alone (a cascade's or Swift/Super's largest model, run
# on every example) or, for a multi-exit model, its last exit. Every view built with :func:`view` uses it, and every
# speed-up axis names it (``plots.speedup_label(view.reference)``).
REFERENCE = "last"
REFERENCE_TEXT = ("the last member alone (a cascade's or Swift/Super's largest model on every example) or, for a "
                  "multi-exit model, its last exit")
N_BOOT = 1000  # bootstrap resamples of every interval unless a notebook says otherwise
SEED = 0  # seed of every resampling and of the cross-fitting halves
CI = 0.95
SPLITS = ("cal", "test")
LOADERS = {"classification": load_cache, "generation": load_generation_cache}  # by the header's "kind"
_SEED_FILE = re.compile(r"(?P<name>.+)-s(?P<seed>\d+)-(?P<split>[a-z]+)\.parquet")


# ------------------------------------------------------------------------------------------------- files
def data_dir() -> Path:
    """The shipped caches: ``$TOOLKIT_NB_DATA``, else ``../data`` (a notebook runs in ``notebooks/``), else
    ``data``."""
    env = os.environ.get("TOOLKIT_NB_DATA")
    if env:
        return Path(env)
    return Path("../data") if Path("../data/MANIFEST.json").exists() else Path("data")


def cache_file(task: str, name: str, split: str, *, seed: int | None = None) -> Path:
    """Path of one cache: the per-seed file when ``seed`` is given, else the v1 file."""
    stem = f"{name}-s{seed}-{split}" if seed is not None else f"{name}-{split}"
    return data_dir() / task / f"{stem}.parquet"


def seeds_on_disk(task: str, name: str) -> tuple[int, ...]:
    """Training seeds of ``task/name`` with both a ``cal`` and a ``test`` per-seed file, sorted."""
    folder = data_dir() / task
    found: dict[int, set[str]] = {}
    for p in folder.glob(f"{name}-s*-*.parquet") if folder.is_dir() else ():
        m = _SEED_FILE.fullmatch(p.name)
        if m and m["name"] == name:
            found.setdefault(int(m["seed"]), set()).add(m["split"])
    return tuple(sorted(s for s, splits in found.items() if set(SPLITS) <= splits))


def available(task: str, name: str) -> bool:
    """Whether ``task/name`` is shipped (per-seed files or the v1 pair)."""
    return bool(seeds_on_disk(task, name)) or all(cache_file(task, name, s).exists() for s in SPLITS)


def read(path: str | os.PathLike):
    """Load a cache of any kind the notebooks use (the header's ``kind`` picks the loader)."""
    kind = read_header(path).get("kind")
    if kind not in LOADERS:
        raise ValueError(f"{path}: a cache of kind {kind!r}; the notebooks read {sorted(LOADERS)}")
    return LOADERS[kind](path)


def load(task: str, name: str, *, seed: int | None = None):
    """``(cal, test)`` caches of one set: one training seed's files, or the v1 pair when ``seed`` is None."""
    return tuple(read(cache_file(task, name, s, seed=seed)) for s in SPLITS)


# ------------------------------------------------------------------------------------------------- seeds
def _train_seeds(cache) -> tuple:
    meta = getattr(cache, "meta", {}) or {}
    return tuple(m.get("train_seed") for m in meta.get("models", []) if isinstance(m, Mapping))


@dataclass(frozen=True, eq=False)
class SeedCaches:
    """The caches of one set for every training seed available.

    ``per_seed`` False: no per-seed files exist yet and the single v1 pair was loaded (``seeds`` then holds the
    training seed its header records, or None). Intervals over seeds need ``len(self) > 1``; with one seed every
    interval is over test examples only, and :attr:`source` says so.
    """

    task: str
    name: str
    seeds: tuple
    cal: tuple
    test: tuple
    files: tuple[str, ...]
    per_seed: bool

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def source(self) -> str:
        """One line saying which files were used."""
        where = f"{self.task}/{self.name}"
        if self.per_seed:
            seeds = ", ".join(str(s) for s in self.seeds)
            return (f"{where}: {len(self)} training seeds ({seeds}), files {self.task}/{self.name}-s<seed>-"
                    f"{{cal,test}}.parquet; intervals resample seeds, then test examples")
        seed = self.seeds[0]
        return (f"{where}: 1 training seed ({seed if seed is not None else 'not recorded'}), the v1 files "
                f"{self.task}/{self.name}-{{cal,test}}.parquet (no per-seed files yet); intervals resample test "
                f"examples only")

    def views(self, split: str = "test", **options) -> list[Staged]:
        """One engine view per seed (:func:`view`, the notebooks' reference), aligned to the first seed's
        examples."""
        caches = self.test if split == "test" else self.cal
        out = [view(c, **options) for c in caches]
        return [out[0]] + [v.align(out[0].example_ids) for v in out[1:]]

    def first(self):
        """``(cal, test)`` of the first seed: for figures and per-example tables that show one model."""
        return self.cal[0], self.test[0]

    def __repr__(self) -> str:
        return f"SeedCaches({self.source})"


def load_seeds(task: str, name: str, *, verbose: bool = True) -> SeedCaches:
    """Every training seed of ``task/name``: the per-seed files ``<name>-s<seed>-{cal,test}.parquet`` (zoo v2)
    when any seed has both, else the v1 pair ``<name>-{cal,test}.parquet``. Prints which (``verbose``)."""
    seeds = seeds_on_disk(task, name)
    if seeds:
        pairs = [load(task, name, seed=s) for s in seeds]
        files = tuple(str(cache_file(task, name, "test", seed=s).relative_to(data_dir())) for s in seeds)
        out = SeedCaches(task, name, seeds, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), files, True)
    else:
        if not available(task, name):
            raise FileNotFoundError(f"no cache {task}/{name} in {data_dir()}: neither per-seed files "
                                    f"{name}-s<seed>-{{cal,test}}.parquet nor the v1 pair {name}-{{cal,test}}.parquet")
        cal, test = load(task, name)
        recorded = sorted({s for s in _train_seeds(test) if s is not None})
        seed = recorded[0] if len(recorded) == 1 else None
        out = SeedCaches(task, name, (seed,), (cal,), (test,), (f"{task}/{name}-test.parquet",), False)
    if verbose:
        print(out.source)
    return out


def recipe(task: str, name: str) -> pd.DataFrame:
    """How the models of a set were trained, from ``MANIFEST.json`` (one row per model and seed): objective,
    epochs, learning rates, training examples, seed."""
    manifest = json.loads((data_dir() / "MANIFEST.json").read_text())["caches"]
    keys = [f"{task}/{name}-s{s}-test" for s in seeds_on_disk(task, name)] or [f"{task}/{name}-test"]
    rows = []
    for key in keys:
        for m in manifest.get(key, {}).get("models", []):
            row = {"cache": key, "model": m.get("name"), "train seed": m.get("train_seed"),
                   "objective": m.get("objective"), "epochs": m.get("epochs"), "learning rate": m.get("learning_rate"),
                   "head learning rate": m.get("head_learning_rate"), "training examples": m.get("train_size")}
            row.update({k: m[k] for k in ("encoder", "decoder") if k in m})  # generation caches
            rows.append(row)
    return pd.DataFrame(rows).dropna(axis=1, how="all")


# ------------------------------------------------------------------------------------------------- setup
def protocol() -> str:
    """The notebooks' evaluation protocol in one line (printed by :func:`setup`)."""
    return (f"caches: {data_dir()}; speed-ups against {REFERENCE_TEXT}; intervals: {CI:.0%} percentile bootstrap "
            f"over test examples (and over training seeds where there are several), {N_BOOT} resamples, seed {SEED}; "
            f"cross-fitting: two label-stratified halves of test (seed {SEED}): choose on one, evaluate on the "
            f"other, swap, combine")


def setup() -> None:
    """Notebook defaults (pandas display options; RuntimeWarnings of empty bins and unreachable budgets silenced)
    and the protocol, printed once."""
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning)
    pd.set_option("display.precision", 4)
    pd.set_option("display.width", 150)
    pd.set_option("display.max_columns", 40)
    print(protocol())


# ------------------------------------------------------------------------------------------------- views
def view(cache, **options) -> Staged:
    """The engine's view of a cache with the notebooks' speed-up reference (:data:`REFERENCE`)."""
    return staged(cache, reference=options.pop("reference", REFERENCE), **options)


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


def point_row(label: str, ev, *, metric: str | None = None) -> dict:
    """One operating point (an :class:`~toolkit.analysis.engine.Evaluation`) as a table row: the metric with its
    interval, the last stage's, the drop, the speed-up with its interval."""
    m = metric or ev.metric
    d = ev.to_dict()
    row = {"point": label, m: d[m], f"{m}_lo": d.get(f"{m}_lo", np.nan), f"{m}_hi": d.get(f"{m}_hi", np.nan),
           f"final_{m}": d[f"final_{m}"], f"{m}_drop": ev.drop(m), "speedup": ev.speedup,
           "speedup_lo": d.get("speedup_lo", np.nan), "speedup_hi": d.get("speedup_hi", np.nan)}
    return row


def upper_bound_point(curve, *, max_drop: float = 0.01, metric: str = "accuracy") -> dict:
    """The row of a curve on test with the largest speed-up whose ``metric`` is within ``max_drop`` of the last
    stage's: the best threshold *for that data*, an upper bound on what a threshold chosen elsewhere achieves."""
    df = curve.frame
    ok = df[df[metric] >= df[metric].iloc[0] - max_drop - 1e-12]
    r = ok.loc[ok["speedup"].idxmax()]
    return {"point": f"best on test itself (upper bound, drop <= {max_drop:g})", metric: float(r[metric]),
            f"final_{metric}": float(df[metric].iloc[0]), f"{metric}_drop": float(df[metric].iloc[0] - r[metric]),
            "speedup": float(r["speedup"]), "threshold": float(r["threshold"])}


def stops(view: Staged, point) -> np.ndarray:
    """Stage where each example of ``view`` stops ``[N]`` under ``point``: a threshold (global or per stage), an
    :class:`~toolkit.analysis.engine.OperatingPoint` (its threshold) or a
    :class:`~toolkit.analysis.engine.CrossFit` of this view (each half by the threshold chosen on the other)."""
    if isinstance(point, CrossFit):
        a, b = halves(view.example_ids, point.seed, view.strata)  # the halves crossfit drew
        out = np.empty(view.n_examples, dtype=np.int64)
        out[b] = view.subset(b).stage_of(point.folds[0].threshold)  # fold 1: chosen on half A, applied to B
        out[a] = view.subset(a).stage_of(point.folds[1].threshold)
        return out
    return view.stage_of(point.threshold if isinstance(point, OperatingPoint) else point)


def paired_drop(view: Staged, point, *, metric: str | None = None, n_boot: int = N_BOOT, ci: float = CI,
                seed: int = SEED) -> tuple[float, float, float]:
    """What an operating point costs on ``view``: the last stage's ``metric`` minus the point's, on the same
    examples (positive: the point loses), with a paired percentile bootstrap interval (each resample of examples
    scores both sides). ``point``: as in :func:`stops`. Returns ``(drop, lo, hi)``.

    >>> from toolkit.analysis.cache import from_arrays
    >>> lg = np.log([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.4, 0.6]], [[0.8, 0.2], [0.9, 0.1]]])
    >>> v = view(from_arrays(lg, [1, 1, 0], [1.0, 2.0]))  # exit 1 wrong on the first, right on the others
    >>> d, lo, hi = paired_drop(v, 0.75, n_boot=200)  # the first and the last stop at exit 1: one of three lost
    >>> round(d, 4), lo <= d <= hi
    (0.3333, True)
    """
    m = metric or view.metric
    N = view.n_examples
    rows = np.arange(N)
    chosen, last = view.stats[rows, stops(view, point)], view.stats[:, -1]
    drop = float(view.metric_of(last.sum(0), N, m) - view.metric_of(chosen.sum(0), N, m))
    w = resample_weights(N, n_boot=n_boot, seed=seed)
    d = view.metric_of(w @ last, N, m) - view.metric_of(w @ chosen, N, m)
    lo, hi = np.quantile(d, [(1 - ci) / 2, (1 + ci) / 2])
    return drop, float(lo), float(hi)


def crossfit_table(views: Mapping[str, Sequence[Staged] | Staged], *, rule: str = "drop", n_boot: int = N_BOOT,
                   seed: int = SEED, **rule_options) -> pd.DataFrame:
    """Cross-fitted operating points (:func:`toolkit.analysis.engine.crossfit`: choose on one half of test,
    evaluate on the other, swap, combine), one row per policy and training seed, with 95% intervals.

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


@dataclass(frozen=True, eq=False)
class CrossfitTemperatures:
    """Per-stage temperatures fitted (NLL) on each label-stratified half of a split and applied to the other half,
    so every example is scaled by temperatures fitted without it (the cross-fitting protocol, for calibration)."""

    halves: tuple[np.ndarray, np.ndarray]  # row indices of half A and half B
    fitted: tuple[np.ndarray, np.ndarray]  # [E] temperatures fitted on half A, on half B
    per_example: np.ndarray  # [N, E]: the temperatures each example is scaled by (the other half's)
    degenerate: tuple[str, ...] = ()  # fits that ran into a bound (no signal in that exit on that half)

    def apply(self, cache: Cache) -> Cache:
        """The cache with each example's logits divided by its temperatures (predictions unchanged)."""
        logits = (cache.logits / self.per_example[..., None]).astype(np.float32)
        return Cache(logits, cache.labels, cache.flops, cache.example_ids, cache.n_tokens, cache.stage_info,
                     {**cache.meta, "temperature": "cross-fitted on test halves"})

    def to_frame(self, stages) -> pd.DataFrame:
        return pd.DataFrame({"stage": list(stages), "T fitted on half A": self.fitted[0],
                             "T fitted on half B": self.fitted[1]})


def crossfit_temperatures(cache: Cache, *, seed: int = SEED) -> CrossfitTemperatures:
    """Fit one temperature per stage on each half of ``cache`` (:func:`toolkit.analysis.engine.halves`, stratified
    by label) and give each example the other half's."""
    import warnings

    a, b = halves(cache.example_ids, seed, cache.labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateFitWarning)
        ta, tb = fit_stage_temperatures(cache.subset(a)), fit_stage_temperatures(cache.subset(b))
    per = np.empty((cache.n_examples, cache.n_stages))
    per[a], per[b] = tb, ta
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, DegenerateFitWarning))
    return CrossfitTemperatures((a, b), (ta, tb), per, notes)


# ------------------------------------------------------------------------------------------------- rendering
def ci(lo: float, hi: float, *, digits: int = 3, points: bool = False) -> str:
    """An interval as text: ``[lo, hi]``, or in points (x 100, signed) with ``points=True`` (the text says
    "points" before it, as in "+2.2 points [-1.2, +5.7]")."""
    if points:
        return f"[{100 * lo:+.{max(digits - 2, 0)}f}, {100 * hi:+.{max(digits - 2, 0)}f}]"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def conclude(text: str) -> None:
    """Display a conclusion written from computed values (an f-string) as Markdown."""
    from IPython.display import Markdown, display

    display(Markdown(_dedent(text)))


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip()


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


def round_frame(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Floats rounded for display (what a table prints is what its conclusion quotes)."""
    return df.round(digits)


def share(x: float) -> str:
    """A share as a percentage with one decimal: ``share(0.0261) == '2.6%'``."""
    return f"{100 * float(x):.1f}%"


def is_finite(x) -> bool:
    return bool(np.isfinite(x))
