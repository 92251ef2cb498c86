"""RTE investigation (issue 17): why multi-exit MiniLM-L6 stays at chance, one recipe change at a time.

Trains each variant below on the RTE train carve with per-epoch evaluation on ``cal`` (the held-out train carve,
249 pairs), keeps the best epoch, and prints per-exit accuracy on ``cal`` and ``test`` (GLUE dev, 277 pairs). CPU:
a few minutes per epoch with 2 free threads (far more on a shared machine). Resumable (every run is an ordinary ``toolkit.nn.encoder.train`` run folder).

    nice -n 19 python scripts/rte_recipes.py --runs runs/rte-recipes [--only NAME ...] > runs/rte-recipes.log
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# the v1 recipe as shipped (joint, 1e-4, 4 epochs, mean pooling), with per-epoch evaluation to see its curve
V1 = dict(task="rte", model="all-MiniLM-L6-v2", objective="joint", learning_rate=1e-4, epochs=4.0, batch_size=32,
          max_length=128, seed=42, select_on="cal", bf16=True)
# then the v2 recipe (10 epochs, best on cal, patience 3) and toolkit.zoo.recipes.RTE_VARIANTS, one change each
ORDER = ("v1", "minilm6_me", "minilm6_me_lr3e5", "minilm6_me_final", "minilm6_me_lr3e5_h1e3", "minilm6_me_cls",
         "minilm6_me_len256", "minilm6_me_weighted", "minilm6_me_lr5e5_w10")


def config(name: str, runs: str):
    from toolkit.nn.encoder.train import TrainConfig
    from toolkit.zoo.recipes import recipe

    common = {"output_dir": str(Path(runs) / name), "token_cache": str(Path(runs) / "tokens"), "save_steps": 70}
    return TrainConfig(**V1, **common) if name == "v1" else recipe("rte", name, **common)


def evaluate(final: Path, split: str) -> list[float]:
    from transformers import AutoTokenizer

    from toolkit.data.tasks import load_split
    from toolkit.nn.common.inference import predict_logits
    from toolkit.nn.encoder.models import load_model

    frame = load_split("rte", split).frame
    logits, _ = predict_logits(load_model(final), AutoTokenizer.from_pretrained(final), frame, batch_size=64,
                               max_length=json.loads((final / "train_meta.json").read_text())["config"]["max_length"])
    return [float((logits[:, e].argmax(-1) == frame["label"].to_numpy()).mean()) for e in range(logits.shape[1])]


def main() -> None:
    import torch

    from toolkit.nn.encoder.train import train

    p = argparse.ArgumentParser()
    p.add_argument("--runs", default="runs/rte-recipes")
    p.add_argument("--only", nargs="*")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in ORDER:
        if a.only and name not in a.only:
            continue
        t0 = time.time()
        final = train(config(name, a.runs))
        meta = json.loads((final / "train_meta.json").read_text())
        curve = [(r["epoch"], round(r["selection"], 3), round(r["train_loss"] or 0, 3)) for r in meta["logs"]["curve"]]
        row = {"variant": name, "best_epoch": meta["logs"]["best"]["epoch"], "curve(epoch,cal_acc,loss)": curve,
               "cal": [round(x, 3) for x in evaluate(final, "cal")],
               "test": [round(x, 3) for x in evaluate(final, "test")], "wall_s": round(time.time() - t0)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
