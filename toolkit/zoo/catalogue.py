"""The shipped caches as the notebooks and the generated tables read them: where they are, every training seed of a
cache set (the per-seed files when present, else the single-seed pair, saying which), how each model
was trained, and the evaluation protocol every notebook shares (speed-up reference, resamples, seeds).

>>> from toolkit.zoo import catalogue
>>> catalogue.REFERENCE, catalogue.N_BOOT, catalogue.SEED
('last', 1000, 0)

Cache files (relative to :func:`data_dir`): ``<task>/<set>-s<seed>-<split>.parquet`` for each training seed (the
multi-seed recipe), ``<task>/<set>-<split>.parquet`` for the single-seed caches. :func:`load_seeds` takes every seed that has
both a ``cal`` and a ``test`` file and falls back to the single-seed pair when there is none. Analysis side: no torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toolkit.analysis.engine import Staged, staged
from toolkit.caches.kinds import load as load_any

# The speed-up reference of every notebook and generated table: the last member alone (a cascade's or Swift/Super's
# largest model, run on every example) or, for a multi-exit model, its last exit (the engine's default).
REFERENCE = "last"
REFERENCE_TEXT = ("the last member alone (a cascade's or Swift/Super's largest model on every example) or, for a "
                  "multi-exit model, its last exit")
N_BOOT = 1000  # bootstrap resamples of every interval unless a notebook says otherwise
SEED = 0  # seed of every resampling and of the cross-fitting halves
CI = 0.95
SPLITS = ("cal", "test")
_SEED_FILE = re.compile(r"(?P<name>.+)-s(?P<seed>\d+)-(?P<split>[a-z]+)\.parquet")


# ------------------------------------------------------------------------------------------------- files
def data_dir() -> Path:
    """The shipped caches: ``$TOOLKIT_NB_DATA``, else ``../data`` (a notebook runs in ``notebooks/``), else
    ``data`` in the working directory, else the checkout's ``data`` beside this package (a command run elsewhere)."""
    env = os.environ.get("TOOLKIT_NB_DATA")
    if env:
        return Path(env)
    for here in (Path("../data"), Path("data")):
        if (here / "MANIFEST.json").exists():
            return here
    checkout = Path(__file__).resolve().parents[2] / "data"
    return checkout if (checkout / "MANIFEST.json").exists() else Path("data")


def cache_file(task: str, name: str, split: str, *, seed: int | None = None, data: Path | None = None) -> Path:
    """Path of one cache: the per-seed file when ``seed`` is given, else the single-seed file (in ``data``, default
    :func:`data_dir`)."""
    stem = f"{name}-s{seed}-{split}" if seed is not None else f"{name}-{split}"
    return (Path(data) if data is not None else data_dir()) / task / f"{stem}.parquet"


def seeds_on_disk(task: str, name: str, *, data: Path | None = None) -> tuple[int, ...]:
    """Training seeds of ``task/name`` with both a ``cal`` and a ``test`` per-seed file, sorted (in ``data``,
    default :func:`data_dir`)."""
    folder = (Path(data) if data is not None else data_dir()) / task
    found: dict[int, set[str]] = {}
    for p in folder.glob(f"{name}-s*-*.parquet") if folder.is_dir() else ():
        m = _SEED_FILE.fullmatch(p.name)
        if m and m["name"] == name:
            found.setdefault(int(m["seed"]), set()).add(m["split"])
    return tuple(sorted(s for s, splits in found.items() if set(SPLITS) <= splits))


def available(task: str, name: str) -> bool:
    """Whether ``task/name`` is shipped (per-seed files or the single-seed pair)."""
    return bool(seeds_on_disk(task, name)) or all(cache_file(task, name, s).exists() for s in SPLITS)


def read(path: str | os.PathLike):
    """Load a cache of any kind (:func:`toolkit.caches.kinds.load`: the header's ``kind`` picks the loader)."""
    return load_any(path)


def load(task: str, name: str, *, seed: int | None = None):
    """``(cal, test)`` caches of one set: one training seed's files, or the single-seed pair when ``seed`` is None."""
    return tuple(read(cache_file(task, name, s, seed=seed)) for s in SPLITS)


# ------------------------------------------------------------------------------------------------- seeds
def _train_seeds(cache) -> tuple:
    meta = getattr(cache, "meta", {}) or {}
    return tuple(m.get("train_seed") for m in meta.get("models", []) if isinstance(m, Mapping))


@dataclass(frozen=True, eq=False)
class SeedCaches:
    """The caches of one set for every training seed available.

    ``per_seed`` False: no per-seed files exist yet and the single-seed pair was loaded (``seeds`` then holds the
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
    passed_over: tuple = ()  # per-seed files' seeds not read (``single_seed=True`` chose the single-seed pair)

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
        why = (f"chosen over the per-seed files of seeds {', '.join(map(str, self.passed_over))}"
               if self.passed_over else "no per-seed files yet")
        return (f"{where}: 1 training seed ({seed if seed is not None else 'not recorded'}), the single-seed files "
                f"{self.task}/{self.name}-{{cal,test}}.parquet ({why}); intervals resample test examples only")

    def views(self, split: str = "test", **options) -> list[Staged]:
        """One engine view per seed (speed-ups against :data:`REFERENCE` unless ``reference=`` says otherwise),
        aligned to the first seed's examples."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: use one of {SPLITS}")
        caches = self.test if split == "test" else self.cal
        options.setdefault("reference", REFERENCE)
        out = [staged(c, **options) for c in caches]
        return [out[0]] + [v.align(out[0].example_ids) for v in out[1:]]

    def first(self):
        """``(cal, test)`` of the first seed: for figures and per-example tables that show one model."""
        return self.cal[0], self.test[0]

    def __repr__(self) -> str:
        return f"SeedCaches({self.source})"


def load_seeds(task: str, name: str, *, verbose: bool = True, single_seed: bool = False) -> SeedCaches:
    """Every training seed of ``task/name``: the per-seed files ``<name>-s<seed>-{cal,test}.parquet``
    when any seed has both, else the single-seed pair ``<name>-{cal,test}.parquet``. Prints which (``verbose``).

    ``single_seed``: the single-seed pair even where per-seed files exist. The pair comes from the first build, and
    sets trained from it (the slenderized copies pruned from and distilled by its MiniLM-L6, the subsample objectives
    beside it) are compared with it, not with per-seed runs of another recipe."""
    seeds = () if single_seed else seeds_on_disk(task, name)
    if seeds:
        pairs = [load(task, name, seed=s) for s in seeds]
        files = tuple(str(cache_file(task, name, "test", seed=s).relative_to(data_dir())) for s in seeds)
        out = SeedCaches(task, name, seeds, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), files, True)
    else:
        if single_seed and not all(cache_file(task, name, s).exists() for s in SPLITS):
            raise FileNotFoundError(f"no single-seed pair {task}/{name}-{{cal,test}}.parquet in {data_dir()} "
                                    f"(single_seed=True); per-seed files: seeds {seeds_on_disk(task, name)}")
        if not available(task, name):
            raise FileNotFoundError(f"no cache {task}/{name} in {data_dir()}: neither per-seed files "
                                    f"{name}-s<seed>-{{cal,test}}.parquet nor the single-seed pair {name}-{{cal,test}}.parquet")
        cal, test = load(task, name)
        recorded = sorted({s for s in _train_seeds(test) if s is not None})
        seed = recorded[0] if len(recorded) == 1 else None
        out = SeedCaches(task, name, (seed,), (cal,), (test,), (f"{task}/{name}-test.parquet",), False,
                         seeds_on_disk(task, name) if single_seed else ())
    if verbose:
        print(out.source)
    return out


def recipe(task: str, name: str, *, single_seed: bool = False) -> pd.DataFrame:
    """How the models of a set were trained, from ``MANIFEST.json`` (one row per model and seed): objective,
    epochs, learning rates, training examples, seed; of the files :func:`load_seeds` reads with the same
    ``single_seed``."""
    manifest = json.loads((data_dir() / "MANIFEST.json").read_text())["caches"]
    seeds = () if single_seed else seeds_on_disk(task, name)
    keys = [f"{task}/{name}-s{s}-test" for s in seeds] or [f"{task}/{name}-test"]
    rows = []
    for key in keys:
        for m in manifest.get(key, {}).get("models", []):
            row = {"cache": key, "model": m.get("name"), "train seed": m.get("train_seed"),
                   "objective": m.get("objective"), "epochs": m.get("epochs"), "learning rate": m.get("learning_rate"),
                   "head learning rate": m.get("head_learning_rate"), "training examples": m.get("train_size")}
            row.update({k: m[k] for k in ("encoder", "decoder") if k in m})  # generation caches
            rows.append(row)
    return pd.DataFrame(rows).dropna(axis=1, how="all")


def protocol() -> str:
    """The notebooks' evaluation protocol in one line."""
    return (f"caches: {data_dir()}; speed-ups against {REFERENCE_TEXT}; intervals: {CI:.0%} percentile bootstrap "
            f"over test examples (and over training seeds where there are several), {N_BOOT} resamples, seed {SEED}; "
            f"cross-fitting: two label-stratified halves of test (seed {SEED}): choose on one, evaluate on the "
            f"other, swap, combine")
