"""``toolkit train``."""

from __future__ import annotations

from toolkit.cli._common import positive_float, positive_int, schedule_args


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a multi-exit model or a cascade member",
                       description="Fine-tune on the train split (never cal or test) with the HF Trainer; resumes "
                                   "from the last checkpoint in --out. Multi-GPU: run under `accelerate launch`.")
    p.add_argument("--config", help="a TrainConfig JSON file (overrides the other flags)")
    p.add_argument("--task")
    p.add_argument("--model", help="pretrained encoder: packaged name, folder or hub id")
    p.add_argument("--out", help="run folder; final weights go to <out>/final")
    p.add_argument("--objective", default="joint", choices=["joint", "weighted", "two_stage", "distill", "ranking"])
    p.add_argument("--exit-layers", type=positive_int, nargs="+", help="layers with an exit head (default: all)")
    schedule_args(p, lr=5e-5)
    p.add_argument("--head-lr", type=positive_float, help="peak learning rate of the exit heads (default: --lr)")
    p.add_argument("--teacher", help="saved model whose logits are distillation targets (objective distill)")
    p.add_argument("--difficulty-file", help=".npz from `toolkit difficulty` (objective ranking)")
    p.add_argument("--data-dir")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.nn.encoder.train import TrainConfig, train

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
