"""What every importer shares: line-numbered JSONL reading, errors that name the file and line, tokenizers.

torch-free: tokenizers are read with the ``tokenizers`` package from a ``tokenizer.json`` (no ``transformers``).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path


class RecordError(ValueError):
    """A log or record file is missing, malformed or inconsistent with the others; the message names file and line."""


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line (1-based); a line that is not a JSON object is an error."""
    from toolkit.caches.io import CacheError, check_regular_file

    try:
        path = check_regular_file(path, what="file")
    except CacheError as e:
        if Path(path).is_dir():
            raise RecordError(f"{path}: a folder: pass the samples_*.jsonl files inside it") from None
        raise RecordError(str(e)) from None
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno}); a truncated or "
                                  f"edited log?") from None
            if not isinstance(obj, dict):
                raise RecordError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
            yield i, obj


def field(obj: dict, key: str, path, line: int, kind=None):
    """``obj[key]``, or an error naming file, line and key (and the expected type)."""
    if key not in obj:
        raise RecordError(f"{path}:{line}: no key {key!r} (keys: {sorted(obj)[:12]})")
    v = obj[key]
    if kind is not None and not isinstance(v, kind):
        raise RecordError(f"{path}:{line}: key {key!r} must be {getattr(kind, '__name__', kind)}, got "
                          f"{type(v).__name__}")
    return v


def number(v, path, line: int, where: str) -> float:
    """A float from a number or a numeric string (lm-eval writes log-likelihoods as strings)."""
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except (TypeError, ValueError):
        raise RecordError(f"{path}:{line}: {where} must be a number, got {str(v)[:40]!r}") from None


def log_prob(v, path, line: int, where: str) -> float:
    """A log-probability (:func:`number`, then <= 0 or -inf): NaN, +inf and positive values are refused here, naming
    the file and line, not later by the cache's example/stage/class index."""
    x = number(v, path, line, where)
    if math.isnan(x) or x > 1e-6:  # 1e-6: rounding in the tool that wrote log(1)
        raise RecordError(f"{path}:{line}: {where} is {x!r}{' > 0' if x > 0 else ''}; a log-probability is <= 0 "
                          f"(or -inf)")
    return x


def load_tokenizer(where: str | os.PathLike | None):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file or a folder holding one; None if there is none (or
    the ``tokenizers`` package is not installed). Loaded once per file (runs of one model share it)."""
    if where is None:
        return None
    p = Path(where)
    p = p / "tokenizer.json" if p.is_dir() else p
    if not p.is_file() or p.name != "tokenizer.json":
        return None
    st = p.stat()
    return _tokenizer(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, size: int, mtime: int):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    return Tokenizer.from_file(path)


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Tokens of each text, without special tokens added (the harness adds none to a request's continuation)."""
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
