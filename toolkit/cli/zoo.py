"""``toolkit zoo``."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("zoo", help="train the model zoo and collect the shipped caches (hours on a CPU; --tiny: minutes)",
                       description="Train each zoo member (toolkit.zoo.recipes) where its final weights are missing, "
                                   "resuming interrupted runs, then collect cal and test caches into --out and record "
                                   "them in --out/MANIFEST.json. Needs all-MiniLM-L6-v2 and all-mpnet-base-v2 "
                                   "(see README). --check rescores every cache against the manifest. --out and "
                                   "--runs are checked before any training: a file, a folder without a write bit "
                                   "(either may be a link to a folder), a read-only cache or manifest it would "
                                   "replace, --runs inside --out, "
                                   "and --tiny into the shipped data/ are refused.")
    p.add_argument("--task", nargs="+", default=["sst2", "mrpc", "rte", "cola", "agnews"])
    p.add_argument("--set", nargs="+", default=["minilm6_me", "cascade", "mpnet_me"],
                   help="minilm6_me, mpnet_me, cascade (MiniLM-L2 -> MiniLM-L6 -> MPNet), cascade_da (CascadeBERT's "
                        "difficulty-aware small members), the objective, slenderized, probe and RTE-variant sets "
                        "(toolkit.zoo.build.SETS), or t2t (text-to-text Swift/Super encoder-decoders, generation caches)")
    p.add_argument("--seed", nargs="+", type=int, default=[42], help="training seeds (caches <set>-s<seed>-<split>)")
    p.add_argument("--out", default="data",
                   help="where caches and MANIFEST.json go (a folder, made if missing; default data, the shipped "
                        "caches; --tiny needs another, e.g. runs/tiny-data)")
    p.add_argument("--runs", default="runs", help="where checkpoints go (a folder outside --out: never committed)")
    p.add_argument("--data-dir")
    p.add_argument("--tiny", action="store_true", help="same code path, a few steps and examples (CI)")
    p.add_argument("--table", action="store_true", help="print the cache tables (docs/results/caches.md) afterwards")
    p.add_argument("--check", action="store_true", help="only rescore the caches in --out against the manifest")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.zoo import check_manifest, readme_table, seed_table
    from toolkit.zoo.build import build

    check_folders(a)
    if a.check:
        problems = check_manifest(a.out)
        print("\n".join(problems) or f"every cache in {a.out}/MANIFEST.json rescored to its manifest numbers")
        return int(bool(problems))
    paths = build(tasks=a.task, sets=a.set, out=a.out, runs=a.runs, tiny=a.tiny, data_dir=a.data_dir, seeds=a.seed)
    print(f"{len(paths)} caches in {a.out}")
    if a.table:
        print(readme_table(a.out))
        print(seed_table(a.out))
    return 0


def shipped_data() -> Path:
    """The checkout's ``data/`` folder: the shipped caches and their manifest (committed; it stays small)."""
    import toolkit

    return Path(toolkit.__file__).resolve().parents[1] / "data"


def check_folders(a) -> None:
    """Refuse, before any training, what would fail or do harm only at the writes hours later, naming the path
    and the fix: with --check, an --out without MANIFEST.json; else an --out or --runs that is a file, a folder
    without a write bit or a link to either or to nothing (:func:`_container`), a task folder below --out that is not a
    writable folder, a cache or MANIFEST.json there that the atomic writer would refuse (a link, a read-only
    file: :func:`toolkit.cli._common.output_file`), --runs inside --out (checkpoints among the caches, which are
    committed) and --tiny caches written into the shipped data/ (they would replace the shipped caches and their
    manifest entries)."""
    from toolkit.caches.io import CacheError, check_regular_file
    from toolkit.cli._common import output_file
    from toolkit.zoo.build import GENERATION_SETS
    from toolkit.zoo.ledger import cache_key

    if a.check:
        try:
            check_regular_file(Path(a.out) / "MANIFEST.json", what="manifest")
        except CacheError as e:
            raise CacheError(f"{e}; --check rescores the caches a manifest lists: give --out the folder holding "
                             f"MANIFEST.json (default data)") from None
        return
    out = _container(a.out, "--out folder (caches and MANIFEST.json)")
    runs = _container(a.runs, "--runs folder (checkpoints)")
    if runs.resolve().is_relative_to(out.resolve()):
        raise CacheError(f"--runs {runs}: inside --out {out}; checkpoints (gigabytes, never committed) would lie "
                         f"among the caches: give --runs a folder outside --out (default runs)")
    if a.tiny and out.resolve().is_relative_to(shipped_data()):
        raise CacheError(f"--out {out}: in the shipped data/ folder; --tiny caches (a few steps and examples) would "
                         f"replace the shipped caches and their manifest entries: give --out another folder, e.g. "
                         f"runs/tiny-data")
    output_file(out / "MANIFEST.json", "manifest")
    for task in a.task:
        _container(out / task, f"--out folder of {task}'s caches")
        for s in a.set:
            names = [f"{task}/{s}-{split}" for split in ("cal", "test")] if s in GENERATION_SETS else \
                [cache_key(task, s, seed, split) for seed in a.seed for split in ("cal", "test")]
            for name in names:
                output_file(out / f"{name}.parquet", "cache file")


def _container(path, what: str) -> Path:
    """``path``, a folder the zoo writes into but never replaces (--out, --runs, a task folder below --out), if it
    is absent or a writable folder, or a symbolic link to one (runs/ linked to a larger disk: the writes go through
    it and nothing cuts it); else a :class:`~toolkit.caches.io.CacheError` naming it
    (:func:`toolkit.cli._common.output_folder` of the folder it leads to), as for a link to nothing."""
    import os

    from toolkit.caches.io import CacheError
    from toolkit.cli._common import output_folder

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise CacheError(f"{path}: a symbolic link to {os.path.realpath(path)}, which does not exist; make that "
                         f"folder or give --out/--runs a folder")
    output_folder(Path(os.path.realpath(path)) if path.is_symlink() else path, what)
    return path
