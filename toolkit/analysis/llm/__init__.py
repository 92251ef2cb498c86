"""What is only per-token in a causal LM's exits: layer reliability, the self-speculative walk, per-layer
thresholds (:mod:`.exits`) and prompt-clustered intervals (:mod:`.intervals`).
"""

from toolkit._api import renamed as _renamed

# the package's face: what the module of the same name held before the layout by concern
from .exits import (  # noqa: F401
    SpeculativeBlocks,
    SpeculativeChoice,
    acceptance_counts,
    calm_layer_thresholds,
    choose_self_speculative,
    exit_overhead_flops,
    from_llm_tokens,
    full_model_reads,
    layer_confidence,
    layer_reliability,
    layer_reliability_curve,
    memory_bound_ceiling,
    self_speculative,
    self_speculative_blocks,
    self_speculative_by_prompt,
)

__getattr__ = _renamed({"confidence": ("layer_confidence", layer_confidence)}, module=__name__)
