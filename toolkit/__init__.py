"""Adaptive-inference analysis toolkit: collect every exit's logits once, answer "when should it stop?" offline.

Two sides meet at the cache. :mod:`toolkit.analysis` (numpy, pandas, scipy, matplotlib) reads caches and computes
everything after them; ``import toolkit`` loads only that side and never torch. :mod:`toolkit.nn` (torch and
transformers, the ``nn`` extra) trains models and collects caches. :mod:`toolkit.zoo` rebuilds and checks the
shipped caches; :mod:`toolkit.cli` is the ``toolkit`` command.
"""

from toolkit import _moved
from toolkit.caches.classification import Cache, CacheError, from_arrays, load_cache, save_cache
from toolkit.caches.generation import GenCache, load_generation_cache, save_generation_cache
from toolkit.caches.kinds import load
from toolkit.policy import Policy, PolicyError

_moved.install()  # old module paths (before the layout by concern) still import, with a DeprecationWarning

__version__ = "0.3.0"
__all__ = ["Cache", "CacheError", "from_arrays", "load", "load_cache", "save_cache", "GenCache",
           "load_generation_cache", "save_generation_cache", "Policy", "PolicyError", "__version__"]
