"""``toolkit upgrade-cache``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("upgrade-cache", help="rewrite caches from before integrity checks in the verified format",
                       description="Rewrite classification, generation or LLM token caches written before integrity checks (schema 1, "
                                   "no checksums) with Parquet page checksums and a content hash, in place. The "
                                   "numbers are unchanged (checked before each file is replaced); current files are "
                                   "verified and left alone.")
    p.add_argument("caches", nargs="+", help="cache files (.parquet)")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.caches.upgrade import upgrade_cache

    for path in a.caches:
        print(f"{path}: {'upgraded' if upgrade_cache(path) else 'already current (verified)'}")
    return 0
