"""CascadeBERT difficulty labels: out-of-fold correctness of a model trained on the other folds."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from toolkit.caches.io import check_writable, write_atomic
from toolkit.nn.common.inference import predict_logits
from toolkit.nn.encoder.models import load_model
from toolkit.nn.encoder.train import TrainConfig, fold_assignment, train, training_frame


def fold_config(cfg: TrainConfig, k: int, fold: int) -> TrainConfig:
    """The run that trains on every fold but ``fold`` of ``cfg``'s training rows (objective ``joint``).

    An ordinary :func:`toolkit.nn.encoder.train.train` config (``heldout_fold`` of ``folds``), so fold models resume,
    select their epoch and refuse a run folder of another configuration exactly like any other run.
    """
    if not 0 <= fold < k or k < 2:
        raise ValueError(f"need k >= 2 folds and 0 <= fold < k, got k={k}, fold={fold}")
    return replace(cfg, objective="joint", difficulty_file=None, output_dir=str(Path(cfg.output_dir) / f"fold{fold}"),
                   folds=k, heldout_fold=fold)


def difficulty_labels(cfg: TrainConfig, k: int = 2, out_path: str | os.PathLike | None = None) -> Path:
    """CascadeBERT difficulty labels: 1 where a model trained on the other k-1 folds gets the example wrong.

    Trains (or reuses) the ``k`` fold models of :func:`fold_config` and predicts each fold out-of-fold (final
    exit); saves ``example_ids``, ``hard`` and ``fold`` as .npz (:func:`~toolkit.caches.io.write_atomic`; a link
    or read-only ``out_path`` is refused before any training).
    """
    out_path = Path(out_path or Path(cfg.output_dir) / "difficulty.npz")
    check_writable(out_path, what="difficulty labels file")
    _, frame = training_frame(replace(cfg, folds=None, heldout_fold=None))
    folds = fold_assignment(len(frame), k, cfg.seed)
    hard = np.zeros(len(frame), dtype=np.int8)
    for f in range(k):
        model_dir = train(fold_config(cfg, k, f))
        held = frame[folds == f].reset_index(drop=True)
        logits, _ = predict_logits(load_model(model_dir), AutoTokenizer.from_pretrained(model_dir), held,
                                   batch_size=128, max_length=cfg.max_length)
        hard[folds == f] = (logits[:, -1].argmax(-1) != held["label"].to_numpy()).astype(np.int8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"example_ids": frame["example_id"].to_numpy().astype(str), "hard": hard, "fold": folds}
    return write_atomic(out_path, lambda f: np.savez(f, **arrays))
