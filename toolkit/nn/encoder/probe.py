"""Probe exits: linear heads fitted on the frozen hidden states of an encoder: a classifier someone already
fine-tuned, or a plain sentence encoder such as all-MiniLM-L6-v2.

For each layer, mean-pooled hidden states of (a seeded subsample of) the train split are the features of a
scikit-learn ``LogisticRegression``; its coefficients become that layer's exit head. The backbone is not touched,
so the result is a :class:`~toolkit.nn.encoder.models.MultiExitModel` that collects and runs like any other. Minutes on a CPU.
Written here: feature extraction and copying the fitted coefficients into heads; the fitting is scikit-learn's.
:func:`probe_exits` keeps the result in memory (collect it directly, nothing written); :func:`fit_probe_exits` saves
it as a checkpoint (``toolkit probe``).
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from transformers import AutoTokenizer, PreTrainedModel

from toolkit._api import check_batch
from toolkit.caches.io import check_writable_folder, write_folder_atomic
from toolkit.data.tasks import get_task, load_split
from toolkit.nn.common.inference import pad_rows, sorted_encoding
from toolkit.nn.encoder.models import MultiExitConfig, MultiExitModel, load_encoder, resolve_model


def _backbone(model: PreTrainedModel):
    return model.backbone if isinstance(model, MultiExitModel) else model.base_model


@torch.inference_mode()
def layer_features(backbone, tokenizer, frame, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Mean-pooled hidden states of every layer, ``[N, L, H]`` float32 (length-sorted batches of ``batch_size``
    rows)."""
    batch_size = check_batch(batch_size, name="batch_size")
    backbone.eval()
    b = frame["text_b"] if frame["text_b"].notna().all() else None
    enc, order = sorted_encoding(tokenizer, frame["text_a"], b, max_length)
    keep = {"input_ids", "attention_mask"} | ({"token_type_ids"} & set(inspect.signature(backbone.forward).parameters))
    out = None
    for s in range(0, len(order), batch_size):
        rows = order[s:s + batch_size]
        batch = pad_rows(tokenizer, enc, rows, keep)
        hs = backbone(**batch, output_hidden_states=True).hidden_states[1:]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = torch.stack([(h * mask).sum(1) / mask.sum(1) for h in hs], 1).float().numpy()
        if out is None:
            out = np.empty((len(order), *pooled.shape[1:]), dtype=np.float32)
        out[rows] = pooled
    return out


def fit_linear_probes(features: np.ndarray, labels, num_labels: int, *, C: float = 1.0, seed: int = 0):
    """One standardised logistic regression per stage of ``features`` ``[N, E, H]``; returns ``(W [E, K, H],
    b [E, K], train_accuracy [E])`` with the standardisation folded in, so ``logits = x @ W[e].T + b[e]``.

    Two classes give sklearn's single row as the logit of class 1 (class 0's logit is 0), which has the same
    softmax. BLAS runs on one thread: these problems are small, and on a busy CPU a second BLAS thread contending
    with torch's made each fit about a hundred times slower."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_linear_probes(np.asarray(features), np.asarray(labels), num_labels, C=C, seed=seed)


def _fit_linear_probes(feats: np.ndarray, y: np.ndarray, num_labels: int, *, C: float, seed: int):
    E, H = feats.shape[1], feats.shape[2]
    W, b, acc = np.zeros((E, num_labels, H)), np.zeros((E, num_labels)), np.zeros(E)
    for e in range(E):
        x = feats[:, e]
        mu, sd = x.mean(0), x.std(0) + 1e-6
        clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit((x - mu) / sd, y)
        if num_labels == 2:  # sklearn's binary model has one row: logit(1) - logit(0)
            w, c = np.zeros((2, H)), np.zeros(2)
            w[1], c[1] = clf.coef_[0], clf.intercept_[0]
        else:
            w, c = clf.coef_, clf.intercept_
        # fold the standardisation into the linear head: w.(x - mu)/sd + c = (w/sd).x + (c - w.mu/sd)
        W[e], b[e] = w / sd, c - (w / sd) @ mu
        acc[e] = clf.score((x - mu) / sd, y)
    return W, b, acc


@dataclass(frozen=True, eq=False)
class ProbeExits:
    """Probe exits fitted in memory (:func:`probe_exits`): the multi-exit model (the frozen encoder and one fitted
    linear head per exit layer), its tokenizer, and what the fit saw. :meth:`save` writes it as a checkpoint;
    :func:`toolkit.nn.encoder.collect.collect` also takes ``(probe.model, probe.tokenizer)`` directly."""

    model: MultiExitModel
    tokenizer: object
    train_accuracy: np.ndarray  # [E] accuracy of each probe on the examples it was fitted on
    train_size: int
    data_fingerprint: str
    seconds: float  # wall time of feature extraction and fitting

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"layer": self.model.exit_layers, "train_accuracy": self.train_accuracy})

    def meta(self) -> dict:
        """What ``train_meta.json`` records."""
        return {"config": dict(self.model.config.train_config), "train_size": self.train_size,
                "data_fingerprint": self.data_fingerprint, "wall_time_s": self.seconds,
                "probes": [{"layer": int(layer), "train_accuracy": float(a)}
                           for layer, a in zip(self.model.exit_layers, self.train_accuracy)]}

    def save(self, out: str | os.PathLike) -> Path:
        """Write the model, tokenizer and ``train_meta.json`` to ``out`` as a whole, replacing an earlier ``out``
        (:func:`toolkit.caches.io.write_folder_atomic`: fsynced, the old folder kept on any failure)."""

        def fill(tmp: Path) -> None:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / "train_meta.json").write_text(json.dumps(self.meta(), indent=1))

        return write_folder_atomic(out, fill, what="probe model folder")


def probe_exits(model_path, task: str, *, layers: list[int] | None = None, train_limit: int | None = 5000,
                C: float = 1.0, seed: int = 0, data_dir=None, max_length: int = 128,
                batch_size: int = 64) -> ProbeExits:
    """Fit one logistic-regression exit per layer of a frozen encoder, in memory.

    ``model_path``: a fine-tuned classifier, a multi-exit checkpoint (its encoder is probed) or a plain encoder
    such as ``all-MiniLM-L6-v2`` (any name :func:`~toolkit.nn.encoder.models.resolve_model` maps to weights). The encoder's
    weights are not touched. ``train_limit``: a seeded subsample of the task's ``train`` split (never ``cal``);
    ``C``: inverse L2 strength; features are standardised inside the head.
    """
    t0 = time.time()
    check_batch(batch_size, name="batch_size")  # before the encoder loads
    spec = get_task(task)
    path = resolve_model(model_path)
    backbone = _backbone(load_encoder(path))
    tok = AutoTokenizer.from_pretrained(path)
    data = load_split(task, "train", data_dir)
    frame = data.frame
    if train_limit and train_limit < len(frame):
        rows = np.sort(np.random.default_rng(seed).choice(len(frame), train_limit, replace=False))
        frame = frame.iloc[rows].reset_index(drop=True)
    feats = layer_features(backbone, tok, frame, batch_size=batch_size, max_length=max_length)
    L = feats.shape[1]
    layers = list(layers) if layers else list(range(1, L + 1))
    y = frame["label"].to_numpy()
    bcfg = backbone.config.to_dict()
    for k in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        bcfg.pop(k, None)
    cfg = MultiExitConfig(backbone=bcfg, exit_layers=layers, pooling="mean", head_dropout=0.0,
                          num_labels=spec.num_labels, id2label=dict(enumerate(spec.label_names)))
    me = MultiExitModel(cfg, backbone=backbone)
    W, b, train_acc = fit_linear_probes(feats[:, np.asarray(layers) - 1], y, spec.num_labels, C=C, seed=seed)
    with torch.no_grad():
        for e in range(len(layers)):
            me.heads[e].weight.copy_(torch.from_numpy(W[e]).float())
            me.heads[e].bias.copy_(torch.from_numpy(b[e]).float())
    me.config.source_model = str(model_path)
    me.config.train_config = {"task": task, "model": str(model_path), "objective": "probe", "seed": seed, "C": C,
                              "train_limit": train_limit}
    return ProbeExits(me.eval(), tok, train_acc, len(frame), data.fingerprint, time.time() - t0)


def fit_probe_exits(model_path, task: str, out: str | os.PathLike, layers: list[int] | None = None,
                    train_limit: int | None = 5000, C: float = 1.0, seed: int = 0, data_dir=None,
                    max_length: int = 128) -> Path:
    """:func:`probe_exits`, saved as a multi-exit model (safetensors) to ``out`` (a link, a file or a read-only
    folder there is refused before the fit)."""
    check_writable_folder(out, what="probe model folder")
    return probe_exits(model_path, task, layers=layers, train_limit=train_limit, C=C, seed=seed, data_dir=data_dir,
                       max_length=max_length).save(out)
