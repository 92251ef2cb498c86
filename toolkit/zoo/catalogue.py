"""The shipped caches as the notebooks and the generated tables read them: where they are, every training seed of a
cache set (the per-seed files when present, else the single-seed pair, saying which), how each model
was trained, and the evaluation protocol every notebook shares (speed-up reference, resamples, seeds).

>>> from toolkit.zoo import catalogue
>>> catalogue.REFERENCE, catalogue.N_BOOT, catalogue.SEED
('last', 1000, 0)

Cache files (relative to :func:`data_dir`): ``<task>/<set>-s<seed>-<split>.parquet`` for each training seed (the
multi-seed recipe), ``<task>/<set>-<split>.parquet`` for the single-seed caches. :func:`load_seeds` takes every seed that has
both a ``cal`` and a ``test`` file and falls back to the single-seed pair when there is none; ``build=`` picks the
files of one build (``MANIFEST.json`` records each file's ``build``, :mod:`toolkit.zoo.lineage`). A derived set (the
slenderized copies) is compared with the files it was made from: :func:`parent_of` reads them from
its manifest record and checks their content hash, :func:`derived_pair` gives both, and :func:`check_parent` refuses
any other pairing. Analysis side: no torch.
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
from toolkit.caches.io import CacheError
from toolkit.caches.kinds import load as load_any
from toolkit.zoo.lineage import content_hash, key_of, parse_key

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


def manifest() -> dict:
    """The ``caches`` of :func:`data_dir`'s ``MANIFEST.json`` (empty where there is none)."""
    path = data_dir() / "MANIFEST.json"
    return json.loads(path.read_text()).get("caches", {}) if path.is_file() else {}


# ------------------------------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class Identity:
    """What the manifest records of one cache file: its ``build`` (None: no entry, or one written before builds were
    recorded), its content hash (the header's, which every load verifies) and, for a derived set, ``derived_from``
    (the parent's set, build, file and content hash; :mod:`toolkit.zoo.lineage`)."""

    key: str
    build: str | None
    content: str
    derived_from: dict | None = None


def _identity(key: str, entries: dict) -> Identity:
    e = entries.get(key, {})
    return Identity(key, e.get("build"), content_hash(data_dir() / f"{key}.parquet"), e.get("derived_from"))


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
    passed_over: tuple = ()  # per-seed files' seeds not read (``build=`` or ``single_seed=True`` chose the pair)
    identity: tuple = ()  # per seed, {split: Identity} of its files

    @property
    def builds(self) -> tuple:
        """The build of each seed's test file (None where the manifest records none)."""
        return tuple(i["test"].build for i in self.identity)

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


def _choose(task: str, name: str, build: str | None, single_seed: bool, entries: dict) -> tuple[tuple, bool]:
    """``(seeds, per_seed)`` of the files :func:`load_seeds` reads (seeds ``(None,)`` for the single-seed pair)."""
    if build is not None and single_seed:
        raise ValueError("give build= or single_seed=True, not both (single_seed=True is the single-seed pair)")
    on_disk = seeds_on_disk(task, name)
    pair = all(cache_file(task, name, s).exists() for s in SPLITS)
    if build is None:
        if single_seed:
            if not pair:
                raise FileNotFoundError(f"no single-seed pair {task}/{name}-{{cal,test}}.parquet in {data_dir()} "
                                        f"(single_seed=True); per-seed files: seeds {on_disk}")
            return (None,), False
        if on_disk:
            _check_one_build(task, name, {sd: _builds(task, name, sd, entries) for sd in on_disk})
            return on_disk, True
        if not pair:
            raise FileNotFoundError(f"no cache {task}/{name} in {data_dir()}: neither per-seed files "
                                    f"{name}-s<seed>-{{cal,test}}.parquet nor the single-seed pair "
                                    f"{name}-{{cal,test}}.parquet")
        return (None,), False
    of = lambda seed: _builds(task, name, seed, entries)  # noqa: E731
    seeds = tuple(sd for sd in on_disk if of(sd) == {build})
    if seeds:
        return seeds, True
    if pair and of(None) == {build}:
        return (None,), False
    have = sorted({b for sd in (*on_disk, *((None,) if pair else ())) for b in of(sd)}, key=str)
    raise FileNotFoundError(f"no build {build!r} of {task}/{name} in {data_dir()}: its files are of builds {have} "
                            f"(MANIFEST.json's 'build'; python scripts/stamp_lineage.py records them)")


def _builds(task: str, name: str, seed: int | None, entries: dict) -> set:
    """The builds that the manifest entries of ``task/name``'s files of ``seed`` (None: the pair) record, per split."""
    return {entries.get(key_of(task, name, seed, s), {}).get("build") for s in SPLITS}


def _check_one_build(task: str, name: str, builds: dict) -> None:
    """Refuse per-seed files of more than one recorded build (``builds``: seed -> builds of its files): their
    spread over seeds would mix training seeds with recipes. Files without a recorded build are not counted."""
    found = sorted({b for bs in builds.values() for b in bs if b is not None})
    if len(found) > 1:
        each = "; ".join(f"seed {sd}: {', '.join(sorted(map(str, bs)))}" for sd, bs in builds.items())
        raise ValueError(f"{task}/{name}: its per-seed files are of builds {found} ({each}) in {data_dir()}; pick "
                         f"one with build= (MANIFEST.json's 'build')")


def _seed_caches(task: str, name: str, seeds: tuple, per_seed: bool, entries: dict,
                 passed_over: tuple = ()) -> SeedCaches:
    pairs = [load(task, name, seed=s) for s in seeds]
    if per_seed:
        files = tuple(str(cache_file(task, name, "test", seed=s).relative_to(data_dir())) for s in seeds)
    else:
        recorded = sorted({s for s in _train_seeds(pairs[0][1]) if s is not None})
        seeds = (recorded[0] if len(recorded) == 1 else None,)
        files = (f"{task}/{name}-test.parquet",)
    identity = tuple({split: _identity(key_of(task, name, sd if per_seed else None, split), entries)
                      for split in SPLITS} for sd in seeds)
    return SeedCaches(task, name, seeds, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), files, per_seed,
                      passed_over, identity)


def load_seeds(task: str, name: str, *, build: str | None = None, verbose: bool = True,
               single_seed: bool = False) -> SeedCaches:
    """Every training seed of ``task/name``: the per-seed files ``<name>-s<seed>-{cal,test}.parquet``
    when any seed has both, else the single-seed pair ``<name>-{cal,test}.parquet``. Prints which (``verbose``).

    ``build``: only the files whose manifest entries record this build (``"v1"``: the first build's single-seed
    pair; ``"cpu"``, ``"v2"``: the zoo runner's per-seed files; :data:`toolkit.zoo.lineage.BUILDS`); an error lists
    the builds there are. To compare a derived set (the slenderized copies) with what it was made
    from, use :func:`derived_pair` (or :func:`parent_of`): the recorded parent, by content hash.

    ``single_seed``: kept for scripts written before builds were recorded: the single-seed pair even where per-seed
    files exist, whatever its build (prefer ``build="v1"``)."""
    entries = manifest()
    seeds, per_seed = _choose(task, name, build, single_seed, entries)
    passed_over = () if per_seed else tuple(s for s in seeds_on_disk(task, name) if build or single_seed)
    out = _seed_caches(task, name, seeds, per_seed, entries, passed_over)
    if verbose:
        print(out.source)
    return out


def parent_of(task: str, name: str, *, verbose: bool = False) -> SeedCaches:
    """The caches derived set ``task/name`` was made from, as its manifest entries record them (``derived_from``:
    the parent's file for each of its files, same seed and split), after checking that each parent file still has
    the recorded content hash. Raises naming the file and the fix when a record is missing or a hash differs."""
    entries = manifest()
    seeds, per_seed = _choose(task, name, None, False, entries)
    records = []
    for sd in seeds:
        rec = {}
        for split in SPLITS:
            key = key_of(task, name, sd, split)
            r = entries.get(key, {}).get("derived_from")
            if not r:
                raise CacheError(f"{data_dir() / 'MANIFEST.json'}: entry {key!r} records no parent ('derived_from'): "
                                 f"{name} is not a derived set, or its entry predates lineage records (run python "
                                 f"scripts/stamp_lineage.py --data {data_dir()})")
            _check_record(key, r)
            path = data_dir() / r["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path}: the parent that {key} records is missing (restore it)")
            got = content_hash(path)
            if got != r["content_sha256"]:
                raise CacheError(f"{path}: content {got[:12]}... is not the parent {key} was derived from "
                                 f"({r['content_sha256'][:12]}..., build {r['build']!r}): the parent was rebuilt after "
                                 f"{name} was made; rebuild {task}/{name} from it, or restore the parent file")
            rec[split] = parse_key(r["key"])
        records.append(rec)
    pset = {r[s][1] for r in records for s in SPLITS}
    pseeds = [r["test"][2] for r in records]
    if len(pset) != 1 or any(r["cal"][2] != r["test"][2] for r in records):
        raise CacheError(f"{task}/{name}: its cal and test files record different parents ({records})")
    pname = pset.pop()
    out = _seed_caches(task, pname, tuple(pseeds) if per_seed else (None,), per_seed, entries,
                       () if per_seed else seeds_on_disk(task, pname))
    if verbose:
        print(out.source)
    return out


def _check_record(key: str, r) -> None:
    """Refuse a ``derived_from`` record of entry ``key`` that :func:`parent_of` cannot trust: its parent must be a
    cache of the same task and split, at ``<its key>.parquet`` in the data folder (the file whose hash is checked is
    the one read), with a content hash."""
    where = f"{data_dir() / 'MANIFEST.json'}: entry {key!r}, 'derived_from'"
    fix = f"restore the record (python scripts/stamp_lineage.py --data {data_dir()} writes it for an entry without one)"
    if not isinstance(r, dict) or not all(isinstance(r.get(f), str) for f in ("key", "file", "content_sha256")):
        raise CacheError(f"{where}: want a record with 'key', 'file' and 'content_sha256' strings, got {r!r}; {fix}")
    try:
        task, _, _, split = parse_key(r["key"])
    except ValueError:
        raise CacheError(f"{where}: 'key' {r['key']!r} is not a manifest key; {fix}") from None
    want = parse_key(key)
    if (task, split) != (want[0], want[3]) or "/" in r["key"][len(task) + 1:] or r["file"] != f"{r['key']}.parquet":
        raise CacheError(f"{where}: the parent {r['key']!r} (file {r['file']!r}) is not a cache of {want[0]}'s "
                         f"{want[3]} split at <key>.parquet in {data_dir()}; {fix}")


def check_parent(derived: SeedCaches, parent: SeedCaches) -> None:
    """Refuse to pair derived set ``derived`` with ``parent`` unless ``parent``'s files are, seed by seed and split by
    split, the ones ``derived``'s manifest entries record as its parent (by content hash): a slim copy against a
    namesake of another build would confound its width with that build's training data. The error names both
    builds and the call that pairs them right."""
    fix = f"use catalogue.derived_pair({derived.task!r}, {derived.name!r}) (or catalogue.parent_of)"
    for d in derived.identity:
        for split in SPLITS:
            if d[split].derived_from is None:
                raise ValueError(f"{d[split].key} records no parent ('derived_from'): not a derived set, or a "
                                 f"manifest from before lineage records (python scripts/stamp_lineage.py)")
    want = [(d[split].derived_from, d[split]) for d in derived.identity for split in SPLITS]
    got = [p[split] for p in parent.identity for split in SPLITS]
    if len(want) != len(got) or any(r["content_sha256"] != g.content for (r, _), g in zip(want, got)):
        recorded = sorted({f"{r['key']} (build {r['build']!r})" for r, _ in want})
        given = sorted({f"{g.key} (build {g.build!r})" for g in got})
        builds = sorted({str(d.build) for _, d in want})
        raise ValueError(f"{derived.task}/{derived.name} (build {', '.join(map(repr, builds))}) was derived from "
                         f"{', '.join(recorded)}, not from {', '.join(given)}: comparing them confounds the "
                         f"derivation with another build's training; {fix}")


def derived_pair(task: str, name: str, *, verbose: bool = False) -> tuple[SeedCaches, SeedCaches]:
    """``(derived, parent)``: the caches of derived set ``task/name`` and of what it was made from
    (:func:`parent_of`), checked to pair (:func:`check_parent`)."""
    derived = load_seeds(task, name, verbose=verbose)
    parent = parent_of(task, name, verbose=verbose)
    check_parent(derived, parent)
    return derived, parent


def recipe(task: str, name: str, *, build: str | None = None, single_seed: bool = False) -> pd.DataFrame:
    """How the models of a set were trained, from ``MANIFEST.json`` (one row per model and seed): objective,
    epochs, learning rates, training examples, seed; of the files :func:`load_seeds` reads with the same
    ``build`` and ``single_seed``."""
    entries = manifest()
    seeds, _ = _choose(task, name, build, single_seed, entries)
    keys = [key_of(task, name, s, "test") for s in seeds]
    rows = []
    for key in keys:
        for m in entries.get(key, {}).get("models", []):
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
