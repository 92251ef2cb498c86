"""Deprecated: the notebooks' former helper module, kept importable for one release.

Its parts moved to where they belong: the shipped-cache catalogue and the protocol constants to
:mod:`toolkit.zoo.catalogue`, rendering (intervals as text, tables of results, conclusions, figures) to
:mod:`toolkit.report`, cross-fitted temperatures to :mod:`toolkit.analysis.metrics.calibration`, and the paired drop
interval to the engine (:meth:`toolkit.analysis.engine.Evaluation.drop_interval`; ``paired_drop`` and
``upper_bound_point`` are gone: :func:`toolkit.analysis.engine.evaluation_at_stages` at a point's stops gives any
point's paired drop interval, :func:`toolkit.analysis.engine.threshold_on_sweep` on test's own curve its
test-selected point), and the stops of a point to the engine's results: ``point.stops(view)`` of an
:class:`~toolkit.analysis.engine.OperatingPoint` or a :class:`~toolkit.analysis.engine.CrossFit`
(``view.stage_of(threshold)`` for a bare threshold). The names below re-export them.
"""

from __future__ import annotations

import warnings

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
    """Deprecated: ``point.stops(view)`` (:meth:`~toolkit.analysis.engine.OperatingPoint.stops`,
    :meth:`~toolkit.analysis.engine.CrossFit.stops`), or ``view.stage_of(threshold)`` for a threshold. Stage where
    each example of ``view`` stops ``[N]`` under ``point`` (a cross-fit: each half by the threshold chosen on the
    other)."""
    warnings.warn("toolkit.analysis.notebook.stops(view, point) is deprecated: use point.stops(view) for an "
                  "engine.OperatingPoint or engine.CrossFit, view.stage_of(threshold) for a threshold",
                  DeprecationWarning, stacklevel=2)
    if isinstance(point, (OperatingPoint, CrossFit)):
        return point.stops(view)
    return view.stage_of(point)
