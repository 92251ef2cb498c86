"""Batched inference helpers shared by collection, training and the runtime: length-sorted tokenisation, dynamic
padding, and every exit's logits of a model over a data frame."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from toolkit._api import check_batch
from toolkit.nn.encoder.models import MultiExitModel


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


CHARS_PER_TOKEN = 32  # first character bound per token of max_length; grown where a text needs more


def _cut_at_space(text: str, limit: int) -> str:
    """The longest prefix of at most ``limit`` characters that ends before whitespace (a hard cut if none)."""
    head = text[:limit + 1]
    i = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return text[:i] if i > 0 else text[:limit]


def bound_characters(tokenizer, texts, max_length: int) -> list[str]:
    """Cut each text before tokenisation so that a 20 MB line costs what its first ``max_length`` tokens cost.

    A text longer than ``max_length * CHARS_PER_TOKEN`` characters is cut at the last whitespace before that
    bound, and the cut is kept only if it still holds more than ``max_length`` tokens: then truncating it to
    ``max_length`` keeps the same tokens as truncating the whole text (tokenisers split words at whitespace first).
    Otherwise the bound grows fourfold and the text is tried again (at worst, whole).
    """
    texts = list(texts)
    out = list(texts)
    limit = max_length * CHARS_PER_TOKEN
    todo = [i for i, t in enumerate(texts) if isinstance(t, str) and len(t) > limit]
    while todo:
        cut = [_cut_at_space(texts[i], limit) for i in todo]
        counts = [len(x) for x in tokenizer(cut, add_special_tokens=False, truncation=False,
                                            verbose=False)["input_ids"]]
        retry = []
        for i, c, n in zip(todo, cut, counts):
            if n > max_length:
                out[i] = c
            else:
                retry.append(i)
        limit *= 4
        todo = [i for i in retry if len(texts[i]) > limit]
    return out


def sorted_encoding(tokenizer, texts_a, texts_b=None, max_length: int = 128):
    """Tokenize without padding (texts bounded first, :func:`bound_characters`); return the encoding and the row
    order by length (similar lengths batch together, so dynamic padding adds little).

    ``max_length`` must leave room for text after the tokenizer's special tokens (transformers would otherwise
    ignore it silently and return untruncated sequences); any row longer than ``max_length`` is an error.
    """
    pair = texts_b is not None
    specials = tokenizer.num_special_tokens_to_add(pair=pair)
    if not isinstance(max_length, (int, np.integer)) or max_length <= specials:
        raise ValueError(f"max_length {max_length!r} leaves no room for text: this tokenizer adds {specials} special "
                         f"tokens to {'a pair' if pair else 'a text'}; use at least {specials + 1}")
    a = bound_characters(tokenizer, texts_a, max_length)
    b = bound_characters(tokenizer, texts_b, max_length) if pair else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    if len(lengths) and lengths.max() > max_length:
        raise ValueError(f"the tokenizer returned {lengths.max()} tokens for row {int(lengths.argmax())} despite "
                         f"max_length {max_length}: it cannot truncate this input that short; raise max_length")
    return enc, np.argsort(lengths, kind="stable")


def pad_rows(tokenizer, enc, rows, keep=None) -> dict:
    """A padded tensor batch of the given rows of an encoding, restricted to the input names in ``keep``."""
    batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in rows], return_tensors="pt")
    return {k: v for k, v in batch.items() if keep is None or k in keep}


def predict_logits(model: PreTrainedModel, tokenizer, frame, batch_size: int = 32, max_length: int = 128,
                   device: str | torch.device | None = None, progress: bool = False):
    """Logits ``[N, E, C]`` (float32, frame order) and token counts ``[N]`` of ``model`` on a data frame."""
    batch_size = check_batch(batch_size, name="batch_size")
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

