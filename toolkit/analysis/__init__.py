"""The analysis side: everything after the cache, in numpy, pandas, scipy and matplotlib. Never imports torch.

Cache kinds (:mod:`.cache` for staged classification predictions, :mod:`.generation_cache` for Swift/Super
generation, :mod:`.llm_cache` for per-token exits of a causal LM) feed one engine (:mod:`.engine`: sweeps, thresholds, bootstrap bands, risk control, choosing on cal,
evaluating on test, cross-fitting, comparisons), drawn by :mod:`.plots`. Beside it: scores, metrics, calibration,
reliability, the cost models, routing descriptions.
"""

from . import engine
from .cache import Cache, CacheError, from_arrays, load_cache, save_cache
from .engine import (
    Staged,
    bootstrap_bands,
    choose,
    compare,
    crossfit,
    evaluate,
    pareto_front,
    staged,
    summarize,
    sweep,
    threshold_grid,
)
from .generation_cache import GenCache, Generation, load_generation_cache, save_generation_cache
from .inputs import from_log_probs, from_probabilities
from .llm import from_llm_tokens  # registers the engine adapter of LLM token caches
from .llm_cache import LLMTokenCache, load_llm_cache

__all__ = ["Cache", "CacheError", "from_arrays", "from_probabilities", "from_log_probs", "load_cache", "save_cache",
           "GenCache", "Generation",
           "load_generation_cache", "save_generation_cache", "engine", "Staged", "staged", "sweep", "evaluate",
           "bootstrap_bands", "threshold_grid", "pareto_front", "summarize", "choose", "compare", "crossfit",
           "LLMTokenCache", "load_llm_cache", "from_llm_tokens"]
