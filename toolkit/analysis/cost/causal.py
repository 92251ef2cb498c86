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
encoders in :mod:`toolkit.analysis.cost.encoder`). Checked against torch's FLOP counter in the tests.

>>> d = CausalLMDims(layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536, vocab=49152)
>>> int(layer_flops(1, d)), int(head_flops(d)), int(kv_projection_flops(d))
(7080192, 56623104, 442368)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.caches.dims import CausalLMDims  # noqa: F401  (header data; re-exported here)

LLM_COST_DEFINITION = ("FLOPs per token = sum over layers run of 2H(q+2kv) + 2qH + 4qc + 6HI (gated MLP; 4HI "
                       "plain) with c attended positions, + 2HV per LM-head/exit evaluation (+ 2H^2 per tuned-exit "
                       "translator), + 4H*kv per skipped layer whose keys/values are propagated; q = heads*head_dim, "
                       "kv = kv_heads*head_dim")


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


@dataclass(frozen=True)
class Pass:
    """One forward pass of a decoder over consecutive layers, for one row: decoder layers ``first..last`` (1-based)
    on ``positions`` new positions, the first of them ``offset`` positions after its block's start (position ``j``
    of the block attends to ``context + j + 1`` positions: the cache and itself), followed by ``exits`` exit
    evaluations (a tuned exit's translator, if any, and the LM head) and ``heads`` evaluations of the model's own
    LM head. The unit both the offline walk (:mod:`toolkit.analysis.llm.exits`) and the decoder
    (:class:`toolkit.nn.causal.decode.SelfSpeculativeDecoder`, which records the passes it ran) count in."""

    first: int
    last: int
    positions: int
    offset: int = 0
    exits: int = 0
    heads: int = 0

    @property
    def n_layers(self) -> int:
        return self.last - self.first + 1

    def attended(self, context) -> np.ndarray:
        """Attended positions summed over the pass's positions, for a block starting with ``context`` cached."""
        c, n = np.asarray(context, dtype=np.float64), self.positions
        return n * (c + self.offset + 1) + n * (n - 1) / 2


def self_speculative_passes(draft_layer: int, draft_length: int, n_layers: int) -> tuple[Pass, ...]:
    """The passes of one self-speculative block (LayerSkip) drafting ``draft_length`` tokens with layer
    ``draft_layer``'s exit in a model of ``n_layers`` layers: the one definition the cost model and the decoder share.

    The block feeds the last accepted token and drafts ``d`` tokens: d passes through layers 1..k, each followed by
    the exit. Verification runs the last draft token (which has not been through layers 1..k yet) through layers
    1..k, then layers k+1..L for all d + 1 new positions (the first d reuse the draft's layer-k states) and the LM
    head at each. ``d = 0`` (one token of budget left) is one plain step: layers 1..L and the head.

    >>> [(p.first, p.last, p.positions, p.offset, p.exits, p.heads) for p in self_speculative_passes(2, 2, 4)]
    [(1, 2, 1, 0, 1, 0), (1, 2, 1, 1, 1, 0), (1, 2, 1, 2, 0, 0), (3, 4, 3, 0, 0, 3)]
    """
    k, d, L = int(draft_layer), int(draft_length), int(n_layers)
    if d < 0 or not 1 <= k <= L or (d and k == L):
        raise ValueError(f"need 1 <= draft_layer < {L} and draft_length >= 0, got {k}, {d}")
    if d == 0:
        return (Pass(1, L, 1, heads=1),)
    draft = tuple(Pass(1, k, 1, offset=j, exits=1) for j in range(d))
    return (*draft, Pass(1, k, 1, offset=d), Pass(k + 1, L, d + 1, heads=d + 1))


def passes_flops(passes, context, dims: CausalLMDims, *, exit_overhead: float = 0.0) -> np.ndarray:
    """FLOPs of ``passes`` (a block's :class:`Pass` records) for a block starting with ``context`` cached positions
    (array or scalar): layers at their attended positions, the model's head per position evaluated, and per exit
    evaluation its head plus ``exit_overhead`` (a tuned exit's :func:`translator_flops`)."""
    c = np.asarray(context, dtype=np.float64)
    per_position = float(layer_flops(1, dims)) - 4.0 * dims.q_dim  # a layer without attention, one position
    total = np.zeros_like(c)
    for p in passes:
        total = total + p.n_layers * (p.positions * per_position + 4.0 * dims.q_dim * p.attended(c))
        total = total + p.heads * head_flops(dims) + p.exits * (head_flops(dims) + exit_overhead)
    return total


def passes_reads(passes, dims: CausalLMDims, *, exit_overhead: float = 0.0) -> float:
    """Model weights read by ``passes``, in FLOPs at one position without attention (2 x parameters; the unit of
    memory-bound decoding): each pass reads its layers once whatever its positions, and the LM head once if it
    evaluates the head; an exit evaluation reads the head and ``exit_overhead`` (a translator)."""
    w, h = layer_weight_flops(dims), head_flops(dims)
    return float(sum(p.n_layers * w + (h if p.heads else 0.0) + p.exits * (h + exit_overhead) for p in passes))


def self_speculative_block_flops(context, draft_layer: int, draft_length: int, dims: CausalLMDims, *,
                                 exit_overhead: float = 0.0):
    """FLOPs of one self-speculative block (LayerSkip) that starts with ``context`` positions already in the cache:
    :func:`passes_flops` of :func:`self_speculative_passes` (d draft steps through layers 1..k and the exit; the
    verify pass runs the last draft token through layers 1..k, then layers k+1..L and the LM head at all d + 1 new
    positions). It emits (accepted + 1) tokens; rejected positions' caches are dropped.
    """
    if int(draft_length) < 1:
        raise ValueError(f"need 1 <= draft_layer < {dims.layers} and draft_length >= 1, got {draft_layer}, "
                         f"{draft_length}")
    return passes_flops(self_speculative_passes(draft_layer, draft_length, dims.layers), context, dims,
                        exit_overhead=exit_overhead)


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
