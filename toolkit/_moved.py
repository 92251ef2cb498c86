"""Old module paths, kept importable for one release after the layout by concern (0.3).

Each old path imports as the very module now at the new path (same object: monkeypatching either patches both), with
a ``DeprecationWarning`` naming the new path. Packages that took over an old module's name (``toolkit.data``,
``toolkit.analysis.scores``, ``.metrics``, ``.cost``, ``.llm``, ``.plots``, ``.explore``) re-export its public names
instead. The table is also the record of what moved where.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "toolkit.analysis.cache_io": "toolkit.caches.io",
    "toolkit.analysis.cache": "toolkit.caches.classification",
    "toolkit.analysis.generation_cache": "toolkit.caches.generation",
    "toolkit.analysis.llm_cache": "toolkit.caches.tokens",
    "toolkit.analysis.identity": "toolkit.caches.identity",
    "toolkit.analysis.compose": "toolkit.caches.compose",
    "toolkit.analysis.upgrade": "toolkit.caches.upgrade",
    "toolkit.analysis.kinds": "toolkit.caches.kinds",
    "toolkit.analysis.inputs": "toolkit.caches.inputs",
    "toolkit.analysis.synthetic": "toolkit.testing",
    "toolkit.analysis.token_scores": "toolkit.analysis.scores.tokens",
    "toolkit.analysis.quality": "toolkit.analysis.metrics.generation",
    "toolkit.analysis.calibration": "toolkit.analysis.metrics.calibration",
    "toolkit.analysis.families": "toolkit.analysis.cost.families",
    "toolkit.analysis.generation_cost": "toolkit.analysis.cost.seq2seq",
    "toolkit.analysis.llm_cost": "toolkit.analysis.cost.causal",
    "toolkit.analysis.latency": "toolkit.analysis.cost.latency",
    "toolkit.analysis.llm_intervals": "toolkit.analysis.llm.intervals",
    "toolkit.analysis.llm_plots": "toolkit.analysis.plots.llm",
    "toolkit.analysis.explore_views": "toolkit.analysis.explore.views",
    "toolkit.nn.families": "toolkit.nn.common.families",
    "toolkit.nn.inference": "toolkit.nn.common.inference",
    "toolkit.nn.parts": "toolkit.nn.common.parts",
    "toolkit.nn.profile": "toolkit.nn.common.profile",
    "toolkit.nn.models": "toolkit.nn.encoder.models",
    "toolkit.nn.train": "toolkit.nn.encoder.train",
    "toolkit.nn.losses": "toolkit.nn.encoder.losses",
    "toolkit.nn.collect": "toolkit.nn.encoder.collect",
    "toolkit.nn.runtime": "toolkit.nn.encoder.runtime",
    "toolkit.nn.prune": "toolkit.nn.encoder.prune",
    "toolkit.nn.probe": "toolkit.nn.encoder.probe",
    "toolkit.nn.difficulty": "toolkit.nn.encoder.difficulty",
    "toolkit.nn.seq2seq_models": "toolkit.nn.seq2seq.models",
    "toolkit.nn.seq2seq_train": "toolkit.nn.seq2seq.train",
    "toolkit.nn.generate": "toolkit.nn.seq2seq.generate",
    "toolkit.nn.causal_lm": "toolkit.nn.causal.models",
    "toolkit.nn.llm_exits": "toolkit.nn.causal.exits",
    "toolkit.nn.llm_collect": "toolkit.nn.causal.collect",
    "toolkit.nn.llm_runtime": "toolkit.nn.causal.decode",
    "toolkit.nn.llm_reference": "toolkit.nn.causal.reference",
    "toolkit.text2text": "toolkit.data.text2text",
    "toolkit.llm_prompts": "toolkit.data.prompts",
    "toolkit.provenance": "toolkit.data.provenance",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        warnings.warn(f"{module.__name__} moved to {self.new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        # the import system returns whatever sys.modules holds under the old name once this returns
        sys.modules[module.__name__] = importlib.import_module(self.new)


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        return importlib.util.spec_from_loader(fullname, _Alias(new)) if new else None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
