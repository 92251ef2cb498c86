"""CascadeBERT difficulty labels: out-of-fold correctness of a model trained on the other folds."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from ..data import get_task
from .inference import predict_logits
from .models import MultiExitModel, load_model, resolve_model
from .train import TrainConfig, _fit, tokenize_frame, training_frame


def difficulty_labels(cfg: TrainConfig, k: int = 2, out_path: str | os.PathLike | None = None) -> Path:
    """CascadeBERT difficulty labels: 1 where a model trained on the other k-1 folds gets the example wrong.

    Trains ``k`` models with ``cfg`` (objective forced to ``joint`` on the final exit) and predicts each fold
    out-of-fold; saves ``example_ids``, ``hard`` and ``fold`` as .npz.
    """
    out_path = Path(out_path or Path(cfg.output_dir) / "difficulty.npz")
    _, frame = training_frame(cfg)
    folds = np.random.default_rng(cfg.seed).permutation(len(frame)) % k
    hard = np.zeros(len(frame), dtype=np.int8)
    for f in range(k):
        sub = TrainConfig(**{**asdict(cfg), "objective": "joint", "difficulty_file": None, "train_limit": None,
                             "output_dir": str(Path(cfg.output_dir) / f"fold{f}")})
        model_dir = _train_on(sub, frame[folds != f].reset_index(drop=True))
        held = frame[folds == f].reset_index(drop=True)
        logits, _ = predict_logits(load_model(model_dir), AutoTokenizer.from_pretrained(model_dir), held,
                                   max_length=cfg.max_length)
        logits = logits[:, -1]
        hard[folds == f] = (logits.argmax(-1) != held["label"].to_numpy()).astype(np.int8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, example_ids=frame["example_id"].to_numpy().astype(str), hard=hard, fold=folds)
    return out_path


def _train_on(cfg: TrainConfig, frame) -> Path:
    """Train on an explicit frame (used for out-of-fold models)."""
    out = Path(cfg.output_dir)
    final = out / "final"
    if (final / "config.json").exists():
        return final
    spec = get_task(cfg.task)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    ds = tokenize_frame(frame, tokenizer, cfg.max_length)
    exit_layers = [cfg.num_hidden_layers] if cfg.num_hidden_layers else cfg.exit_layers
    model = MultiExitModel.from_backbone(cfg.model, spec.num_labels, exit_layers=exit_layers,
                                         num_hidden_layers=cfg.num_hidden_layers, pooling=cfg.pooling, seed=cfg.seed)
    _fit(cfg, model, tokenizer, ds, out / "checkpoints", "joint")
    model.save_pretrained(out / "final.tmp")
    tokenizer.save_pretrained(out / "final.tmp")
    os.replace(out / "final.tmp", final)
    return final

