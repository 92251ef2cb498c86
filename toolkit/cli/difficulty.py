"""``toolkit difficulty``."""

from __future__ import annotations

from toolkit.cli._common import at_least, schedule_args


def register(sub) -> None:
    p = sub.add_parser("difficulty", help="CascadeBERT difficulty labels from out-of-fold correctness",
                       description="Train k models on k-1 folds of train each and mark the examples the held-out "
                                   "model gets wrong as hard; writes <out>/difficulty.npz for `train --objective "
                                   "ranking`.")
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--folds", type=at_least(2), default=2)
    schedule_args(p, lr=1e-4)
    p.add_argument("--data-dir")
    p.set_defaults(fn=run)


def run(a) -> int:
    from pathlib import Path

    from toolkit.cli._common import output_file

    output_file(Path(a.out) / "difficulty.npz", "difficulty labels file")  # refused now, not after the k fits
    from toolkit.nn.encoder.difficulty import difficulty_labels
    from toolkit.nn.encoder.train import TrainConfig

    cfg = TrainConfig(task=a.task, model=a.model, output_dir=a.out, num_hidden_layers=a.layers, epochs=a.epochs,
                      max_steps=a.max_steps, learning_rate=a.lr, batch_size=a.batch_size, max_length=a.max_length,
                      train_limit=a.train_limit, seed=a.seed, bf16=a.bf16, data_dir=a.data_dir)
    print(f"difficulty labels: {difficulty_labels(cfg, k=a.folds)}")
    return 0
