"""The analysis side: everything after the cache, in numpy, pandas, scipy and matplotlib. Never imports torch.

Cache kinds (:mod:`.cache` for staged classification predictions, :mod:`.generation_cache` for Swift/Super
generation), scores, policies, exact sweeps, metrics, calibration, reliability, risk control, operating points,
routing, the cost models, and plots.
"""

from .cache import Cache, CacheError, from_arrays, load_cache, save_cache
from .generation_cache import GenCache, Generation, load_generation_cache, save_generation_cache

__all__ = ["Cache", "CacheError", "from_arrays", "load_cache", "save_cache", "GenCache", "Generation",
           "load_generation_cache", "save_generation_cache"]
