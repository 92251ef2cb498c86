"""One record per cache kind: the only table that says how a kind is loaded, saved, upgraded, viewed by the engine
and shown in the explorer. Everything that switches on a cache's kind (the loader's messages, ``upgrade-cache``,
the CLI, the explorer, the notebooks' reader, the byte-flip scan) reads :data:`KINDS`; :func:`load` reads a cache
of any kind.

>>> sorted(KINDS)
['classification', 'generation', 'llm_tokens']
>>> KINDS["llm_tokens"].loader_name
'toolkit.analysis.llm_cache.load_llm_cache'

Imports are lazy (a record names its functions by module and attribute), so this module imports nothing heavy
and no torch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from .cache_io import CacheError, read_header


@dataclass(frozen=True)
class CacheKind:
    """How one cache kind is handled. ``module`` holds ``cls``, ``load``, ``save`` and ``schema``, the header's
    schema version constant; ``explorer_view``: the class in :mod:`toolkit.analysis.explore_views`; the engine
    adapter is registered on ``cls`` with ``toolkit.analysis.engine.staged`` (``adapter`` names it)."""

    name: str
    module: str
    cls: str
    load: str
    save: str
    schema: str
    adapter: str
    explorer_view: str
    describe: str

    def _get(self, attr: str):
        return getattr(importlib.import_module(self.module), attr)

    @property
    def loader_name(self) -> str:
        return f"{self.module}.{self.load}"

    @property
    def cache_class(self) -> type:
        return self._get(self.cls)

    @property
    def schema_version(self) -> int:
        return self._get(self.schema)

    def loader(self):
        return self._get(self.load)

    def saver(self):
        return self._get(self.save)

    def view(self):
        """The explorer's view class of this kind."""
        return getattr(importlib.import_module("toolkit.analysis.explore_views"), self.explorer_view)


KINDS: dict[str, CacheKind] = {k.name: k for k in (
    CacheKind("classification", "toolkit.analysis.cache", "Cache", "load_cache", "save_cache", "SCHEMA_VERSION",
              "toolkit.analysis.engine.from_classification", "ClassificationView",
              "staged logits of exits or cascade members"),
    CacheKind("generation", "toolkit.analysis.generation_cache", "GenCache", "load_generation_cache",
              "save_generation_cache", "GEN_SCHEMA_VERSION", "toolkit.analysis.engine.from_generation",
              "GenerationView", "generations of encoder-decoder models (Swift/Super)"),
    CacheKind("llm_tokens", "toolkit.analysis.llm_cache", "LLMTokenCache", "load_llm_cache", "save_llm_cache",
              "LLM_SCHEMA_VERSION", "toolkit.analysis.llm.from_llm_tokens", "LLMTokenView",
              "per-token exit statistics of a causal LM"),
)}


def kind_of(path: str | os.PathLike) -> CacheKind:
    """The record of a cache file's kind, from its header (the file is checked to be a regular file first, so a
    FIFO or device is refused without reading it; a header that is not a JSON object, or an unknown kind, is a
    :class:`CacheError` naming the file)."""
    head = read_header(path)  # regular-file check, footer, JSON object
    name = head.get("kind", "classification")
    if not isinstance(name, str) or name not in KINDS:
        raise CacheError(f"{path}: header key 'kind' is {name!r}; this toolkit reads {sorted(KINDS)}")
    return KINDS[name]


def kind_for(cache) -> CacheKind:
    """The record of an in-memory cache (by its class)."""
    for k in KINDS.values():
        if isinstance(cache, k.cache_class):
            return k
    raise TypeError(f"{type(cache).__name__} is not a cache kind this toolkit knows ({sorted(KINDS)})")


def load(path: str | os.PathLike, **options):
    """Load, verify and validate a cache of any kind (``options``: the kind's loader's, e.g. ``verify_data=``)."""
    return kind_of(path).loader()(path, **options)


def save(cache, path: str | os.PathLike):
    """Write a cache of any kind atomically, with checksums and a content hash."""
    return kind_for(cache).saver()(cache, path)
