"""The ``toolkit`` command: ``collect``, ``train``, ``difficulty``, ``info``, ``sweep``, ``predict``, ``zoo``, and for
encoder-decoders ``train-t2t``, ``generate`` and ``route``.

Run ``toolkit COMMAND --help`` for each. Heavy imports (torch, transformers) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

EPILOG = """examples:
  toolkit collect --model all-MiniLM-L6-v2 --task sst2 --split test --out sst2-test.parquet --limit 100
  toolkit collect --model runs/sst2/minilm2/final --model runs/sst2/minilm6/final --model runs/sst2/mpnet/final \\
      --task sst2 --split cal --out data/sst2/cascade-cal.parquet
  toolkit train --task sst2 --model all-MiniLM-L6-v2 --objective joint --out runs/sst2/minilm6_me --bf16
  toolkit info data/sst2/minilm6_me-test.parquet
  toolkit sweep data/sst2/minilm6_me-test.parquet --score max_prob
  toolkit generate --model swift=Helsinki-NLP/opus-mt-en-de --model super=facebook/wmt19-en-de \
      --task wmt21_en_de --split test --out wmt-en-de.parquet
  toolkit route data/sst2/t2t-test.parquet --score energy --how mean
"""


def _collect(a) -> int:
    from .collect import collect

    cache = collect(a.model, a.task, a.split, a.out, data_dir=a.data_dir, batch_size=a.batch_size,
                    max_length=a.max_length, limit=a.limit, chunk_size=a.chunk_size, names=a.name,
                    split_seed=a.split_seed, progress=not a.quiet,
                    command="toolkit " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    if cache is not None:
        print(f"wrote {a.out}: {cache}")
    return 0


def _train(a) -> int:
    from .train import TrainConfig, train

    if a.config:
        cfg = TrainConfig.from_json(a.config)
    else:
        if not (a.task and a.model and a.out):
            raise SystemExit("toolkit train: give --config FILE, or --task, --model and --out")
        cfg = TrainConfig(task=a.task, model=a.model, output_dir=a.out, objective=a.objective,
                          num_hidden_layers=a.layers, exit_layers=a.exit_layers, epochs=a.epochs,
                          max_steps=a.max_steps, learning_rate=a.lr, head_learning_rate=a.head_lr,
                          batch_size=a.batch_size, train_limit=a.train_limit, seed=a.seed, bf16=a.bf16, teacher=a.teacher, difficulty_file=a.difficulty_file,
                          data_dir=a.data_dir, max_length=a.max_length)
    print(f"final weights: {train(cfg)}")
    return 0


def _train_t2t(a) -> int:
    from .seq2seq.train import Seq2SeqTrainConfig, train_seq2seq

    cfg = Seq2SeqTrainConfig(task=a.task, output_dir=a.out, encoder=a.encoder, decoder=a.decoder or a.encoder,
                             decoder_layers=a.decoder_layers, model=a.model, epochs=a.epochs, max_steps=a.max_steps,
                             learning_rate=a.lr, batch_size=a.batch_size, train_limit=a.train_limit, seed=a.seed,
                             bf16=a.bf16, data_dir=a.data_dir, max_length=a.max_length)
    print(f"final weights: {train_seq2seq(cfg)}")
    return 0


def _generate(a) -> int:
    from .seq2seq.collect import collect_generation

    models = {}
    for spec in a.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {spec!r}: write NAME=PATH, e.g. --model swift=runs/sst2/t2t_swift/final")
        models[name] = path
    cache = collect_generation(models, a.task, a.split, a.out, data_dir=a.data_dir, temperatures=a.temperatures,
                               batch_size=a.batch_size, max_length=a.max_length, max_new_tokens=a.max_new_tokens,
                               limit=a.limit, progress=not a.quiet,
                               command="toolkit " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    print(f"wrote {a.out}: {cache}")
    print(cache.summary().to_string())
    return 0


def _route(a) -> int:
    import pandas as pd

    from .seq2seq import compare_routers, load_generation_cache, references, route_sweep
    from .sweep import pareto_front

    cache = load_generation_cache(a.cache)
    names = list(cache.models)
    swift, super_ = a.swift or names[0], a.super or names[-1]
    print(cache)
    print(references(cache, swift, super_, a.metric).to_string())
    curve = route_sweep(cache, swift, super_, a.score, a.how, a.temperature, a.metric)
    if a.csv:
        curve.to_csv(a.csv, index=False)
    with pd.option_context("display.width", 160):
        print(f"\nPareto frontier ({a.score}, {a.how} over tokens, T={a.temperature:g}):")
        front = pareto_front(curve)
        print(front.iloc[:: max(1, len(front) // a.rows)].to_string(index=False))
        if a.compare:
            print("\nrouters compared:")
            print(compare_routers(cache, swift, super_, temperature=a.temperature, metric=a.metric).to_string())
    return 0


def _difficulty(a) -> int:
    from .train import TrainConfig, difficulty_labels

    cfg = TrainConfig(task=a.task, model=a.model, output_dir=a.out, num_hidden_layers=a.layers, epochs=a.epochs,
                      max_steps=a.max_steps, learning_rate=a.lr, batch_size=a.batch_size, max_length=a.max_length,
                      train_limit=a.train_limit, seed=a.seed, bf16=a.bf16, data_dir=a.data_dir)
    print(f"difficulty labels: {difficulty_labels(cfg, k=a.folds)}")
    return 0


def _probe(a) -> int:
    from .probe import fit_probe_exits

    print(f"probe exits: {fit_probe_exits(a.model, a.task, a.out, train_limit=a.train_limit, C=a.C, seed=a.seed, data_dir=a.data_dir)}")
    return 0


def _info(a) -> int:
    import numpy as np

    from .cache import load_cache
    from .metrics import task_metric

    c = load_cache(a.cache)
    print(c)
    metric = c.meta.get("metric", "accuracy")
    print(f"data verified against source files: {c.meta.get('data_verified')}")
    print(f"{'stage':<24}{metric if metric != 'accuracy' else 'metric':>10}{'accuracy':>10}{'GFLOPs':>10}")
    for e, s in enumerate(c.stages):
        m = task_metric(c.labels, c.predictions[:, e], metric, c.n_classes)
        print(f"{s:<24}{m:>10.4f}{c.correct[:, e].mean():>10.4f}{c.flops[:, e].mean() / 1e9:>10.3f}")
    if a.meta:
        print(json.dumps({k: v for k, v in c.meta.items()}, indent=1, default=str))
    return int(not np.isfinite(c.logits).all())


def _sweep(a) -> int:
    import pandas as pd

    from .cache import load_cache
    from .sweep import pareto_front, summarize, sweep

    c = load_cache(a.cache)
    df = sweep(c, a.score)
    print(json.dumps(summarize(df), indent=1))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(pareto_front(df).iloc[:: max(1, len(pareto_front(df)) // a.rows)].to_string(index=False))
    if a.csv:
        df.to_csv(a.csv, index=False)
    return 0


def _predict(a) -> int:
    from pathlib import Path

    from .runtime import Policy, runner_from_policy

    policy = Policy.load(a.policy)
    lines = [ln for ln in Path(a.input).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{a.input}: no texts (one example per line; sentence pairs separated by a tab)")
    parts = [ln.split("\t") for ln in lines]
    pair = all(len(p) == 2 for p in parts)
    texts_a = [p[0] for p in parts]
    texts_b = [p[1] for p in parts] if pair else None
    runner = runner_from_policy(policy)
    res = runner.run(texts_a, texts_b, batch_size=a.batch_size)
    import contextlib

    with open(a.out, "w", encoding="utf-8") if a.out else contextlib.nullcontext(sys.stdout) as out:
        print("line\tprediction\texit_stage", file=out)
        for i, (p, e) in enumerate(zip(res.prediction, res.exit_stage)):
            print(f"{i + 1}\t{int(p)}\t{int(e)}", file=out)
    print(f"{len(lines)} examples in {res.seconds:.2f} s; share exiting before the last stage "
          f"{(res.exit_stage < res.exit_stage.max(initial=0)).mean():.3f}", file=sys.stderr)
    return 0


def _zoo(a) -> int:
    from .zoo import build, check_manifest, readme_table

    if a.check:
        problems = check_manifest(a.out)
        print("\n".join(problems) or f"every cache in {a.out}/MANIFEST.json rescored to its manifest numbers")
        return int(bool(problems))
    paths = build(tasks=a.task, sets=a.set, out=a.out, runs=a.runs, tiny=a.tiny, data_dir=a.data_dir)
    print(f"{len(paths)} caches in {a.out}")
    if a.table:
        print(readme_table(a.out))
    return 0


def _schedule_args(p: argparse.ArgumentParser, lr: float, layers: bool = True) -> None:
    """Training-schedule flags shared by `train`, `difficulty` and `train-t2t`."""
    if layers:
        p.add_argument("--layers", type=int, help="truncate the encoder to its first k layers")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (linear warm-up and decay)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128, help="truncate inputs to this many tokens")
    p.add_argument("--train-limit", type=int, help="seeded subsample of the training split")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (about 2x faster on CPUs with bf16 units)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toolkit", description="Collect every exit's logits once; analyse early exit, "
                                "cascades and Swift/Super routing offline.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="run models once over a split and write a cache of every stage's logits",
                       description="Run each model once over a task split (one forward pass per batch, all exits) "
                       "and write a Parquet cache. Several --model flags make a cascade: their stages are "
                       "concatenated in the given order. Interrupted runs resume from <out>.parts/. Under "
                       "`accelerate launch` the split is sharded over processes.")
    c.add_argument("--model", action="append", required=True,
                   help="saved model folder, packaged name (all-MiniLM-L6-v2, all-mpnet-base-v2) or hub id; repeat "
                        "for a cascade, smallest first")
    c.add_argument("--name", action="append", help="short name per --model, used in stage names (default: folder)")
    c.add_argument("--task", required=True, help="sst2, mrpc, cola, rte, qnli or agnews")
    c.add_argument("--split", required=True, choices=["train", "cal", "test"],
                   help="cal: held-out part of train (fit temperatures/thresholds); test: GLUE dev set")
    c.add_argument("--data-dir", help="folder laid out like ../shared/data (default: $TOOLKIT_DATA_DIR or "
                                      "../shared/data; without one, the Hugging Face hub)")
    c.add_argument("--out", required=True, help="cache file to write (.parquet)")
    c.add_argument("--limit", type=int, help="only the first N examples of the split")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--max-length", type=int, default=128, help="truncate inputs to this many tokens")
    c.add_argument("--chunk-size", type=int, default=1024, help="examples per resumable chunk")
    c.add_argument("--split-seed", type=int, default=0, help="seed of the train/cal split")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(fn=_collect)

    t = sub.add_parser("train", help="fine-tune a multi-exit model or a cascade member",
                       description="Fine-tune on the train split (never cal or test) with the HF Trainer; resumes "
                                   "from the last checkpoint in --out. Multi-GPU: run under `accelerate launch`.")
    t.add_argument("--config", help="a TrainConfig JSON file (overrides the other flags)")
    t.add_argument("--task")
    t.add_argument("--model", help="pretrained encoder: packaged name, folder or hub id")
    t.add_argument("--out", help="run folder; final weights go to <out>/final")
    t.add_argument("--objective", default="joint", choices=["joint", "weighted", "two_stage", "distill", "ranking"])
    t.add_argument("--exit-layers", type=int, nargs="+", help="layers with an exit head (default: all)")
    _schedule_args(t, lr=5e-5)
    t.add_argument("--head-lr", type=float, help="peak learning rate of the exit heads (default: --lr)")
    t.add_argument("--teacher", help="saved model whose logits are distillation targets (objective distill)")
    t.add_argument("--difficulty-file", help=".npz from `toolkit difficulty` (objective ranking)")
    t.add_argument("--data-dir")
    t.set_defaults(fn=_train)

    d = sub.add_parser("difficulty", help="CascadeBERT difficulty labels from out-of-fold correctness",
                       description="Train k models on k-1 folds of train each and mark the examples the held-out "
                                   "model gets wrong as hard; writes <out>/difficulty.npz for `train --objective "
                                   "ranking`.")
    d.add_argument("--task", required=True)
    d.add_argument("--model", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--folds", type=int, default=2)
    _schedule_args(d, lr=1e-4)
    d.add_argument("--data-dir")
    d.set_defaults(fn=_difficulty)

    pb = sub.add_parser("probe", help="linear exit heads on a fine-tuned classifier's frozen layers (scikit-learn)",
                        description="Fit a logistic-regression exit on each layer's mean-pooled hidden states of an "
                                    "already fine-tuned classifier (train split, seeded subsample), without touching "
                                    "its encoder; save a multi-exit model that `toolkit collect` reads.")
    pb.add_argument("--model", required=True, help="fine-tuned classifier: folder or hub id")
    pb.add_argument("--task", required=True)
    pb.add_argument("--out", required=True)
    pb.add_argument("--train-limit", type=int, default=5000)
    pb.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength")
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--data-dir")
    pb.set_defaults(fn=_probe)

    i = sub.add_parser("info", help="summarise a cache: stages, metric, accuracy, FLOPs")
    i.add_argument("cache")
    i.add_argument("--meta", action="store_true", help="also print the metadata")
    i.set_defaults(fn=_info)

    s = sub.add_parser("sweep", help="exact early-exit sweep of a cache: summary and Pareto frontier")
    s.add_argument("cache")
    s.add_argument("--score", default="max_prob", choices=["max_prob", "margin", "entropy", "energy", "elang"])
    s.add_argument("--rows", type=int, default=15, help="frontier rows to print")
    s.add_argument("--csv", help="write the whole sweep to this CSV file")
    s.set_defaults(fn=_sweep)
    pr = sub.add_parser("predict", help="real early-exit / cascade inference with a saved policy",
                        description="Run a policy saved with toolkit.runtime.Policy.save (models, score, thresholds, "
                                    "temperatures) on a text file, one example per line (a tab separates sentence "
                                    "pairs). Exited examples stop computing. Writes line, predicted class, exit stage.")
    pr.add_argument("--policy", required=True, help="policy JSON")
    pr.add_argument("--input", required=True, help="UTF-8 text file, one example per line")
    pr.add_argument("--out", help="TSV to write (default: standard output)")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.set_defaults(fn=_predict)

    t2 = sub.add_parser("train-t2t", help="fine-tune an encoder-decoder text-to-text (generate the label word)",
                        description="Warm-start an EncoderDecoderModel from two encoders (or load --model, a seq2seq "
                                    "checkpoint) and fine-tune it to generate the task's label word, on the train "
                                    "split only; resumes from the last checkpoint in --out.")
    t2.add_argument("--task", required=True, help="sst2, mrpc, cola, rte or agnews")
    t2.add_argument("--encoder", default="all-MiniLM-L6-v2", help="encoder checkpoint (packaged name, folder, hub id)")
    t2.add_argument("--decoder", help="decoder checkpoint (an encoder to warm-start from; default: --encoder)")
    t2.add_argument("--decoder-layers", type=int, help="keep only the decoder checkpoint's first k layers")
    t2.add_argument("--model", help="fine-tune this seq2seq checkpoint (T5, BART ...) instead of warm-starting")
    t2.add_argument("--out", required=True, help="run folder; final weights go to <out>/final")
    _schedule_args(t2, lr=1e-4, layers=False)
    t2.add_argument("--data-dir")
    t2.set_defaults(fn=_train_t2t)

    g = sub.add_parser("generate", help="generate with Swift/Super encoder-decoders into a generation cache",
                       description="Greedy generation with each --model (Swift first), keeping per-step logit "
                                   "statistics (top-2 logits, logsumexp and entropy per temperature), outputs, "
                                   "quality (exact match for text-to-text tasks, BLEU and chrF for wmt21_en_de / "
                                   "wmt21_de_en) and generation FLOPs. Resumable from <out>.parts/.")
    g.add_argument("--model", action="append", required=True, help="NAME=PATH (folder or hub id); repeat, Swift first")
    g.add_argument("--task", required=True, help="a GLUE task (text-to-text) or wmt21_en_de / wmt21_de_en")
    g.add_argument("--split", required=True, choices=["train", "cal", "test"])
    g.add_argument("--out", required=True, help="generation cache to write (.parquet)")
    g.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    g.add_argument("--max-new-tokens", type=int, help="default: 256 for translation, label word + 2 otherwise")
    g.add_argument("--limit", type=int, help="only the first N examples")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--max-length", type=int, default=128, help="truncate sources to this many tokens")
    g.add_argument("--data-dir")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(fn=_generate)

    r = sub.add_parser("route", help="exact Swift/Super routing sweep of a generation cache",
                       description="Route an example to Super when Swift's aggregated token score says it is "
                                   "unsure; prints Swift/Super/oracle references and the quality-FLOPs frontier.")
    r.add_argument("cache")
    r.add_argument("--swift", help="default: the cache's first model")
    r.add_argument("--super", help="default: the cache's last model")
    r.add_argument("--score", default="energy", choices=["energy", "max_prob", "margin", "entropy"])
    r.add_argument("--how", default="mean", choices=["mean", "max", "min", "sum", "first"],
                   help="aggregation of token scores over the generated sequence")
    r.add_argument("--temperature", type=float, default=1.0, help="one of the cache's temperatures")
    r.add_argument("--metric", help="exact_match, bleu or chrf (default: the cache's first)")
    r.add_argument("--rows", type=int, default=15)
    r.add_argument("--csv", help="write the whole sweep to this CSV file")
    r.add_argument("--compare", action="store_true", help="also compare every score x aggregation")
    r.set_defaults(fn=_route)

    z = sub.add_parser("zoo", help="train the model zoo and collect the shipped caches (hours on a CPU; --tiny: minutes)",
                       description="Train each zoo member (toolkit.recipes) where its final weights are missing, "
                                   "resuming interrupted runs, then collect cal and test caches into --out and record "
                                   "them in --out/MANIFEST.json. Needs all-MiniLM-L6-v2 and all-mpnet-base-v2 "
                                   "(see README). --check rescores every cache against the manifest.")
    z.add_argument("--task", nargs="+", default=["sst2", "mrpc", "rte", "cola", "agnews"])
    z.add_argument("--set", nargs="+", default=["minilm6_me", "cascade", "mpnet_me"],
                   help="minilm6_me, mpnet_me, cascade (MiniLM-L2 -> MiniLM-L6 -> MPNet), the objective, slenderized "
                        "and probe sets (toolkit.zoo.SETS), or t2t (text-to-text Swift/Super encoder-decoders, "
                        "generation caches)")
    z.add_argument("--out", default="data", help="where caches and MANIFEST.json go")
    z.add_argument("--runs", default="runs", help="where checkpoints go (never committed)")
    z.add_argument("--data-dir")
    z.add_argument("--tiny", action="store_true", help="same code path, a few steps and examples (CI)")
    z.add_argument("--table", action="store_true", help="print the README table afterwards")
    z.add_argument("--check", action="store_true", help="only rescore the caches in --out against the manifest")
    z.set_defaults(fn=_zoo)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        print(f"toolkit {a.command}: error: {e}", file=sys.stderr)
        return 2
