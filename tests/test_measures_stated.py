"""User-facing claims name their measure: the LM head's size in layers says whether it counts time or FLOPs, and
the notebook list gives notebook 06's measured run time with the load it ran under (issue 28, item 5)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_FACING = [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *sorted((ROOT / "docs").rglob("*.md")),
               *sorted((ROOT / "notebooks").glob("[0-9]*.py"))]
LAYERS = re.compile(r"(?:about|as much as|as long as)\s+(?:\d+|eight|thirteen)\s+(?:decoder\s+)?layers?", re.I)
MEASURE = re.compile(r"of time|of FLOPs|in FLOPs|weighs", re.I)


def layer_claims(text: str):
    """Each "about N layers" with 60 characters either side, whitespace folded."""
    flat = " ".join(text.split())
    return [flat[max(0, m.start() - 60): m.end() + 60] for m in LAYERS.finditer(flat)]


def test_every_lm_head_size_in_layers_names_its_measure():
    vague = [f"{p.relative_to(ROOT)}: ...{c}..." for p in USER_FACING for c in layer_claims(p.read_text())
             if "head" in c.lower() and not MEASURE.search(c)]
    assert not vague, "say which measure (\"about 13 layers of time on this CPU\", \"about 8 layers of FLOPs\"):\n" + \
        "\n".join(vague)


def test_the_check_catches_a_bare_claim():
    assert layer_claims("the LM head 9.7 ms (about 13 layers: its weights)")
    assert not MEASURE.search("the LM head (about 13 layers: its weights)")
    assert MEASURE.search("about 13 layers of time on this CPU, about 8 layers of FLOPs")


def test_notebook_06_runtime_is_measured_with_its_load():
    for page in (ROOT / "README.md", ROOT / "docs" / "notebook-list.md"):
        row = next(line for line in page.read_text().splitlines() if "06_collect_your_own" in line)
        assert "in seconds" not in row
        assert re.search(r"\d+ s on \d+ shared cores at load average [\d.]+", row), (page.name, row)


def cells(source: str) -> list[str]:
    """The code cells of a jupytext percent script."""
    parts = re.split(r"^# %%.*$", source, flags=re.M)
    heads = re.findall(r"^# %%.*$", source, flags=re.M)
    return [body.strip() for head, body in zip(heads, parts[1:]) if "[markdown]" not in head]


def test_notebook_01_conclusion_is_one_library_call():
    """The rendered page shows one call, not the code that writes the conclusion (``toolkit.report``)."""
    cell = next(c for c in cells((ROOT / "notebooks" / "01_quickstart.py").read_text()) if "conclude" in c)
    code = [line for line in cell.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert cell.startswith("report.conclude(report.") and len(code) <= 4, cell
