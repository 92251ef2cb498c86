"""``toolkit upgrade-cache``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("upgrade-cache", help="rewrite caches from before integrity checks in the verified format",
                       description="Rewrite classification, generation or LLM token caches written before integrity checks (schema 1, "
                                   "no checksums) with Parquet page checksums and a content hash, in place. The "
                                   "numbers are unchanged (checked before each file is replaced); current files are "
                                   "verified and left alone. Every file is checked before any is touched: each must "
                                   "be a cache file (no symbolic link; give its target) given once and, if it is "
                                   "rewritten, in a folder with a write bit (the new copy is written beside it, then "
                                   "renamed over it: a failure leaves the old file as it was); a read-only cache "
                                   "stays read-only.")
    p.add_argument("caches", nargs="+", help="cache files (.parquet)")
    p.add_argument("--add-weights-fingerprint", action="store_true",
                   help="LLM token caches collected before fingerprints were recorded: load the model the header "
                        "names, check that it reproduces the cache (model record; the first prompts' tokens exactly, "
                        "final-layer statistics within float16 rounding), then record its weights' sha256, marked as "
                        "added after collection (needs torch and the data folder)")
    p.add_argument("--check-prompts", type=int, default=3,
                   help="--add-weights-fingerprint: prompts decoded again to check the model (default 3, 1..1000)")
    p.add_argument("--data-dir", help="--add-weights-fingerprint: the data folder (default: TOOLKIT_DATA_DIR or "
                                      "../shared/data)")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.caches.upgrade import upgrade_cache

    _check_all(a)
    for path in a.caches:
        print(f"{path}: {'upgraded' if upgrade_cache(path) else 'already current (verified)'}")
        if a.add_weights_fingerprint:
            from toolkit.caches.io import read_header
            from toolkit.nn.causal.collect import fingerprint_token_cache

            had = read_header(path)["model"].get("weights_sha256")
            sha = fingerprint_token_cache(path, check_prompts=a.check_prompts, data_dir=a.data_dir)
            print(f"{path}: weights fingerprint {sha[:12]}... " + ("already recorded" if had else
                  f"added (the model reproduced its first {a.check_prompts} prompts; recorded as added after "
                  f"collection)"))
    return 0


def _check_all(a) -> None:
    """Every refusal before any file is touched or a model loads, each naming the file and the fix: the options,
    each file (:func:`toolkit.caches.upgrade.check_upgradable`: a link, not a cache, an unwritable folder ...), a
    file given twice, and with --add-weights-fingerprint a cache that is no token cache or a missing --data-dir."""
    import os

    from toolkit.caches.upgrade import check_upgradable

    if not 1 <= a.check_prompts <= 1000:
        raise ValueError(f"--check-prompts must lie in 1..1000, got {a.check_prompts}")
    if a.add_weights_fingerprint and a.data_dir is not None and not os.path.isdir(a.data_dir):
        raise ValueError(f"--data-dir {a.data_dir}: not a folder; give the data folder (holding the task's "
                         f"splits), or leave it out for TOOLKIT_DATA_DIR or ../shared/data")
    seen: dict[tuple[int, int], str] = {}
    for given in a.caches:
        path, head, _ = check_upgradable(given, adding_fingerprint=a.add_weights_fingerprint)
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in seen:
            raise ValueError(f"{given}: the same file as {seen[st.st_dev, st.st_ino]}, given twice; each cache is "
                             f"upgraded in place once: give it once")
        seen[st.st_dev, st.st_ino] = given
        if a.add_weights_fingerprint and head.get("kind") != "llm_tokens":
            raise ValueError(f"{given}: not an LLM token cache; --add-weights-fingerprint applies to LLM token "
                             f"caches only (classification caches record fingerprints when collected): leave "
                             f"it out for this file")
