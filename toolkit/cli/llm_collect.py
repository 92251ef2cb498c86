"""``toolkit llm-collect``."""

from __future__ import annotations

import shlex
import sys

from toolkit.cli._common import output_file, positive_float, positive_int


def command_text() -> str:
    return "toolkit " + " ".join(shlex.quote(x) for x in sys.argv[1:])


def register(sub) -> None:
    p = sub.add_parser("llm-collect", help="per-token exit cache of a causal LM's greedy continuations",
                       description="Decode each prompt of a prompt set greedily (batch 1, float32) and keep, for "
                                   "every generated token and every layer, each exit family's top-1 id and logit "
                                   "statistics (top-2 logits, logsumexp and entropy per temperature). Resumable from "
                                   "<out>.parts/.")
    p.add_argument("--model", default="SmolLM2-135M-Instruct", help="causal LM: packaged name, folder or hub id")
    p.add_argument("--prompt-set", required=True, help="agnews_headline, sst2_sentiment or qnli_answer")
    p.add_argument("--split", required=True, choices=["train", "cal", "test"])
    p.add_argument("--out", required=True, help="cache file to write (.parquet)")
    p.add_argument("--exits", action="append", help="'lens' or a tuned-exits folder (NAME=FOLDER); repeat "
                                                    "(default: lens)")
    p.add_argument("--limit", type=positive_int, help="only the first N examples of the split")
    p.add_argument("--max-new-tokens", type=positive_int, help="default: the prompt set's")
    p.add_argument("--temperatures", type=positive_float, nargs="+", default=[1.0])
    p.add_argument("--stats-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--chunk-size", type=positive_int, default=8, help="prompts per resumable chunk")
    p.add_argument("--keep-parts", action="store_true", help="keep the parts (the decoded states) afterwards")
    p.add_argument("--parts-dir", help="folder for the resumable parts (default: beside --out)")
    p.add_argument("--restart", action="store_true", help="discard parts left by a run with other weights, data "
                   "or settings (default: refuse them)")
    p.add_argument("--data-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=run)


def run(a) -> int:
    output_file(a.out, "--out cache")  # a link or read-only file is refused now, not after the collection
    from toolkit.nn.causal.collect import collect_llm_tokens

    cache = collect_llm_tokens(a.model, a.prompt_set, a.split, a.out, exits=a.exits or ["lens"], limit=a.limit,
                               max_new_tokens=a.max_new_tokens, temperatures=a.temperatures,
                               stats_dtype=a.stats_dtype, chunk_size=a.chunk_size, data_dir=a.data_dir,
                               keep_parts=a.keep_parts, parts_dir=a.parts_dir, restart=a.restart, progress=not a.quiet,
                               command=command_text())
    print(f"wrote {a.out}: {cache}; quality {cache.meta['quality']}")
    for f in cache.family_names:
        agree = cache.agreement(f).mean(0)
        print(f"{f}: agreement with the final token per layer " + " ".join(f"{x:.2f}" for x in agree))
    return 0
