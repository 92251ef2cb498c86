"""``toolkit collect``."""

from __future__ import annotations

import shlex
import sys

from toolkit.cli._common import non_negative_int, output_file, positive_int, token_length


def register(sub) -> None:
    p = sub.add_parser("collect", help="run models once over a split and write a cache of every stage's logits",
                       description="Run each model once over a task split (one forward pass per batch, all exits) "
                       "and write a Parquet cache. Several --model flags make a cascade: their stages are "
                       "concatenated in the given order. Interrupted runs resume from <out>.parts/. Under "
                       "`accelerate launch` the split is sharded over processes.")
    p.add_argument("--model", action="append", required=True,
                   help="saved model folder, packaged name (all-MiniLM-L6-v2, all-mpnet-base-v2) or hub id; repeat "
                        "for a cascade, smallest first")
    p.add_argument("--name", action="append", help="short name per --model, used in stage names (default: folder)")
    p.add_argument("--task", required=True, help="sst2, mrpc, cola, rte, qnli or agnews")
    p.add_argument("--split", required=True, choices=["train", "cal", "test"],
                   help="cal: held-out part of train (fit temperatures/thresholds); test: GLUE dev set")
    p.add_argument("--data-dir", help="folder laid out like ../shared/data (default: $TOOLKIT_DATA_DIR or "
                                      "../shared/data; without one, the Hugging Face hub)")
    p.add_argument("--out", required=True, help="cache file to write (.parquet)")
    p.add_argument("--limit", type=positive_int, help="only the first N examples of the split")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-length", type=token_length, default=128, help="truncate inputs to this many tokens")
    p.add_argument("--chunk-size", type=positive_int, default=1024, help="examples per resumable chunk")
    p.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the train/cal split")
    p.add_argument("--allow-random-heads", action="store_true",
                   help="collect even if a checkpoint has no trained classifier/exit heads (they are initialised "
                        "at random: the cache then measures an untrained head, and records that)")
    p.add_argument("--restart", action="store_true",
                   help="discard <out>.parts of a different collection (other weights, data or settings) instead "
                        "of refusing to resume from them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=run)


def run(a) -> int:
    output_file(a.out, "--out cache")  # a link or read-only file is refused now, not after the collection
    from toolkit.nn.encoder.collect import collect

    cache = collect(a.model, a.task, a.split, a.out, data_dir=a.data_dir, batch_size=a.batch_size,
                    max_length=a.max_length, limit=a.limit, chunk_size=a.chunk_size, names=a.name,
                    split_seed=a.split_seed, progress=not a.quiet, allow_random_heads=a.allow_random_heads,
                    restart=a.restart,
                    command="toolkit " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    if cache is not None:
        print(f"wrote {a.out}: {cache}")
    return 0
