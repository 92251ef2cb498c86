"""Generation cost of an encoder-decoder model, in FLOPs (multiply-adds counted as 2), per example.

One run = the encoder over the ``n`` source tokens, plus ``m`` greedy decoder steps with a key/value cache (step t
feeds one token, attends to t decoder positions and the n encoder positions) and the language-model head at every
step. Per decoder layer and step: self-attention projections 8HA, its scores and weighted sum 4tA, cross-attention
query/output projections 4HA and scores 4nA, FFN 2kHI (k = 2 matrices, 3 when gated as in T5 v1.1); once per layer
the cross-attention keys/values of the encoder output, 4nHA. The head costs 2HV per step (plus 2H^2 for BERT's
transform layer). ``EncoderDecoderModel`` with differing widths also projects the encoder states (2nH_eH) at every
step, as transformers implements it. Encoder poolers (dropped by :func:`toolkit.nn.seq2seq.models.warm_start`), embeddings, norms, biases and softmaxes are not counted, as in :mod:`toolkit.analysis.cost.encoder`. ``m`` counts
every generated token including the end-of-sequence one; padding steps of finished rows in a batch are not
counted (they are an artefact of batching, not a cost of the example).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

GENERATION_COST_DEFINITION = (
    "FLOPs per example = encoder layers 2n(4HA+kHI)+4n^2A + per decoder layer [4nHA (cross K/V, once) + "
    "sum_{t=1..m} (12HA + 4tA + 4nA + 2kHI)] + m LM-head steps 2HV (+2H^2 BERT transform); n = source tokens, "
    "m = generated tokens incl. EOS, k = 2 FFN matrices (3 gated); + m*2nH_eH_d encoder-state projection "
    "when an EncoderDecoderModel's widths differ")


@dataclass(frozen=True)
class Seq2SeqDims:
    """Sizes the cost model needs (A = attention width = heads x head size)."""

    enc_layers: int
    enc_hidden: int
    enc_attn: int
    enc_ffn: int
    enc_ffn_mats: int
    dec_layers: int
    dec_hidden: int
    dec_attn: int
    dec_ffn: int
    dec_ffn_mats: int
    vocab: int
    lm_transform: bool = False  # BERT-style head: an extra HxH dense layer before the vocabulary projection
    enc_to_dec_proj: bool = False  # EncoderDecoderModel projects encoder states when the widths differ

    def to_dict(self) -> dict:
        return asdict(self)


def _bert_like(c: Mapping) -> tuple[int, int, int, int]:
    h = int(c["hidden_size"])
    return int(c["num_hidden_layers"]), h, h, int(c["intermediate_size"])


def _t5_dims(c: Mapping) -> Seq2SeqDims:
    h, a = int(c["d_model"]), int(c["num_heads"]) * int(c["d_kv"])
    k = 3 if str(c.get("feed_forward_proj", "relu")).startswith("gated") else 2
    dec = int(c.get("num_decoder_layers") or c["num_layers"])
    return Seq2SeqDims(int(c["num_layers"]), h, a, int(c["d_ff"]), k, dec, h, a, int(c["d_ff"]), k,
                       int(c["vocab_size"]))


def _bart_dims(c: Mapping) -> Seq2SeqDims:
    h = int(c["d_model"])
    return Seq2SeqDims(int(c["encoder_layers"]), h, h, int(c["encoder_ffn_dim"]), 2, int(c["decoder_layers"]),
                       h, h, int(c["decoder_ffn_dim"]), 2, int(c["vocab_size"]))


def _encoder_decoder_dims(c: Mapping) -> Seq2SeqDims:
    el, eh, ea, ei = _bert_like(c["encoder"])
    dl, dh, da, di = _bert_like(c["decoder"])
    proj = eh != dh and c["decoder"].get("cross_attention_hidden_size") is None
    transform = c["decoder"].get("model_type") in ("bert", "roberta", "electra", "ernie", "mpnet")
    return Seq2SeqDims(el, eh, ea, ei, 2, dl, dh, da, di, 2, int(c["decoder"]["vocab_size"]), transform, proj)


# one entry per seq2seq family: model_type -> sizes of the cost model
SEQ2SEQ_FAMILIES = {
    **dict.fromkeys(("t5", "mt5", "umt5"), _t5_dims),
    **dict.fromkeys(("bart", "mbart", "marian", "pegasus", "fsmt", "blenderbot", "blenderbot-small"), _bart_dims),
    "encoder-decoder": _encoder_decoder_dims,
}


def seq2seq_dims(config) -> Seq2SeqDims:
    """Dimensions of a T5/mT5, BART/mBART/Marian/Pegasus or ``EncoderDecoderModel`` config (object or dict)."""
    c = config if isinstance(config, Mapping) else config.to_dict()
    kind = c.get("model_type")
    if kind not in SEQ2SEQ_FAMILIES:
        raise ValueError(f"no generation cost model for model_type {kind!r}; supported: t5/mt5, bart/mbart/marian/"
                         f"pegasus, encoder-decoder (warm-started BERT-family pairs); add one to SEQ2SEQ_FAMILIES")
    return SEQ2SEQ_FAMILIES[kind](c)


def generation_flops(n_src, n_steps, dims: Seq2SeqDims) -> np.ndarray:
    """FLOPs of generating ``n_steps`` tokens from ``n_src`` source tokens (arrays of equal shape, or scalars)."""
    n = np.asarray(n_src, dtype=np.float64)
    m = np.asarray(n_steps, dtype=np.float64)
    if np.any(n < 1) or np.any(m < 0):
        raise ValueError("n_src must be >= 1 and n_steps >= 0")
    d = dims
    enc = d.enc_layers * (2 * n * (4 * d.enc_hidden * d.enc_attn + d.enc_ffn_mats * d.enc_hidden * d.enc_ffn)
                          + 4 * n * n * d.enc_attn)
    # transformers' EncoderDecoderModel re-projects the encoder states at every decoder call: count it per step
    proj = m * 2 * n * d.enc_hidden * d.dec_hidden if d.enc_to_dec_proj else 0.0
    H, A = d.dec_hidden, d.dec_attn
    per_step = 12 * H * A + 4 * n * A + 2 * d.dec_ffn_mats * H * d.dec_ffn
    dec = d.dec_layers * (4 * n * H * A * (m > 0) + m * per_step + 4 * A * m * (m + 1) / 2)
    head = m * (2 * H * d.vocab + (2 * H * H if d.lm_transform else 0))
    return enc + proj + dec + head
