"""Generated sections of the results pages (``docs/results/*.md``): text between ``<!-- name:start -->`` and
``<!-- name:end -->`` markers, written by the library function that computes it (e.g.
:meth:`toolkit.zoo.claims.SeedClaims.section`) and checked current by the tests. :data:`PAGES` says which page
holds which section; a name it does not list lives in README.md."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"
PAGES = {
    "shipped-caches": RESULTS / "caches.md",
    "seed-table": RESULTS / "caches.md",
    "cpu-table": RESULTS / "caches.md",
    "seed-claims": RESULTS / "claims.md",
    "cal-shift": RESULTS / "cal-shift.md",
    "llm-numbers": RESULTS / "llm.md",
}


def page(name: str) -> Path:
    """The file that holds section ``name``."""
    return PAGES.get(name, README)


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of section ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def current(name: str, path: Path | None = None) -> str | None:
    """The section as it stands in its page (``path``, default :func:`page`), markers included (None without
    markers)."""
    start, end = markers(name)
    text = Path(path or page(name)).read_text()
    if start not in text or end not in text:
        return None
    return start + text.split(start, 1)[1].split(end, 1)[0] + end


def write(name: str, section: str, path: Path | None = None) -> int:
    """Replace the section (``section`` includes its markers); 1 with a message if the markers are missing."""
    start, end = markers(name)
    path = Path(path or page(name))
    text = path.read_text()
    if start not in text or end not in text:
        print(f"{path}: no {start} ... {end} markers; add them where the section goes", file=sys.stderr)
        return 1
    if not (section.startswith(start) and section.endswith(end)):
        raise ValueError(f"section {name!r} must start with {start} and end with {end}")
    head, rest = text.split(start, 1)
    path.write_text(head + section + rest.split(end, 1)[1])
    return 0
