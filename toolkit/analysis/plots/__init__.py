"""Drawing only (every plot takes ``ax=None``): curves, bands and reliability diagrams (:mod:`.curves`) and the
LLM figures (:mod:`.llm`).
"""

# the package's face: what the module of the same name held before the layout by concern
from .curves import (  # noqa: F401
    FLOPS_LABEL,
    cost_axis_label,
    plot_curve,
    plot_point,
    plot_reliability,
    plot_score_distributions,
    plot_tradeoff,
    reliability_grid,
    score_distributions,
    speedup_axis,
    speedup_label,
)
