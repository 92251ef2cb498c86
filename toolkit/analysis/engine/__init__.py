"""The sweep engine: early exit, cascades, Swift/Super routing, seq2seq routing and per-token exits are one
computation on a :class:`Staged` view (per example and stage: confidence, cost, additive outcome statistics).

Every cache kind supplies its view through :func:`staged` (one adapter per kind); everything else is written once:

- describe a split: :func:`sweep` (every distinct threshold, exact), :func:`evaluate` (given thresholds, global
  or per stage), :func:`bootstrap_bands`, :func:`summarize` (optima on the curve's own data, named upper bounds),
  :func:`pareto_front`, :func:`oracle`;
- choose on cal, report on test: :func:`choose` -> :class:`OperatingPoint` -> :meth:`OperatingPoint.evaluate`
  (:func:`threshold_on_sweep`: the same drop/budget rules on a sweep already computed);
  :func:`crossfit` on one split; each example's stage under a point: :meth:`OperatingPoint.stops`,
  :meth:`CrossFit.stops` (with :func:`evaluation_at_stages`: any statistic of the point, e.g. a paired drop
  interval); risk control: :func:`risk_table`, :func:`certify`;
- compare policies: :func:`compare` (paired bootstrap at equal budgets, over examples and training seeds),
  :func:`compare_speedups` (the same for the speed-up at a tolerated drop), :func:`compare_crossfit` (the
  operating points each policy chooses on held-out halves, realised), :func:`compare_confident` (the metric
  on the examples each side is confident on, CascadeBERT's reliability question).

Every speed-up divides the named ``reference`` cost (default: the last member alone) by the policy's.

>>> import toolkit
>>> from toolkit.analysis import engine
>>> s = engine.staged(toolkit.load_cache("data/sst2/cascade-test.parquet"))  # doctest: +SKIP
"""

from toolkit.analysis.engine.adapters import (
    ClassMetrics,
    GenerationMetrics,
    from_classification,
    from_generation,
    stage_layers,
    staged,
)
from toolkit.analysis.engine.choose import (
    RULES,
    CrossFit,
    OperatingPoint,
    choose,
    crossfit,
    halves,
    threshold_on_sweep,
)
from toolkit.analysis.engine.compare import (
    Comparison,
    compare,
    compare_confident,
    compare_crossfit,
    compare_speedups,
    frontier_at_budgets,
    speedup_at_drop,
)
from toolkit.analysis.engine.curves import (
    bootstrap_bands,
    bootstrap_statistic,
    breakpoints,
    cluster_weights,
    cumulate,
    evaluate,
    evaluate_stages,
    evaluation,
    evaluation_at_stages,
    oracle,
    pareto_front,
    resample_weights,
    summarize,
    sweep,
    threshold_grid,
    weight_blocks,
)
from toolkit.analysis.engine.results import Bands, Curve, Evaluation, Summary, jsonable
from toolkit.analysis.engine.risk import Certified, RiskTable, certify, min_examples, risk_table
from toolkit.analysis.engine.staged import MeanMetrics, Staged, exit_stage

__all__ = [
    "Staged", "MeanMetrics", "exit_stage", "staged", "from_classification", "from_generation", "ClassMetrics",
    "GenerationMetrics", "stage_layers", "sweep", "evaluate", "evaluate_stages", "evaluation", "evaluation_at_stages",
    "bootstrap_bands", "bootstrap_statistic", "threshold_grid", "pareto_front", "summarize", "oracle", "resample_weights", "weight_blocks",
    "cluster_weights", "breakpoints",
    "cumulate", "Curve", "Bands", "Evaluation", "Summary", "jsonable", "risk_table", "certify", "min_examples",
    "RiskTable", "Certified", "choose", "threshold_on_sweep", "crossfit", "halves", "OperatingPoint", "CrossFit", "RULES", "compare",
    "compare_speedups", "compare_crossfit", "compare_confident", "Comparison", "frontier_at_budgets", "speedup_at_drop",
]
