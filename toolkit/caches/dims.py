"""The sizes of a causal LM that its cost model needs, recorded in every LLM token cache's header.

Header data, not analysis: the cost model (:mod:`toolkit.analysis.cost.causal`) reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np


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
