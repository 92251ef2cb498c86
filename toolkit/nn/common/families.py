"""Model families, torch half: what the runtime steps through and what width pruning may cut, per family.

One :class:`Family` per encoder family (the analysis half, reading cost dimensions from a config, is
:mod:`toolkit.analysis.cost.families`). ``layers(backbone)`` gives the encoder layers the runtime calls one by one;
``layer_extras(backbone, hidden)`` the per-batch arguments each layer takes after ``(hidden, mask)`` (MPNet's relative
position bias) and whether they are sliced with the rows; ``parts(layer)`` names a layer's prunable linear layers
(None: width pruning is not supported for the family). A new family is one entry in :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


class BertLayerParts:
    """The prunable linear layers of a BERT-style layer (BERT, RoBERTa, MiniLM): ``attention.self.{query,key,value}``,
    ``attention.output.dense``, ``intermediate.dense``, ``output.dense``."""

    def __init__(self, layer: nn.Module):
        self.layer = layer

    @property
    def head_size(self) -> int:
        return self.layer.attention.self.attention_head_size

    @property
    def n_heads(self) -> int:
        return self.layer.attention.self.query.out_features // self.head_size

    @property
    def qkv(self) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        sa = self.layer.attention.self
        return sa.query, sa.key, sa.value

    @property
    def out(self) -> nn.Linear:
        return self.layer.attention.output.dense

    @property
    def up(self) -> nn.Linear:
        return self.layer.intermediate.dense

    @property
    def down(self) -> nn.Linear:
        return self.layer.output.dense

    def replace(self, *, qkv, out, up, down) -> None:
        """Swap in sliced linear layers (heads: ``qkv`` rows and ``out`` columns; neurons: ``up`` rows, ``down``
        columns) and record the new head count."""
        sa = self.layer.attention.self
        sa.query, sa.key, sa.value = qkv
        sa.num_attention_heads = qkv[0].out_features // self.head_size
        sa.all_head_size = qkv[0].out_features
        self.layer.attention.output.dense = out
        self.layer.intermediate.dense = up
        self.layer.output.dense = down


@dataclass(frozen=True)
class Family:
    name: str
    matches: Callable[[nn.Module], bool]
    layers: Callable[[nn.Module], nn.ModuleList]
    layer_extras: Callable[[nn.Module, object], tuple]
    parts: Callable[[nn.Module], BertLayerParts] | None = None


def _is_bert_like(backbone) -> bool:
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    return layers is not None and len(layers) > 0 and hasattr(getattr(layers[0], "attention", None), "self") and \
        hasattr(layers[0].attention.self, "query")


def _encoder_layers(backbone) -> nn.ModuleList:
    return backbone.encoder.layer


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("mpnet", lambda bb: hasattr(getattr(bb, "encoder", None), "compute_position_bias"), _encoder_layers,
           lambda bb, hidden: (bb.encoder.compute_position_bias(hidden),)),
    Family("bert-like", _is_bert_like, _encoder_layers, lambda bb, hidden: (), BertLayerParts),
)}


def family_of(backbone: nn.Module) -> Family:
    """The family of an encoder backbone (``MultiExitModel.backbone`` or any ``AutoModel``)."""
    for f in FAMILIES.values():
        if f.matches(backbone):
            return f
    raise NotImplementedError(f"no model family for {type(backbone).__name__}; add one to "
                              f"toolkit.nn.common.families.FAMILIES (known: {list(FAMILIES)})")
