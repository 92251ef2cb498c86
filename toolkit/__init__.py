"""Adaptive-inference analysis toolkit: collect every exit's logits once, answer "when should it stop?" offline.

``import toolkit`` imports no torch: the cache, scores, sweeps, calibration, reliability and plots are numpy/pandas.
Training (:mod:`toolkit.train`) and collection (:mod:`toolkit.collect`) import torch when used.
"""

from .cache import Cache, CacheError, from_arrays, load_cache, save_cache

__version__ = "0.1.0"
__all__ = ["Cache", "CacheError", "from_arrays", "load_cache", "save_cache", "__version__"]
