"""One record per cache kind (:data:`KINDS`, defined beside the shared I/O in :mod:`.cache_io` so that its
messages can name the right loader): the only table that says how a kind is loaded, saved, upgraded, viewed by the
engine and shown in the explorer. Everything that switches on a cache's kind (the loader's messages,
``upgrade-cache``, the CLI, the explorer, the notebooks' reader, the byte-flip scan) reads it; :func:`load` reads a
cache of any kind.

>>> sorted(KINDS)
['classification', 'generation', 'llm_tokens']
>>> KINDS["llm_tokens"].loader_name
'toolkit.caches.tokens.load_llm_cache'

Imports are lazy (a record names its functions by module and attribute), so this module imports nothing heavy
and no torch.
"""

from __future__ import annotations

import os

from toolkit.caches.io import KINDS, CacheError, CacheKind, read_header

__all__ = ["KINDS", "CacheKind", "kind_of", "kind_for", "load", "save"]


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
