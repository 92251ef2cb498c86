"""Which build each shipped cache belongs to, and what a derived set was made from, as recorded in its manifest
entry: ``build`` (a name of :data:`BUILDS`) on every entry, ``derived_from`` on the entries of a derived set
(:data:`DERIVED`): the parent set, its build, its cache file and that file's content hash (the sha256 that every
cache header records under ``integrity`` and every load verifies, :func:`toolkit.caches.io.content_hash`).

The zoo stamps both where it writes entries (``toolkit.zoo.build.collect_set``; ``scripts/gpu_zoo.py --merge``,
:func:`toolkit.zoo.manifest.merge_manifest`, for entries written by older code), and ``scripts/stamp_lineage.py``
backfills the entries shipped before (idempotent). :func:`toolkit.zoo.catalogue.parent_of` reads the record back and
checks the hash, so a slim copy is compared with the model it was pruned from, never with a namesake of another build.

>>> parse_key("sst2/minilm6_me-s42-test")
('sst2', 'minilm6_me', 42, 'test')
>>> parent_key("sst2/minilm6_me_w50-test")
'sst2/minilm6_me-test'

Analysis side: no torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from toolkit.caches.io import INTEGRITY_KEY, CacheError, read_header
from toolkit.zoo.ledger import cache_key, cache_key_parts

BUILDS = {
    "v1": "the first build (toolkit zoo, toolkit.zoo.recipes.SCHEDULE): one training seed on the whole training set "
          "(SST-2's MiniLM-L6: all 65,349 sentences); the unsuffixed files <set>-{cal,test}.parquet",
    "v2": "the multi-seed recipe (toolkit.zoo.recipes.SCHEDULE_V2, profile 'v2'): best epoch on cal, per-seed "
          "files <set>-s<seed>-{cal,test}.parquet",
    "cpu": "the multi-seed recipe's CPU profile (toolkit.zoo.recipes.SCHEDULE_CPU, profile 'cpu'; SST-2 cut to "
           "20,000 training sentences), per-seed files",
    "external": "not trained by the zoo (SmolLM2 caches of toolkit llm-classify / llm-collect, imported lm-eval "
                "runs): the entry's command says how it was made",
}
FIRST_BUILD = "v1"
# derived set -> (parent set, the parent's model it was made from, how). Agrees with toolkit.zoo.recipes.SLENDER (a
# test checks); the parent is always of the derived set's own build and training seed, and its cache is collected
# before the derived set's (toolkit.zoo.build.plan). The probe exits (minilm6_probe) are not listed: they sit on one
# member of the cascade, whose cache would need every cascade member trained, and nothing pairs them with it.
DERIVED = {
    "minilm6_me_w50": ("minilm6_me", "minilm6_me", "pruned to 1/2 width from, and distilled by"),
    "minilm6_me_w25": ("minilm6_me", "minilm6_me", "pruned to 1/4 width from, and distilled by"),
}


def parse_key(key: str) -> tuple[str, str, int | None, str]:
    """``(task, set, seed, split)`` of a manifest key: ``<task>/<set>-s<seed>-<split>`` (seed an int) or
    ``<task>/<set>-<split>`` (seed None)."""
    parts = cache_key_parts(key)
    if parts:
        return parts["task"], parts["set"], int(parts["seed"]), parts["split"]
    m = re.fullmatch(r"(?P<task>[^/]+)/(?P<set>.+)-(?P<split>[a-z]+)", key)
    if not m:
        raise ValueError(f"manifest key {key!r}: want <task>/<set>[-s<seed>]-<split>")
    return m["task"], m["set"], None, m["split"]


def key_of(task: str, name: str, seed: int | None, split: str) -> str:
    """Manifest key of a cache: per-seed (:func:`toolkit.zoo.ledger.cache_key`) or, with ``seed`` None, the
    single-seed file's; :func:`parse_key` reads it back."""
    return cache_key(task, name, seed, split) if seed is not None else f"{task}/{name}-{split}"


def parent_key(key: str) -> str | None:
    """Manifest key of the cache that derived cache ``key`` was made from: the parent set's file of the same task,
    training seed and split; None when ``key``'s set is not derived."""
    task, name, seed, split = parse_key(key)
    if name not in DERIVED:
        return None
    return key_of(task, DERIVED[name][0], seed, split)


def content_hash(path: str | os.PathLike) -> str:
    """The content hash a cache file's header records (``integrity.content``; every load checks the columns and
    header against it, so a file that loads has exactly this content)."""
    head = read_header(path)
    integrity = head.get(INTEGRITY_KEY)
    if not (isinstance(integrity, dict) and isinstance(integrity.get("content"), str)):
        raise CacheError(f"{path}: header records no content hash (key 'integrity'); upgrade it with "
                         f"toolkit upgrade-cache {path}")
    return integrity["content"]


def infer_build(key: str, entry: dict) -> str:
    """The build of an entry written before builds were recorded, from what it does record: its key (per-seed or
    not) and the command that made it (the runner's ``--profile``/``--device``, else its models' device)."""
    _, _, seed, _ = parse_key(key)
    cmd = str(entry.get("command") or "")
    runner = "gpu_zoo.py" in cmd
    if not (runner or cmd.startswith("toolkit zoo") or "toolkit.zoo" in cmd):
        return "external"
    if seed is None:
        if runner:
            raise ValueError(f"{key}: written by the zoo runner ({cmd!r}) but not a per-seed key; record its build "
                             f"by hand (one of {sorted(BUILDS)})")
        return FIRST_BUILD
    if not runner:
        return "v2"  # toolkit zoo's own per-seed caches: Where's default profile
    m = re.search(r"--profile[ =](\w+)", cmd)
    if m:
        return m.group(1)
    m = re.search(r"--device[ =](cpu|cuda)\b", cmd)
    if m:
        return "cpu" if m.group(1) == "cpu" else "v2"
    # the runner picks the profile from the device it found; train_meta.json records "cpu" or the GPU's name
    devices = {mm.get("device") for mm in entry.get("models", []) if mm.get("device")}
    if not devices:
        raise ValueError(f"{key}: written by the zoo runner ({cmd!r}) with neither --profile nor --device, and its "
                         f"models record no device; record its build by hand (one of {sorted(BUILDS)})")
    return "cpu" if devices == {"cpu"} else "v2"


def derived_record(key: str, entries: dict, data: str | os.PathLike) -> dict:
    """The ``derived_from`` record of derived cache ``key``: its parent's set, model, build, manifest key, file
    (relative to ``data``) and content hash, read from the parent file in ``data`` and its entry in ``entries``."""
    pkey = parent_key(key)
    if pkey is None:
        raise ValueError(f"{key}: set is not derived (derived sets: {sorted(DERIVED)})")
    path = Path(data) / f"{pkey}.parquet"
    if pkey not in entries or not path.is_file():
        raise FileNotFoundError(f"{key} is derived from {pkey}, which is not shipped ({path} and its manifest entry "
                                f"must both exist): ship the parent first")
    pset, model, how = DERIVED[parse_key(key)[1]]
    build = entries[pkey].get("build") or infer_build(pkey, entries[pkey])
    return {"set": pset, "model": model, "build": build, "key": pkey, "file": f"{pkey}.parquet",
            "content_sha256": content_hash(path), "how": how}


def stamp(entries: dict, data: str | os.PathLike, keys: Iterable[str] | None = None) -> list[str]:
    """Add ``build`` (inferred, :func:`infer_build`) where an entry of ``entries`` (a manifest's ``caches``, edited
    in place) has none, and ``derived_from`` (:func:`derived_record`) to each derived entry that has none; only
    ``keys`` (default all). Idempotent: a recorded value is kept. Raises when a derived entry's parent is of another
    build or its recorded parent hash no longer matches the parent file in ``data``. Returns the keys changed."""
    changed = []
    for key in list(entries) if keys is None else keys:
        e = entries[key]
        before = dict(e)
        if "build" not in e:  # not setdefault: infer_build raises where a build must be recorded by hand
            e["build"] = infer_build(key, e)
        if e.get("kind", "classification") == "classification" and parent_key(key) is not None:
            rec = derived_record(key, entries, data)
            if rec["build"] != e["build"]:
                raise ValueError(f"{key} (build {e['build']!r}) would derive from {rec['key']} of build "
                                 f"{rec['build']!r}: a derived set's parent is of its own build")
            have = e.get("derived_from")
            if have is not None and have.get("content_sha256") != rec["content_sha256"]:
                raise ValueError(f"{key}: its recorded parent {have.get('file')} had content "
                                 f"{str(have.get('content_sha256'))[:12]}..., the file in {data} now has "
                                 f"{rec['content_sha256'][:12]}...: the parent was rebuilt after {key} was derived; "
                                 f"rebuild {key} from it or restore the parent file")
            e.setdefault("derived_from", rec)
        if e != before:
            changed.append(key)
    return changed


def dependents(entries: dict, pkey: str) -> list[str]:
    """Keys of the entries whose ``derived_from`` names ``pkey``."""
    return [k for k, e in entries.items() if (e.get("derived_from") or {}).get("key") == pkey]
