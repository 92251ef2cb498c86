"""``toolkit llm-classify``."""

from __future__ import annotations

from toolkit.cli._common import non_negative_int, positive_int
from toolkit.cli.llm_collect import command_text


def register(sub) -> None:
    q = sub.add_parser("llm-classify", help="a causal LM as a multi-exit classifier: zero-shot and probe caches",
                       description="Every layer's state at the last prompt position of a label prompt set "
                                   "(sst2_label, agnews_topic); zero-shot exits score each class by its label words' "
                                   "first-token logits through the logit lens or tuned exits; probe exits are "
                                   "logistic regressions fitted on the train split's states. Writes one ordinary "
                                   "classification cache per family, <out-dir>/<prefix>_<family>-<split>.parquet.")
    q.add_argument("--model", default="SmolLM2-135M-Instruct")
    q.add_argument("--prompt-set", required=True, help="sst2_label or agnews_topic")
    q.add_argument("--split", action="append", required=True, choices=["cal", "test"], help="repeat for both")
    q.add_argument("--limit", type=positive_int, action="append", help="per --split, the first N examples")
    q.add_argument("--exits", action="append", help="'lens' or tuned-exits NAME=FOLDER; repeat (default: lens)")
    q.add_argument("--probe-train", type=non_negative_int, default=500,
                   help="train-split prompts for the probe exits (0: no probes)")
    q.add_argument("--layers", type=positive_int, nargs="+", help="exit layers (default: all)")
    q.add_argument("--states-dir", default="runs/llm/states", help="where the (resumable) states are kept")
    q.add_argument("--out-dir", required=True)
    q.add_argument("--prefix", default="smollm2")
    q.add_argument("--data-dir")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(fn=run)


def run(a) -> int:
    from pathlib import Path

    from toolkit.caches.classification import save_cache
    from toolkit.cli._common import output_file
    from toolkit.nn.causal.collect import exit_family, llm_classifier_caches, prompt_states
    from toolkit.nn.causal.models import load_causal_lm

    limits = a.limit or [None] * len(a.split)
    if len(limits) != len(a.split):
        raise ValueError(f"give one --limit per --split ({len(a.split)}), or none")
    families = [f"zs_{exit_family(e)}" for e in a.exits or ["lens"]] + (["probe"] if a.probe_train else [])
    outs = {(split, family): output_file(Path(a.out_dir) / f"{a.prefix}_{family}-{split}.parquet", "cache file")
            for split in a.split for family in families}  # every cache refused now, not after the states
    lm = load_causal_lm(a.model)
    states_dir = Path(a.states_dir)
    kw = {"data_dir": a.data_dir, "progress": not a.quiet}
    train = (prompt_states(lm, a.prompt_set, "train", states_dir / f"{a.prompt_set}-train.npz",
                           limit=a.probe_train, **kw) if a.probe_train else None)
    for split, limit in zip(a.split, limits):
        st = prompt_states(lm, a.prompt_set, split, states_dir / f"{a.prompt_set}-{split}.npz", limit=limit, **kw)
        caches = llm_classifier_caches(lm, a.prompt_set, st, exits=a.exits or ["lens"], train_states=train,
                                       layers=a.layers, command=command_text())
        for family, cache in caches.items():
            out = outs[split, family]
            save_cache(cache, out)
            acc = cache.correct.mean(0)
            print(f"wrote {out}: {cache}; accuracy per stage " + " ".join(f"{x:.3f}" for x in acc))
    return 0
