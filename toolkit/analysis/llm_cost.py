"""The cost model of decoder-only (causal) LMs, per generated token: what early exit and self-speculative decoding
spend, in FLOPs (a multiply-add counts 2).

A decoder layer with hidden size H, ``q = heads * head_dim``, ``kv = kv_heads * head_dim`` (grouped-query
attention: ``kv_heads <= heads``) and FFN width I, processing one token that attends to ``c`` positions (itself
and the cached context), costs

    2H(q + 2kv) + 2qH          query, key, value and output projections
    + 4qc                      attention scores and weighted sum over c positions
    + 6HI  (gated MLP, Llama)  or  4HI (plain MLP, GPT-2)

The LM head costs ``2HV`` per position it is applied to (an exit evaluated with the LM head costs the same; it is
several layers' worth: for SmolLM2-135M, 2HV = 56.6 MFLOPs against about 7.1 MFLOPs per layer at short context).
State propagation (CALM) fills a skipped layer's keys and values from the exited hidden state: ``4H kv`` per
skipped layer. Norms, rotary embeddings, activations, softmax and embedding lookups are not counted (as for the
encoders in :mod:`toolkit.analysis.cost`). Checked against torch's FLOP counter in the tests.

>>> d = CausalLMDims(layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536, vocab=49152)
>>> int(layer_flops(1, d)), int(head_flops(d)), int(kv_projection_flops(d))
(7080192, 56623104, 442368)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

LLM_COST_DEFINITION = ("FLOPs per token = sum over layers run of 2H(q+2kv) + 2qH + 4qc + 6HI (gated MLP; 4HI "
                       "plain) with c attended positions, + 2HV per LM-head/exit evaluation (+ 2H^2 per tuned-exit "
                       "translator), + 4H*kv per skipped layer whose keys/values are propagated; q = heads*head_dim, "
                       "kv = kv_heads*head_dim")


@dataclass(frozen=True)
class CausalLMDims:
    """The sizes the cost model needs (see module docstring)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = True
    gated_mlp: bool = True

    def __post_init__(self):
        for k, v in asdict(self).items():
            if isinstance(v, bool):
                continue
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"CausalLMDims.{k} must be a positive integer, got {v!r}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @classmethod
    def from_config(cls, config: Mapping) -> CausalLMDims:
        """From a Hugging Face config dict (Llama, Mistral, Qwen2, SmolLM: gated MLP; GPT-2: plain MLP)."""
        c = dict(config)
        if c.get("model_type") == "gpt2" or "n_embd" in c:
            h, heads = int(c["n_embd"]), int(c["n_head"])
            return cls(layers=int(c["n_layer"]), hidden=h, heads=heads, kv_heads=heads, head_dim=h // heads,
                       intermediate=int(c.get("n_inner") or 4 * h), vocab=int(c["vocab_size"]),
                       tied_embeddings=bool(c.get("tie_word_embeddings", True)), gated_mlp=False)
        try:
            h, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
            return cls(layers=int(c["num_hidden_layers"]), hidden=h, heads=heads,
                       kv_heads=int(c.get("num_key_value_heads") or heads),
                       head_dim=int(c.get("head_dim") or h // heads), intermediate=int(c["intermediate_size"]),
                       vocab=int(c["vocab_size"]), tied_embeddings=bool(c.get("tie_word_embeddings", False)),
                       gated_mlp=True)
        except KeyError as e:
            raise ValueError(f"config has no {e.args[0]!r}: not a decoder-only LM config this cost model "
                             f"knows (Llama-style or GPT-2-style)") from None


def layer_flops(context, dims: CausalLMDims) -> np.ndarray:
    """FLOPs of one decoder layer for one token attending to ``context`` positions (array or scalar, >= 1)."""
    c = np.asarray(context, dtype=np.float64)
    if (c < 1).any():
        raise ValueError("context must count at least the token itself (>= 1)")
    H, q, kv, inter = dims.hidden, dims.q_dim, dims.kv_dim, dims.intermediate
    mlp = (6 if dims.gated_mlp else 4) * H * inter
    return 2.0 * H * (q + 2 * kv) + 2.0 * q * H + 4.0 * q * c + mlp


def layer_weight_flops(dims: CausalLMDims) -> float:
    """2 x the parameters of one decoder layer's projections (its FLOPs at one position without attention): what a
    pass reads from memory, the cost unit of memory-bound decoding."""
    return float(layer_flops(1, dims)) - 4.0 * dims.q_dim


def head_flops(dims: CausalLMDims) -> float:
    """FLOPs of the LM head (or of one exit evaluated through it) at one position."""
    return 2.0 * dims.hidden * dims.vocab


def translator_flops(dims: CausalLMDims) -> float:
    """FLOPs of a tuned-lens translator (an H x H affine map) at one position, paid before its exit's head."""
    return 2.0 * dims.hidden * dims.hidden


def kv_projection_flops(dims: CausalLMDims) -> float:
    """FLOPs to fill one skipped layer's key and value for one token from a propagated hidden state."""
    return 4.0 * dims.hidden * dims.kv_dim


def full_token_flops(context, dims: CausalLMDims) -> np.ndarray:
    """One token through every layer and the LM head: the reference cost per generated token."""
    return dims.layers * layer_flops(context, dims) + head_flops(dims)


def prefill_flops(n_prompt, dims: CausalLMDims) -> np.ndarray:
    """Processing a prompt of ``n_prompt`` tokens in one pass (every layer; LM head at the last position only).

    Token ``i`` (1-based) attends to ``i`` positions, so attention adds ``4q * n(n+1)/2`` per layer.
    """
    n = np.asarray(n_prompt, dtype=np.float64)
    per_layer = n * (layer_flops(1, dims) - 4.0 * dims.q_dim) + 4.0 * dims.q_dim * n * (n + 1) / 2
    return dims.layers * per_layer + head_flops(dims)


def calm_token_flops(context, exit_layer, dims: CausalLMDims, *, checked_layers, propagate: bool = True):
    """FLOPs of one generated token that exits after decoder layer ``exit_layer`` (1-based; ``dims.layers`` = no
    early exit), CALM-style.

    Counts layers 1..exit_layer at ``context`` attended positions, one LM-head evaluation per checked layer at or
    below the exit (the confidence of each is computed on the way; the final layer's head is the model's own), and,
    with ``propagate``, the key/value projections of the skipped layers (state propagation).
    ``context`` and ``exit_layer`` broadcast; ``checked_layers``: the layers whose exit is evaluated.
    """
    k = np.asarray(exit_layer)
    if (k < 1).any() or (k > dims.layers).any():
        raise ValueError(f"exit_layer must lie in 1..{dims.layers}")
    checked = np.unique(np.asarray(checked_layers, dtype=np.int64))
    if checked.size and (checked.min() < 1 or checked.max() > dims.layers):
        raise ValueError(f"checked_layers must lie in 1..{dims.layers}")
    heads_passed = np.searchsorted(checked, k, side="right")
    if dims.layers not in checked:  # the model's own head always runs when a token reaches the last layer
        heads_passed = heads_passed + (k == dims.layers)
    skipped = dims.layers - k
    return (k * layer_flops(context, dims) + heads_passed * head_flops(dims)
            + (skipped * kv_projection_flops(dims) if propagate else 0.0))


def self_speculative_block_flops(context, draft_layer: int, draft_length: int, dims: CausalLMDims):
    """FLOPs of one self-speculative block (LayerSkip) that starts with ``context`` positions already in the cache.

    The block feeds the last accepted token, drafts ``d`` tokens with layers 1..k and the exit (d draft steps, d
    exit heads), then verifies with one full-model pass over the d + 1 new positions: layers 1..k only for the last
    draft token (the others' keys and values up to layer k are the draft's, reused), layers k+1..L for all d + 1,
    and the LM head at each of the d + 1 positions. It emits (accepted + 1) tokens; rejected positions' caches are
    dropped. Position ``j`` of the block (0-based) attends to ``context + j + 1`` positions.
    """
    k, d, L = int(draft_layer), int(draft_length), dims.layers
    if not 1 <= k < L or d < 1:
        raise ValueError(f"need 1 <= draft_layer < {L} and draft_length >= 1, got {k}, {d}")
    c = np.asarray(context, dtype=np.float64)[..., None] + np.arange(1, d + 2)  # [..., d+1] attended positions
    per = layer_flops(c, dims)
    draft = k * per[..., :d].sum(-1) + d * head_flops(dims)
    verify = k * per[..., d] + (L - k) * per.sum(-1) + (d + 1) * head_flops(dims)
    return draft + verify


def prefill_exit_flops(n_prompt, exit_layers, dims: CausalLMDims, *, exit_head_flops: float) -> np.ndarray:
    """Cumulative FLOPs ``[N, E]`` of classifying a prompt from exits at the last prompt position: when exit ``e``
    (at layer ``exit_layers[e]``, increasing) has answered, the whole prompt has run through layers
    1..exit_layers[e] (a layer's share of :func:`prefill_flops`) and the heads of exits 0..e have been evaluated
    (``exit_head_flops`` each, e.g. ``2H * label-word tokens`` for a zero-shot exit, ``2HC`` for a probe).
    """
    n = np.atleast_1d(np.asarray(n_prompt, dtype=np.float64))
    k = np.asarray(exit_layers, dtype=np.int64)
    if k.ndim != 1 or not len(k) or (np.diff(k) <= 0).any() or k[0] < 1 or k[-1] > dims.layers:
        raise ValueError(f"exit_layers must increase within 1..{dims.layers}, got {list(k)}")
    per_layer = (prefill_flops(n, dims) - head_flops(dims)) / dims.layers
    return per_layer[:, None] * k[None, :] + float(exit_head_flops) * np.arange(1, len(k) + 1)[None, :]
