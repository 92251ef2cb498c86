"""Model families, analysis half: how to read the sizes the cost model needs from a config.

One :class:`CostFamily` per family (encoder classifiers: BERT, RoBERTa, MPNet ...); the torch half (the runtime's
layer steps, prunable linear layers) is :mod:`toolkit.nn.common.families`. A new family is one entry here and one there.

>>> family_of({"model_type": "roberta"}).name
'bert-like'
>>> layer_widths({"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 2, "intermediate_size": 16,
...               "num_attention_heads": 2, "layer_num_heads": [1, 2]})
[(8, 16, 4), (8, 16, 8)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CostFamily:
    """``model_types``: the HF ``model_type`` values of the family; ``layer_widths(config) -> [(hidden,
    intermediate, attention width)]`` per encoder layer (pruned models list their own widths)."""

    name: str
    model_types: tuple[str, ...]
    layer_widths: Callable[[Mapping], list[tuple[int, int, int]]]


def _bert_like_widths(config: Mapping) -> list[tuple[int, int, int]]:
    h = int(config["hidden_size"])
    L = int(config["num_hidden_layers"])
    inter = config.get("layer_intermediate_sizes") or [int(config["intermediate_size"])] * L
    head_dim = h // int(config["num_attention_heads"])
    heads = config.get("layer_num_heads") or [int(config["num_attention_heads"])] * L
    return [(h, int(inter[i]), int(heads[i]) * head_dim) for i in range(L)]


FAMILIES: dict[str, CostFamily] = {f.name: f for f in (
    CostFamily("bert-like", ("bert", "roberta", "xlm-roberta", "electra", "ernie", "mpnet", "distilroberta"),
               _bert_like_widths),
)}


def family_of(config: Mapping) -> CostFamily:
    """The family of an HF config dict; a config without ``model_type`` is read as BERT-like."""
    kind = config.get("model_type", "bert")
    for f in FAMILIES.values():
        if kind in f.model_types:
            return f
    raise ValueError(f"no cost model for model_type {kind!r}; add a CostFamily to toolkit.analysis.cost.families.FAMILIES "
                     f"(known: {sorted(t for f in FAMILIES.values() for t in f.model_types)})")


def layer_widths(config: Mapping) -> list[tuple[int, int, int]]:
    """Per-layer (hidden, intermediate, attention width) of an encoder config, read by its family."""
    return family_of(config).layer_widths(config)
