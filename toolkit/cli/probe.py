"""``toolkit probe``."""

from __future__ import annotations

from toolkit.cli._common import non_negative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("probe", help="linear exit heads on a frozen encoder's layers (scikit-learn)",
                        description="Fit a logistic-regression exit on each layer's mean-pooled hidden states of a "
                                    "frozen encoder (a fine-tuned classifier or a plain sentence encoder; train "
                                    "split, seeded subsample), without touching it; save a multi-exit model that "
                                    "`toolkit collect` reads.")
    p.add_argument("--model", required=True,
                   help="fine-tuned classifier or plain encoder: folder, packaged name (all-MiniLM-L6-v2) or hub id")
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True, help="model folder to write (replaced as a whole)")
    p.add_argument("--train-limit", type=positive_int, default=5000)
    p.add_argument("--C", type=positive_float, default=1.0, help="inverse L2 regularisation strength")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--data-dir")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.cli._common import output_folder

    output_folder(a.out, "--out model folder")  # refused now, not after the fit (the save replaces the folder)
    from toolkit.nn.encoder.probe import fit_probe_exits


    print(f"probe exits: {fit_probe_exits(a.model, a.task, a.out, train_limit=a.train_limit, C=a.C, seed=a.seed, data_dir=a.data_dir)}")
    return 0
