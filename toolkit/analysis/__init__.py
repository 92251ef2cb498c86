"""The analysis side: everything after the cache, in numpy, pandas, scipy and matplotlib. Never imports torch.

Cache kinds (:mod:`toolkit.caches`: classification, Swift/Super generation, per-token LLM exits) feed one engine
(:mod:`.engine`: sweeps, thresholds, bootstrap bands, risk control, choosing on cal, evaluating on test,
cross-fitting, comparisons), drawn by :mod:`.plots`. Beside it, by concern: :mod:`.scores`, :mod:`.metrics` (task,
generation, calibration), :mod:`.cost` (encoder, seq2seq, causal LM, predicted time), :mod:`.llm` (what is only
per-token), :mod:`.explore`, and the policies, reliability, routing and operating-point modules.
"""

from toolkit.analysis import engine
from toolkit.analysis.engine import (
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
from toolkit.analysis.llm.exits import from_llm_tokens  # registers the engine adapter of LLM token caches
from toolkit.caches.classification import Cache, CacheError, from_arrays, load_cache, save_cache
from toolkit.caches.generation import GenCache, Generation, load_generation_cache, save_generation_cache
from toolkit.caches.inputs import from_log_probs, from_probabilities
from toolkit.caches.tokens import LLMTokenCache, load_llm_cache

__all__ = ["Cache", "CacheError", "from_arrays", "from_probabilities", "from_log_probs", "load_cache", "save_cache",
           "GenCache", "Generation",
           "load_generation_cache", "save_generation_cache", "engine", "Staged", "staged", "sweep", "evaluate",
           "bootstrap_bands", "threshold_grid", "pareto_front", "summarize", "choose", "compare", "crossfit",
           "LLMTokenCache", "load_llm_cache", "from_llm_tokens"]
