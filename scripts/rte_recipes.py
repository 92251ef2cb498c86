"""RTE investigation (issue 17): why multi-exit MiniLM-L6 stays at chance, one recipe change at a time.

Trains each variant below on the RTE train carve with per-epoch evaluation on ``cal`` (the held-out train carve,
249 pairs), keeps the best epoch, and prints per-exit accuracy on ``cal`` and ``test`` (GLUE dev, 277 pairs). CPU:
about a minute per epoch with 2 threads. Resumable (every run is an ordinary ``toolkit.nn.train`` run folder).

    nice -n 19 python scripts/rte_recipes.py --runs runs/rte-recipes [--only NAME ...] > runs/rte-recipes.log
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

BASE = dict(task="rte", model="all-MiniLM-L6-v2", objective="joint", learning_rate=1e-4, epochs=4.0,
            batch_size=32, max_length=128, seed=42, select_on="cal", bf16=True)
VARIANTS = {  # most informative first; every run saves a checkpoint each epoch (70 steps) so it resumes
    "v1": {},                                            # the shipped recipe (joint, 1e-4, 4 epochs, mean pooling)
    "lr3e-5_8ep": dict(learning_rate=3e-5, epochs=8.0, patience=3),
    "final_only_lr5e-5_8ep": dict(exit_layers=[6], learning_rate=5e-5, epochs=8.0, patience=3),
    "lr3e-5_head1e-3_8ep": dict(learning_rate=3e-5, head_learning_rate=1e-3, epochs=8.0, patience=3),
    "cls_lr5e-5_8ep": dict(pooling="cls", learning_rate=5e-5, epochs=8.0, patience=3),
    "len256_lr5e-5_8ep": dict(max_length=256, learning_rate=5e-5, epochs=8.0, patience=3),
    "weighted_lr5e-5_8ep": dict(objective="weighted", learning_rate=5e-5, epochs=8.0, patience=3),
}


def evaluate(final: Path, split: str) -> list[float]:
    from transformers import AutoTokenizer

    from toolkit.data import load_split
    from toolkit.nn.inference import predict_logits
    from toolkit.nn.models import load_model

    frame = load_split("rte", split).frame
    logits, _ = predict_logits(load_model(final), AutoTokenizer.from_pretrained(final), frame, batch_size=64,
                               max_length=json.loads((final / "train_meta.json").read_text())["config"]["max_length"])
    return [float((logits[:, e].argmax(-1) == frame["label"].to_numpy()).mean()) for e in range(logits.shape[1])]


def main() -> None:
    import torch

    from toolkit.nn.train import TrainConfig, train

    p = argparse.ArgumentParser()
    p.add_argument("--runs", default="runs/rte-recipes")
    p.add_argument("--only", nargs="*")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name, over in VARIANTS.items():
        if a.only and name not in a.only:
            continue
        t0 = time.time()
        final = train(TrainConfig(**{**BASE, **over, "output_dir": str(Path(a.runs) / name),
                                     "token_cache": str(Path(a.runs) / "tokens"), "save_steps": 70}))
        meta = json.loads((final / "train_meta.json").read_text())
        curve = [(r["epoch"], round(r["selection"], 3), round(r["train_loss"] or 0, 3)) for r in meta["logs"]["curve"]]
        row = {"variant": name, "best_epoch": meta["logs"]["best"]["epoch"], "curve(epoch,cal_acc,loss)": curve,
               "cal": [round(x, 3) for x in evaluate(final, "cal")],
               "test": [round(x, 3) for x in evaluate(final, "test")], "wall_s": round(time.time() - t0)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
