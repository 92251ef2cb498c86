"""Encoder-decoder models: warm-started from packaged encoders, or any hub/local seq2seq checkpoint.

:func:`warm_start` builds a transformers ``EncoderDecoderModel`` from two encoder checkpoints (Rothe et al. 2020):
the decoder copies the second checkpoint's layers (optionally only the first k), gains randomly initialised
cross-attention and a language-model head tied to its word embeddings. Source text uses the encoder's tokenizer,
targets the decoder's; a saved model keeps the decoder tokenizer in ``decoder_tokenizer/``. :func:`load_seq2seq`
returns ``(model, source_tokenizer, target_tokenizer)`` for such a folder or for any ``AutoModelForSeq2SeqLM``
checkpoint (T5, BART, Marian ...; one tokenizer for both sides).
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, EncoderDecoderModel

from toolkit.nn.encoder.models import resolve_model

DECODER_TOKENIZER = "decoder_tokenizer"


def warm_start(encoder: str | os.PathLike, decoder: str | os.PathLike, decoder_layers: int | None = None,
               attn_implementation: str | None = None):
    """``(model, source_tokenizer, target_tokenizer)`` of a new encoder-decoder from two encoder checkpoints
    (``attn_implementation``: e.g. "eager" for both halves)."""
    enc_path, dec_path = resolve_model(encoder), resolve_model(decoder)
    kw = {"decoder_num_hidden_layers": int(decoder_layers)} if decoder_layers else {}
    if attn_implementation:
        kw.update(encoder_attn_implementation=attn_implementation, decoder_attn_implementation=attn_implementation)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(enc_path, dec_path, **kw)
    if getattr(model.encoder, "pooler", None) is not None:
        model.encoder.pooler = None  # unused by generation; dropping it keeps the cost model exact
    src, tgt = AutoTokenizer.from_pretrained(enc_path), AutoTokenizer.from_pretrained(dec_path)
    start = tgt.cls_token_id if tgt.cls_token_id is not None else tgt.bos_token_id
    eos = tgt.sep_token_id if tgt.sep_token_id is not None else tgt.eos_token_id
    if start is None or eos is None or tgt.pad_token_id is None:
        raise ValueError(f"decoder tokenizer of {decoder} lacks a start ([CLS]/<s>), end ([SEP]/</s>) or pad token")
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id = start, eos, tgt.pad_token_id
    model.config.source_models = {"encoder": str(encoder), "decoder": str(decoder), "decoder_layers": decoder_layers}
    return model, src, tgt


def save_seq2seq(model, source_tokenizer, target_tokenizer, out: str | os.PathLike) -> Path:
    out = Path(out)
    model.save_pretrained(out)
    source_tokenizer.save_pretrained(out)
    if target_tokenizer is not source_tokenizer:
        target_tokenizer.save_pretrained(out / DECODER_TOKENIZER)
    return out


def load_seq2seq(name_or_path: str | os.PathLike):
    """``(model, source_tokenizer, target_tokenizer)`` of a saved seq2seq model (local folder or hub id)."""
    path = str(name_or_path)
    local = Path(path)
    if local.is_dir() and (local / "config.json").exists():
        import json

        kind = json.loads((local / "config.json").read_text()).get("model_type")
        model = (EncoderDecoderModel if kind == "encoder-decoder" else AutoModelForSeq2SeqLM).from_pretrained(path)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
    if getattr(getattr(model, "encoder", None), "pooler", None) is not None:
        model.encoder.pooler = None
    src = AutoTokenizer.from_pretrained(path)
    tgt_dir = local / DECODER_TOKENIZER
    tgt = AutoTokenizer.from_pretrained(tgt_dir) if tgt_dir.is_dir() else src
    return model, src, tgt
