"""Argument groups shared by several commands."""

from __future__ import annotations

import argparse


def schedule_args(p: argparse.ArgumentParser, lr: float, layers: bool = True) -> None:
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
