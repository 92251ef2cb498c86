"""The one calling convention of the analysis side (since 0.3): data positional, options keyword-only.

A function decorated with :func:`keyword_options` takes its data (arrays, caches, views) positionally and every
option after a ``*``. A call in the old form, with options by position, is refused with a ``TypeError`` that shows
the call to write instead, never silently reinterpreted:

>>> @keyword_options
... def ece(probs, labels, *, n_bins=15, norm="l1"):
...     return n_bins
>>> ece([0.5], [1], n_bins=10)
10
>>> ece([0.5], [1], 10)
Traceback (most recent call last):
...
TypeError: ece() takes its options by keyword since 0.3: ece(probs, labels, n_bins=10)

:func:`renamed` keeps an old name importable for one release, with a ``DeprecationWarning`` naming the new one.
:func:`check_batch` is the one check of a batch-size option.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
from collections.abc import Callable

SINCE = "0.3"
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 and "\n" not in text else "..."


def keyword_options(fn: Callable) -> Callable:
    """Refuse options passed by position to ``fn``, naming the keyword each would have been (in ``fn``'s order)."""
    params = list(inspect.signature(fn).parameters.values())
    data = [p.name for p in params if p.kind in _POSITIONAL]
    options = [p.name for p in params if p.kind == inspect.Parameter.KEYWORD_ONLY]
    if not options or any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        raise TypeError(f"keyword_options guards keyword-only options; {fn.__qualname__} has "
                        f"{'none' if not options else '*args'}")
    shown = [d for d in data if d not in ("self", "cls")]
    name = fn.__qualname__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if len(args) > len(data):
            extra = args[len(data):]
            if len(extra) > len(options):
                raise TypeError(f"{name}() takes {len(shown)} data argument(s) ({', '.join(shown)}) and its options "
                                f"by keyword since {SINCE} ({', '.join(options)}); got {len(args)} positional "
                                f"arguments")
            given = [f"{k}={_short(v)}" for k, v in zip(options, extra)]
            raise TypeError(f"{name}() takes its options by keyword since {SINCE}: "
                            f"{name}({', '.join(shown + given)})")
        return fn(*args, **kwargs)

    wrapper.__keyword_options__ = tuple(options)
    return wrapper


def renamed(names: dict[str, tuple[str, object]], *, module: str) -> Callable[[str], object]:
    """A module ``__getattr__`` serving each old name of ``names`` (``old -> (new, object)``) with a
    ``DeprecationWarning`` naming the new one, for one release."""

    def __getattr__(attr: str):
        if attr in names:
            new, obj = names[attr]
            warnings.warn(f"{module}.{attr} is renamed {new} since {SINCE}; the old name goes in the next release",
                          DeprecationWarning, stacklevel=2)
            return obj
        raise AttributeError(f"module {module!r} has no attribute {attr!r}")

    return __getattr__


def check_batch(value, *, name: str = "batch") -> int:
    """``value`` as an ``int`` if it is a batch size (an integer >= 1, numpy integers too), else a ``ValueError``
    naming the option ``name`` and the fix. A bool is refused (to Python ``True`` is 1: ``batch=True`` ran at batch
    1), as are floats (``8.0``), strings and values below 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        why = ("a bool is not a batch size" if isinstance(value, bool) or type(value).__name__ == "bool_" else
               "a batch holds at least one row" if isinstance(value, numbers.Integral) else
               f"a {type(value).__name__} is not a batch size")
        raise ValueError(f"{name} must be an integer >= 1 (rows per batch), got {_short(value)}: {why}; pass an "
                         f"int, e.g. {name}=1 or {name}=32")
    return int(value)
