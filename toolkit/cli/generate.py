"""``toolkit generate``."""

from __future__ import annotations

import shlex
import sys

from toolkit.cli._common import output_file, positive_float, positive_int, token_length


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate with Swift/Super encoder-decoders into a generation cache",
                       description="Greedy generation with each --model (Swift first), keeping per-step logit "
                                   "statistics (top-2 logits, logsumexp and entropy per temperature), outputs, "
                                   "quality (exact match for text-to-text tasks, BLEU and chrF for wmt21_en_de / "
                                   "wmt21_de_en) and generation FLOPs. Resumable from <out>.parts/.")
    p.add_argument("--model", action="append", required=True, help="NAME=PATH (folder or hub id); repeat, Swift first")
    p.add_argument("--task", required=True, help="a GLUE task (text-to-text) or wmt21_en_de / wmt21_de_en")
    p.add_argument("--split", required=True, choices=["train", "cal", "test"])
    p.add_argument("--out", required=True, help="generation cache to write (.parquet)")
    p.add_argument("--temperatures", type=positive_float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    p.add_argument("--max-new-tokens", type=positive_int, help="default: 256 for translation, label word + 2 otherwise")
    p.add_argument("--limit", type=positive_int, help="only the first N examples")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-length", type=token_length, default=128, help="truncate sources to this many tokens")
    p.add_argument("--restart", action="store_true",
                   help="discard <out>.parts of a different run instead of refusing to resume from them")
    p.add_argument("--data-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=run)


def run(a) -> int:
    output_file(a.out, "--out cache")  # a link or read-only file is refused now, not after the generation
    from toolkit.nn.seq2seq.generate import collect_generation

    models = {}
    for spec in a.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {spec!r}: write NAME=PATH, e.g. --model swift=runs/sst2/t2t_swift/final")
        models[name] = path
    cache = collect_generation(models, a.task, a.split, a.out, data_dir=a.data_dir, temperatures=a.temperatures,
                               batch_size=a.batch_size, max_length=a.max_length, max_new_tokens=a.max_new_tokens,
                               limit=a.limit, progress=not a.quiet, restart=a.restart,
                               command="toolkit " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    print(f"wrote {a.out}: {cache}")
    print(cache.summary().to_string())
    return 0
