"""Flip one byte of a cache at many offsets and load each copy: every flip must be refused (CacheError) or give
exactly the same numbers. Prints, per cache kind, how many flips were refused / identical / different.

    python scripts/byteflip_scan.py data/**/*.parquet --flips 150 --seed 0

Exit status 1 if any flip loaded with different numbers. Used on the shipped caches (data/) and in the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from toolkit.caches.io import CacheError
from toolkit.caches.kinds import kind_of


def _parts(x, out: list) -> None:
    """Arrays as bytes (with dtype and shape), containers walked in key order, the rest as JSON."""
    if isinstance(x, np.ndarray):
        a = x.astype(str) if x.dtype.kind in "OU" else x
        out.append(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode() + str(a.shape).encode())
    elif isinstance(x, dict):
        for k in sorted(x, key=str):
            if k != "path":
                out.append(str(k).encode())
                _parts(x[k], out)
    elif dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            out.append(f.name.encode())
            _parts(getattr(x, f.name), out)
    else:
        out.append(json.dumps(x, sort_keys=True, default=str).encode())


def fingerprint(c) -> tuple:
    """Everything a loaded cache of any kind exposes (every field of its dataclass, nested models included), as
    bytes (equal fingerprints: identical caches)."""
    out: list = []
    _parts(c, out)
    return tuple(out)


def loader_for(path: Path):
    return kind_of(path).loader()


def scan(path: Path, flips: int, rng: np.random.Generator, workdir: Path) -> Counter:
    load = loader_for(path)
    ref = fingerprint(load(path, verify_data=False))
    raw = path.read_bytes()
    out = Counter()
    bad = workdir / path.name
    for off in rng.choice(len(raw), size=min(flips, len(raw)), replace=False):
        b = bytearray(raw)
        b[off] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(b))
        try:
            got = fingerprint(load(bad, verify_data=False))
        except CacheError:
            out["refused"] += 1
            continue
        if got == ref:
            out["identical"] += 1
        else:
            out["different"] += 1
            print(f"DIFFERENT: {path} offset {off}", file=sys.stderr)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("caches", nargs="+", type=Path)
    p.add_argument("--flips", type=int, default=150, help="random offsets per file")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    totals: dict[str, Counter] = {}
    work = Path(tempfile.mkdtemp(prefix="byteflip-"))
    try:
        for path in a.caches:
            kind = kind_of(path).name
            c = scan(path, a.flips, rng, work)
            totals.setdefault(kind, Counter()).update(c)
            totals[kind]["files"] += 1
            print(f"{path}: {dict(c)}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for kind, c in totals.items():
        print(f"{kind}: {c['files']} files, {sum(c[k] for k in ('refused', 'identical', 'different'))} flips: "
              f"refused {c['refused']}, identical {c['identical']}, different {c['different']}")
    return int(any(c["different"] for c in totals.values()))


if __name__ == "__main__":
    sys.exit(main())
