"""``toolkit zoo``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("zoo", help="train the model zoo and collect the shipped caches (hours on a CPU; --tiny: minutes)",
                       description="Train each zoo member (toolkit.zoo.recipes) where its final weights are missing, "
                                   "resuming interrupted runs, then collect cal and test caches into --out and record "
                                   "them in --out/MANIFEST.json. Needs all-MiniLM-L6-v2 and all-mpnet-base-v2 "
                                   "(see README). --check rescores every cache against the manifest.")
    p.add_argument("--task", nargs="+", default=["sst2", "mrpc", "rte", "cola", "agnews"])
    p.add_argument("--set", nargs="+", default=["minilm6_me", "cascade", "mpnet_me"],
                   help="minilm6_me, mpnet_me, cascade (MiniLM-L2 -> MiniLM-L6 -> MPNet), cascade_da (CascadeBERT's "
                        "difficulty-aware small members), the objective, slenderized, probe and RTE-variant sets "
                        "(toolkit.zoo.build.SETS), or t2t (text-to-text Swift/Super encoder-decoders, generation caches)")
    p.add_argument("--seed", nargs="+", type=int, default=[42], help="training seeds (caches <set>-s<seed>-<split>)")
    p.add_argument("--out", default="data", help="where caches and MANIFEST.json go")
    p.add_argument("--runs", default="runs", help="where checkpoints go (never committed)")
    p.add_argument("--data-dir")
    p.add_argument("--tiny", action="store_true", help="same code path, a few steps and examples (CI)")
    p.add_argument("--table", action="store_true", help="print the cache tables (docs/results/caches.md) afterwards")
    p.add_argument("--check", action="store_true", help="only rescore the caches in --out against the manifest")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.zoo import check_manifest, readme_table, seed_table
    from toolkit.zoo.build import build

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
