"""Every notebook figure of speed-up curves uses the speed-up axis convention: log scale (base 2 through
``plots.speedup_axis`` or ``plots.plot_tradeoff``), never matplotlib's default linear axis.

The figures are PNGs in the executed notebooks, so the check reads each notebook's source cells (jupytext percent
format): a cell that draws curves with ``plot_curve`` against a speed-up label must also put them on a log axis.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

SOURCES = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))


def _code_cells(path: Path) -> list[str]:
    cells, current, markdown = [], [], False
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            if current and not markdown:
                cells.append("\n".join(current))
            current, markdown = [], "[markdown]" in line
            continue
        current.append(line)
    if current and not markdown:
        cells.append("\n".join(current))
    return cells


def _calls(source: str) -> list[ast.Call]:
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]  # cell magics
    return [n for n in ast.walk(ast.parse("\n".join(lines))) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _log_axis(call: ast.Call) -> bool:
    """``speedup_axis(...)``, ``plot_tradeoff(...)`` (log unless told otherwise) or ``set_xscale("log", ...)``."""
    name = _name(call)
    if name == "speedup_axis":
        return True
    if name == "plot_tradeoff":
        return not any(k.arg == "log_speedup" and isinstance(k.value, ast.Constant) and k.value.value is False
                       for k in call.keywords)
    return name == "set_xscale" and bool(call.args) and isinstance(call.args[0], ast.Constant) \
        and call.args[0].value == "log"


def speedup_figures_on_linear_axes(path: Path) -> list[int]:
    """Indices of the code cells that draw speed-up curves (``plot_curve`` with a ``speedup_label`` x label) with no
    log axis."""
    bad = []
    for i, cell in enumerate(_code_cells(path)):
        calls = _calls(cell)
        names = {_name(c) for c in calls}
        flops_only = all(any(k.arg == "x" and isinstance(k.value, ast.Constant) and k.value.value == "flops"
                             for k in c.keywords) for c in calls if _name(c) == "plot_curve")
        if "plot_curve" in names and "speedup_label" in names and not flops_only and not any(map(_log_axis, calls)):
            bad.append(i)
    return bad


def test_the_check_sees_a_linear_speedup_figure(tmp_path):
    nb = tmp_path / "99_x.py"
    draw = ("# %%\nfig, ax = plt.subplots()\nplots.plot_curve(c, ax=ax)\n"
            "ax.set_xlabel(plots.speedup_label(c.reference))\n")
    nb.write_text(draw + "# %% [markdown]\n# text\n" + draw + "plots.speedup_axis(ax, reference='r')\n")
    assert speedup_figures_on_linear_axes(nb) == [0]
    nb.write_text(draw.replace("plot_curve(c, ax=ax)", "plot_curve(c, x='flops', ax=ax)"))
    assert speedup_figures_on_linear_axes(nb) == []


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_speedup_figures_use_a_log_axis(path):
    assert speedup_figures_on_linear_axes(path) == [], (
        f"{path.name}: code cell(s) {speedup_figures_on_linear_axes(path)} draw speed-up curves on a linear axis; "
        f"call plots.speedup_axis(ax, reference=...) after drawing (log base 2, the region below 1x shaded)")
