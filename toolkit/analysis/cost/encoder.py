"""The cost model (DESIGN.md), stated once: FLOPs an example spends until it exits.

A transformer layer with hidden size H, attention width A (heads x head size; A = H unless pruned),
FFN width I and n tokens costs ``2n(3HA + AH) + 2n(2HI) + 4n^2 A`` FLOPs (projections, FFN, scores and
weighted sum), which is ``2n(4H^2 + 2HI) + 4n^2 H`` when A = H. An exit head costs mean pooling (nH) plus
its linear layer (2HC). Embedding lookups, layer norms and activations are not counted. A cascade member's
cost is its whole forward (every layer and its head); an example escalated past it pays all of it.
All costs are in FLOPs (multiply-adds counted as 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from toolkit.analysis.cost.families import layer_widths

COST_DEFINITION = ("FLOPs = sum over layers run of 2n(4H^2+2HI)+4n^2H (+ pruned-width variant) "
                   "+ exit heads passed (nH + 2HC) + earlier cascade members in full; n = tokens of the example")


def layer_flops(n_tokens, hidden: int, intermediate: int, attn_dim: int | None = None):
    """FLOPs of one encoder layer on ``n_tokens`` tokens (array or scalar)."""
    n = np.asarray(n_tokens, dtype=np.float64)
    a = hidden if attn_dim is None else attn_dim
    return 2 * n * (3 * hidden * a + a * hidden) + 2 * n * (2 * hidden * intermediate) + 4 * n * n * a


def head_flops(n_tokens, hidden: int, num_labels: int):
    """FLOPs of one exit head: mean pooling plus a linear layer."""
    n = np.asarray(n_tokens, dtype=np.float64)
    return n * hidden + 2.0 * hidden * num_labels


def exit_flops(n_tokens, config: Mapping, exit_layers: Sequence[int], num_labels: int) -> np.ndarray:
    """Cumulative FLOPs ``[N, len(exit_layers)]`` when each exit of one multi-exit model has produced its logits.

    Exit e's cost covers layers 1..exit_layers[e] and the heads of exits 0..e (an example evaluates every
    head it passes on the way).
    """
    n = np.atleast_1d(np.asarray(n_tokens, dtype=np.float64))
    widths = layer_widths(config)
    per_layer = np.stack([layer_flops(n, h, i, a) for h, i, a in widths], axis=1)  # [N, L]
    cum_layers = np.cumsum(per_layer, axis=1)
    h = int(config["hidden_size"])
    head = head_flops(n, h, num_labels)[:, None]
    idx = np.asarray(exit_layers) - 1
    return cum_layers[:, idx] + head * np.arange(1, len(exit_layers) + 1)[None, :]
