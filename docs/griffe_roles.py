"""Docstrings as the API reference shows them: Sphinx roles (``:func:`~a.b.c` ``) become inline code and doctest
lines (``>>>``) become fenced Python, so the numpydoc docstrings read well in Markdown without changing them."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target.lstrip('.')}`"


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (``>>>`` with its continuations and output) in a ```pycon fence."""
    out, block = [], False
    for line in text.splitlines():
        start = line.lstrip().startswith(">>>")
        if start and not block:
            out.append("```pycon")
            block = True
        elif block and not line.strip():
            out.append("```")
            block = False
        out.append(line)
    if block:
        out.append("```")
    return "\n".join(out)


def render(text: str) -> str:
    """A docstring as Markdown: roles as code, doctests fenced."""
    return fence_doctests(ROLE.sub(_role, text))


class SphinxRoles(griffe.Extension):
    """Rewrite each docstring once, as griffe creates the object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = render(obj.docstring.value)
