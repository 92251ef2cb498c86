"""Small frictions a newcomer hit (issue 28, item 5): units, wording, reprs, stage numbering, plot axes, packaging."""

from __future__ import annotations

import numpy as np

from toolkit.caches.classification import from_arrays


def test_from_arrays_default_stage_names_count_from_one():
    c = from_arrays(np.zeros((4, 3, 2)) + [2.0, -1.0], [0, 0, 1, 1], [1.0, 2.0, 3.0])
    assert c.stages == ["stage1", "stage2", "stage3"]
