"""Slenderized multi-exit models (COST-EFF): structured width pruning that keeps what every exit needs.

Attention heads and FFN neurons are ranked by first-order Taylor importance, ``|sum over the group's weights of
grad * weight|``, accumulated over batches of the train split, where the loss is the *sum of all exits'*
cross-entropies, so structures that serve early exits survive. Each layer keeps the top fraction ``width`` of its
heads and neurons (depth is kept). The pruned widths are written into the backbone config (``layer_num_heads``,
``layer_intermediate_sizes``), so :class:`~toolkit.nn.encoder.models.MultiExitModel.from_pretrained` rebuilds the smaller
shapes and :mod:`toolkit.analysis.cost.encoder` counts the pruned FLOPs. Accuracy is recovered with per-exit distillation from the
unpruned model (``toolkit.nn.encoder.train``, ``objective="distill"``, ``teacher=...``).

Supported: the families whose :mod:`toolkit.nn.common.families` entry names their prunable linear layers (BERT, RoBERTa,
MiniLM). Written here because transformers' own ``prune_heads`` covers heads only, not FFN neurons, and not per-exit
importance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from toolkit._api import check_batch
from toolkit.nn.common.families import family_of
from toolkit.nn.encoder.losses import joint_loss


def _parts(backbone) -> list:
    """The prunable parts of every layer, from the backbone's family."""
    family = family_of(backbone)
    if family.parts is None:
        raise NotImplementedError(f"width pruning is not supported for the {family.name} family "
                                  f"({type(backbone).__name__}); its toolkit.nn.common.families entry names no prunable parts")
    return [family.parts(layer) for layer in family.layers(backbone)]


def importance_scores(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """Taylor importance of each head ``[L][heads]`` and FFN neuron ``[L][I]`` (lists of arrays) under the sum of
    all exits' cross-entropies. ``batches``: dicts with ``input_ids``, ``attention_mask`` (…) and ``labels``."""
    parts = _parts(model.backbone)
    heads = [np.zeros(p.n_heads) for p in parts]
    neurons = [np.zeros(p.up.out_features) for p in parts]
    model.eval()  # no dropout; gradients still flow
    for batch in batches:
        batch = dict(batch)
        labels = batch.pop("labels")
        model.zero_grad(set_to_none=True)
        joint_loss(model(**batch).logits, labels).backward()
        for i, p in enumerate(parts):
            d = p.head_size
            qkv, so = p.qkv, p.out
            per_head = sum((lin.weight.grad * lin.weight).reshape(-1, d, lin.in_features).flatten(1).sum(1)
                           for lin in qkv)
            per_head = per_head + sum((lin.bias.grad * lin.bias).reshape(-1, d).sum(1) for lin in qkv)
            per_head = per_head + (so.weight.grad * so.weight).reshape(so.out_features, -1, d).sum((0, 2))
            heads[i] += per_head.abs().detach().numpy()
            up, down = p.up, p.down
            per_neuron = (up.weight.grad * up.weight).sum(1) + up.bias.grad * up.bias + \
                (down.weight.grad * down.weight).sum(0)
            neurons[i] += per_neuron.abs().detach().numpy()
    model.zero_grad(set_to_none=True)
    return heads, neurons


def _slice_linear(lin: nn.Linear, rows=None, cols=None) -> nn.Linear:
    w = lin.weight.data
    b = lin.bias.data if lin.bias is not None else None
    if rows is not None:
        w, b = w[rows], (b[rows] if b is not None else None)
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


def prune_layers(backbone, keep_heads: list, keep_neurons: list) -> None:
    """Keep the given head and neuron indices in each layer (in place); writes the widths into the config."""
    parts = _parts(backbone)
    for p, kh, kn in zip(parts, keep_heads, keep_neurons):
        d = p.head_size
        kh = np.sort(np.asarray(kh, dtype=np.int64))
        idx = torch.from_numpy((kh[:, None] * d + np.arange(d)[None, :]).ravel())
        kn = torch.from_numpy(np.sort(np.asarray(kn, dtype=np.int64)))
        p.replace(qkv=tuple(_slice_linear(lin, rows=idx) for lin in p.qkv), out=_slice_linear(p.out, cols=idx),
                  up=_slice_linear(p.up, rows=kn), down=_slice_linear(p.down, cols=kn))
    backbone.config.layer_num_heads = [p.n_heads for p in parts]
    backbone.config.layer_intermediate_sizes = [p.up.out_features for p in parts]


def apply_config_widths(backbone, layer_num_heads, layer_intermediate_sizes) -> None:
    """Shrink a freshly built backbone to the widths its config records (before loading pruned weights)."""
    prune_layers(backbone, [range(h) for h in layer_num_heads], [range(n) for n in layer_intermediate_sizes])


def slenderize(model, batches, width: float = 0.5) -> dict:
    """Prune every layer of a multi-exit model to ``width`` of its heads and FFN neurons (at least one head),
    keeping the most important by per-exit Taylor scores. In place; returns the scores and kept indices."""
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}")
    heads, neurons = importance_scores(model, batches)
    keep_h = [np.argsort(-h, kind="stable")[: max(1, int(round(width * len(h))))] for h in heads]
    keep_n = [np.argsort(-n, kind="stable")[: max(1, int(round(width * len(n))))] for n in neurons]
    prune_layers(model.backbone, keep_h, keep_n)
    model.config.backbone["layer_num_heads"] = model.backbone.config.layer_num_heads
    model.config.backbone["layer_intermediate_sizes"] = model.backbone.config.layer_intermediate_sizes
    return {"head_scores": heads, "neuron_scores": neurons, "kept_heads": keep_h, "kept_neurons": keep_n}


def train_batches(model_dir_or_tok, task: str, n_batches: int = 20, batch_size: int = 32, seed: int = 0,
                  data_dir=None, max_length: int = 128):
    """Seeded batches of the train split (with labels) for :func:`importance_scores`."""
    from transformers import AutoTokenizer

    from toolkit.data.tasks import load_split

    batch_size = check_batch(batch_size, name="batch_size")
    tok = AutoTokenizer.from_pretrained(model_dir_or_tok) if isinstance(model_dir_or_tok, (str, bytes)) or \
        hasattr(model_dir_or_tok, "__fspath__") else model_dir_or_tok
    frame = load_split(task, "train", data_dir).frame
    rows = np.random.default_rng(seed).permutation(len(frame))[: n_batches * batch_size]
    for s in range(0, len(rows), batch_size):
        sub = frame.iloc[rows[s:s + batch_size]]
        b = list(sub["text_b"]) if sub["text_b"].notna().all() else None
        enc = tok(list(sub["text_a"]), b, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        enc["labels"] = torch.as_tensor(sub["label"].to_numpy().copy())
        yield dict(enc)
