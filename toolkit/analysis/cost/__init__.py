"""Cost models: encoder exits (:mod:`.encoder`), model families' widths (:mod:`.families`), seq2seq generation
(:mod:`.seq2seq`), causal LMs (:mod:`.causal`), and predicted time from a measured profile (:mod:`.latency`).
"""

# the package's face: what the module of the same name held before the layout by concern
from .encoder import (  # noqa: F401
    COST_DEFINITION,
    exit_flops,
    head_flops,
    layer_flops,
)
