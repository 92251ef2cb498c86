"""``toolkit upgrade-cache``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("upgrade-cache", help="rewrite caches from before integrity checks in the verified format",
                       description="Rewrite classification, generation or LLM token caches written before integrity checks (schema 1, "
                                   "no checksums) with Parquet page checksums and a content hash, in place. The "
                                   "numbers are unchanged (checked before each file is replaced); current files are "
                                   "verified and left alone.")
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
    from toolkit.caches.io import read_header
    from toolkit.caches.upgrade import upgrade_cache

    if not 1 <= a.check_prompts <= 1000:
        raise ValueError(f"--check-prompts must lie in 1..1000, got {a.check_prompts}")
    if a.add_weights_fingerprint:
        not_tokens = [p for p in a.caches if read_header(p).get("kind") != "llm_tokens"]
        if not_tokens:
            raise ValueError(f"{not_tokens[0]}: not an LLM token cache; --add-weights-fingerprint applies to LLM "
                             f"token caches only (classification caches record fingerprints when collected)")
    for path in a.caches:
        print(f"{path}: {'upgraded' if upgrade_cache(path) else 'already current (verified)'}")
        if a.add_weights_fingerprint:
            from toolkit.nn.causal.collect import fingerprint_token_cache

            had = read_header(path)["model"].get("weights_sha256")
            sha = fingerprint_token_cache(path, check_prompts=a.check_prompts, data_dir=a.data_dir)
            print(f"{path}: weights fingerprint {sha[:12]}... " + ("already recorded" if had else
                  f"added (the model reproduced its first {a.check_prompts} prompts; recorded as added after "
                  f"collection)"))
    return 0
