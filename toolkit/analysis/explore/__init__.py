"""The interactive cache explorer: the widget app (:mod:`.app`) and one view per cache kind (:mod:`.views`).
"""

# the package's face: what the module of the same name held before the layout by concern
from .app import (  # noqa: F401
    KEEP_SETTINGS,
    LIVE_CLASS,
    MAX_CURVE_POINTS,
    N_BINS,
    SNAPSHOT_CLASS,
    SNAPSHOT_CSS,
    Explorer,
    explore,
    format_value,
    reliability_bins,
)
