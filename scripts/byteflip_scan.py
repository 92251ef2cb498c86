"""Flip one byte of a cache at many offsets and load each copy: every flip must be refused (CacheError) or give
exactly the same numbers. Prints, per cache kind, how many flips were refused / identical / different.

    python scripts/byteflip_scan.py data/**/*.parquet --flips 150 --seed 0

Exit status 1 if any flip loaded with different numbers. Used on the shipped caches (data/) and in the tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from toolkit.analysis.cache import load_cache
from toolkit.analysis.cache_io import CacheError, read_header
from toolkit.analysis.generation_cache import load_generation_cache


def fingerprint(c) -> tuple:
    """Everything a loaded cache exposes, as bytes and JSON (equal fingerprints: identical caches)."""
    meta = json.dumps({k: v for k, v in c.meta.items() if k != "path"}, sort_keys=True, default=str)
    if hasattr(c, "logits"):
        arrays = [c.logits, c.labels, c.flops, c.example_ids.astype(str), c.n_tokens]
        extra = json.dumps(c.stage_info, sort_keys=True, default=str)
    else:
        arrays = [c.example_ids.astype(str), c.labels, np.asarray(c.temperatures)]
        for name, g in c.models.items():
            arrays += [np.asarray([name]), g.tokens, g.offsets, g.stats, g.text.astype(str), g.n_src, g.flops]
            arrays += [q for _, q in sorted(g.quality.items())] + [q for _, q in sorted(g.qstats.items())]
        extra = json.dumps({n: g.info for n, g in c.models.items()}, sort_keys=True, default=str)
    return tuple(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode() + str(a.shape).encode()
                 for a in arrays) + (meta, extra)


def loader_for(path: Path):
    return load_generation_cache if read_header(path).get("kind") == "generation" else load_cache


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
            kind = read_header(path).get("kind", "classification")
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
