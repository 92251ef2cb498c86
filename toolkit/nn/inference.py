"""Batched inference helpers shared by collection, training and the runtime: length-sorted tokenisation, dynamic
padding, and every exit's logits of a model over a data frame."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from .models import MultiExitModel


def _model_config(model: PreTrainedModel) -> tuple[dict, list[int], str]:
    """(backbone config dict, exit layers, kind) of a multi-exit model or a sequence classifier."""
    if isinstance(model, MultiExitModel):
        return model.config.backbone, model.exit_layers, "exit"
    cfg = model.config.to_dict()
    return cfg, [int(cfg["num_hidden_layers"])], "model"


def _forward_logits(model: PreTrainedModel, batch: dict) -> torch.Tensor:
    out = model(**batch)
    logits = out.logits
    return logits if logits.dim() == 3 else logits[:, None, :]


def sorted_encoding(tokenizer, texts_a, texts_b=None, max_length: int = 128):
    """Tokenize without padding; return the encoding and the row order by length (similar lengths batch
    together, so dynamic padding adds little)."""
    enc = tokenizer(list(texts_a), list(texts_b) if texts_b is not None else None, truncation=True,
                    max_length=max_length)
    return enc, np.argsort([len(x) for x in enc["input_ids"]], kind="stable")


def pad_rows(tokenizer, enc, rows, keep=None) -> dict:
    """A padded tensor batch of the given rows of an encoding, restricted to the input names in ``keep``."""
    batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in rows], return_tensors="pt")
    return {k: v for k, v in batch.items() if keep is None or k in keep}


def predict_logits(model: PreTrainedModel, tokenizer, frame, batch_size: int = 32, max_length: int = 128,
                   device: str | torch.device | None = None, progress: bool = False):
    """Logits ``[N, E, C]`` (float32, frame order) and token counts ``[N]`` of ``model`` on a data frame."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    accepted = set(inspect.signature(model.forward).parameters)
    b = frame["text_b"] if frame["text_b"].notna().all() else None
    enc, order = sorted_encoding(tokenizer, frame["text_a"], b, max_length)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    out = None
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), disable=not progress, desc="batches", leave=False):
            rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad_rows(tokenizer, enc, rows, accepted).items()}
            logits = _forward_logits(model, batch).float().cpu().numpy()
            if out is None:
                out = np.empty((len(order), *logits.shape[1:]), dtype=np.float32)
            out[rows] = logits
    return out, lengths

