"""``toolkit llm-train-exits``."""

from __future__ import annotations

import shlex
import sys

from toolkit.cli._common import non_negative_int, positive_float, positive_int, probability


def register(sub) -> None:
    p = sub.add_parser("llm-train-exits", help="train tuned-lens exits (one affine translator per layer) for a causal LM",
                       description="Train one affine translator per layer of a frozen causal LM (tuned-lens form: "
                                   "final norm and LM head applied to h + A h + b) to match the final layer's "
                                   "next-token distribution (KL), on chat prompts built from train-split examples "
                                   "followed by the model's own greedy answers. Optional ridge start. Resumable: "
                                   "rerun the same command. Writes translators.safetensors and exits.json to --out.")
    p.add_argument("--model", default="SmolLM2-135M-Instruct", help="causal LM: packaged name, folder or hub id")
    p.add_argument("--out", required=True, help="folder for the exits (and the resumable checkpoint)")
    p.add_argument("--prompt-set", action="append", help="prompt sets whose train-split prompts are the text "
                   "(default: agnews_headline and sst2_sentiment)")
    p.add_argument("--prompts", type=positive_int, default=200, help="train-split prompts per prompt set")
    p.add_argument("--max-tokens", type=positive_int, default=20000, help="positions trained in the KL stage")
    p.add_argument("--batch-tokens", type=positive_int, default=512, help="positions per optimizer step")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--init", choices=["ridge", "identity"], default="ridge")
    p.add_argument("--ridge-tokens", type=positive_int, help="positions for the ridge start (default: all train)")
    p.add_argument("--holdout", type=probability, default=0.1, help="share of prompts held out for evaluation")
    p.add_argument("--select", choices=["per_layer", "last"], default="per_layer",
                   help="per_layer: each layer keeps its trained or its start translator, whichever has the lower "
                        "held-out KL; last: the trained ones")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--fp32", action="store_true", help="train in float32 (default: bf16 autocast)")
    p.add_argument("--data-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.nn.causal.exits import train_tuned_exits

    exits = train_tuned_exits(a.model, a.out, prompt_sets=a.prompt_set or ("agnews_headline", "sst2_sentiment"),
                              n_prompts=a.prompts, max_tokens=a.max_tokens, batch_tokens=a.batch_tokens, lr=a.lr,
                              weight_decay=a.weight_decay, init=a.init, ridge_tokens=a.ridge_tokens,
                              holdout=a.holdout, seed=a.seed, bf16=not a.fp32, data_dir=a.data_dir, select=a.select,
                              progress=not a.quiet,
                              command="toolkit " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    held = exits.info["heldout"]
    print(f"wrote {a.out}: {exits.info['training']['positions_trained']} positions in "
          f"{exits.info['training']['wall_s']:.0f} s")
    chosen = exits.info["training"].get("selected") or ["trained"] * len(held["end"]["layers"])
    print("layer  KL lens -> start -> trained    agreement lens -> start -> trained   kept")
    for i, layer in enumerate(held["end"]["layers"]):
        print(f"{layer:5d}  {held['lens']['kl'][i]:7.3f} {held['start']['kl'][i]:7.3f} {held['end']['kl'][i]:7.3f}"
              f"    {held['lens']['agreement'][i]:.3f} {held['start']['agreement'][i]:.3f} "
              f"{held['end']['agreement'][i]:.3f}   {chosen[i]}")
    return 0
