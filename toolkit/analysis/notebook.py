"""Deprecated: the notebooks' former helper module, kept importable for one release.

Its parts moved to where they belong: the shipped-cache catalogue and the protocol constants to
:mod:`toolkit.zoo.catalogue`, rendering (intervals as text, tables of results, conclusions, figures) to
:mod:`toolkit.report`, cross-fitted temperatures to :mod:`toolkit.analysis.metrics.calibration`, and the paired drop
interval to the engine (:meth:`toolkit.analysis.engine.Evaluation.drop_interval`; ``paired_drop`` and
``upper_bound_point`` are gone: :func:`toolkit.analysis.engine.evaluation_at_stages` at :func:`stops` gives any
point's paired drop interval, :func:`toolkit.analysis.engine.threshold_on_sweep` on test's own curve its
test-selected point). The names below re-export them.
"""

from __future__ import annotations

import numpy as np

from toolkit.analysis.engine import CrossFit, OperatingPoint, Staged, halves, staged  # noqa: F401
from toolkit.analysis.metrics.calibration import CrossfitTemperatures, crossfit_temperatures  # noqa: F401
from toolkit.report import (  # noqa: F401
    ci,
    conclude,
    crossfit_table,
    figure_html,
    merge_identical,
    point_row,
    round_frame,
    setup,
    share,
    show,
)
from toolkit.zoo.catalogue import (  # noqa: F401
    CI,
    N_BOOT,
    REFERENCE,
    REFERENCE_TEXT,
    SEED,
    SPLITS,
    SeedCaches,
    available,
    cache_file,
    data_dir,
    load,
    load_seeds,
    protocol,
    read,
    recipe,
    seeds_on_disk,
)


def view(cache, **options) -> Staged:
    """The engine's view of a cache (:func:`toolkit.analysis.engine.staged`, whose default reference is the
    notebooks' :data:`~toolkit.zoo.catalogue.REFERENCE`)."""
    options.setdefault("reference", REFERENCE)
    return staged(cache, **options)


def stops(view: Staged, point) -> np.ndarray:
    """Stage where each example of ``view`` stops ``[N]`` under ``point``: a threshold (global or per stage), an
    :class:`~toolkit.analysis.engine.OperatingPoint` (its threshold) or a
    :class:`~toolkit.analysis.engine.CrossFit` of this view (each half by the threshold chosen on the other). With
    :func:`toolkit.analysis.engine.evaluation_at_stages` (``n_boot=``) it gives any point's paired drop interval."""
    if isinstance(point, CrossFit):
        a, b = halves(view.example_ids, seed=point.seed, strata=view.strata)  # the halves crossfit drew
        out = np.empty(view.n_examples, dtype=np.int64)
        out[b] = view.subset(b).stage_of(point.folds[0].threshold)  # fold 1: chosen on half A, applied to B
        out[a] = view.subset(a).stage_of(point.folds[1].threshold)
        return out
    return view.stage_of(point.threshold if isinstance(point, OperatingPoint) else point)
