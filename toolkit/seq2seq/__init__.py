"""Seq2seq Swift/Super energy routing (E-LANG for encoder-decoder generation).

Data flow, mirroring the classification toolkit: :mod:`.data` (text-to-text GLUE, WMT21 translation) ->
:mod:`.models` (warm-started or hub encoder-decoders) -> :mod:`.train` (text-to-text fine-tuning) ->
:mod:`.collect` (greedy generation with per-step logit statistics) -> :mod:`.cache` (the generation cache) ->
:mod:`.scores` (token scores and sequence aggregation) -> :mod:`.routing` (exact offline routing sweeps), with the
cost model in :mod:`.cost` and quality metrics in :mod:`.quality`. Everything after the cache is numpy only.
"""

from .cache import GenCache, Generation, load_generation_cache, save_generation_cache
from .cost import GENERATION_COST_DEFINITION, Seq2SeqDims, generation_flops, seq2seq_dims
from .quality import corpus_bleu, corpus_chrf, exact_match
from .routing import (
                      area_gain,
                      compare_routers,
                      evaluate_route,
                      oracle_curve,
                      references,
                      route_curve,
                      route_sweep,
)
from .scores import AGGREGATIONS, TOKEN_SCORES, aggregate, sequence_confidence, token_scores

__all__ = ["GenCache", "Generation", "load_generation_cache", "save_generation_cache", "GENERATION_COST_DEFINITION",
           "Seq2SeqDims", "generation_flops", "seq2seq_dims", "corpus_bleu", "corpus_chrf", "exact_match",
           "area_gain", "compare_routers", "evaluate_route", "oracle_curve", "references", "route_curve",
           "route_sweep", "AGGREGATIONS", "TOKEN_SCORES", "aggregate", "sequence_confidence", "token_scores"]
