"""The docstrings' examples are tests: every module of the analysis side (and the numpy-only helpers beside it)
runs its examples here, whichever way the suite is invoked."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "toolkit"
MODULES = sorted(
    ".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in [*(PKG / "analysis").rglob("*.py"), *(PKG / "caches").rglob("*.py"), *(PKG / "data").rglob("*.py"),
              *(PKG / "imports").rglob("*.py"), PKG / "cli" / "_common.py", PKG / "zoo" / "manifest.py",
              PKG / "testing.py", PKG / "_api.py", PKG / "_moved.py"])


def test_every_listed_module_exists():
    """A path left behind by a move would silently drop its examples from this tier."""
    missing = [n for n in MODULES if not (PKG.parent / Path(*n.split("."))).with_suffix(".py").exists()
               and not (PKG.parent / Path(*n.split(".")) / "__init__.py").exists()]
    assert not missing, missing


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(PKG.parent)  # examples may read the shipped caches in data/
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"


def test_the_analysis_side_has_examples():
    counted = sum(len([t for t in doctest.DocTestFinder().find(importlib.import_module(n)) if t.examples])
                  for n in MODULES)
    assert counted >= 20
