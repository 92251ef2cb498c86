"""The notebooks as code: each ``notebooks/NN_name.ipynb`` (executed, committed for reading) is paired with a
jupytext percent-format ``NN_name.py`` (what people edit, review and lint) and the two hold the same cells; every
code cell has run; every figure has alt text; and every number in the prose is one the notebook prints.

**What the prose-number check checks** (:func:`unprinted_numbers`). Prose is the markdown cells and the Markdown a
code cell displays (conclusions rendered from values), plus figures' alt text. What a notebook prints is every
other output of its code cells (stdout, ``text/plain``, ``text/html`` tables without their tags), and the numeric
literals of its code cells (settings such as ``max_drop=0.01``, ``budgets=(2, 3, 4)``, ``n_boot=1000``).

A number in prose is checked unless it is structural: inside inline code, a code block, a formula (``$...$``) or a
link target; part of a name (a letter, digit or underscore right before it, or a letter and a hyphen: ``L6``,
``SST-2``, ``v2``, ``01_quickstart``; a letter right after it other than the speed-up ``x``: ``2nd``, ``10k``; a
hyphen and a letter after it: ``12-layer``); beside a slash (fractions and lists: ``1/2 width``, ``2x/3x/4x``); a
version (``1.19.6``); a year after "et al." or before ")"; or the number of a heading or list item at the start
of a line. Checked numbers:

- decimals (``0.878``, ``-0.012``, ``1e-4``) match a printed number when their rounding intervals overlap
  (``0.876`` matches a printed ``0.8761``; ``0.878`` does not) or, with a ``%``/``points``/``pp`` unit (also
  ``[lo, hi] points``), a printed share x 100 (``1.5 points`` matches a printed drop ``0.015``);
- speed-ups (``2.5x``, ``4x``) and percentages (``80%``) the same way;
- plain integers (``872``, ``2,000``, ``300``) must equal a printed integer or a code literal.

Signs are ignored (prose says "loses 1.5 points" for a printed difference of -0.015). A number typed into prose
that the notebook does not print, or prints differently, fails the test with the notebook, the cell and the
number.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

NB_DIR = REPO / "notebooks"
NAMES = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))


# ------------------------------------------------------------------------------------------------- numbers
_NUMBER = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+"
_PROSE_NUMBER = re.compile(rf"(?P<num>{_NUMBER})")
_BRACKET_UNIT = re.compile(r"\[[^\[\]\n]*\]\s?(?:%|points?\b|pp\b|pts?\b)|(?<=points)(?:,?\s*)\[[^\[\]\n]*\]")
_STRIP = [
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S),  # formulas
    re.compile(r"\]\([^)\s]*\)"),  # link targets
    re.compile(r"https?://\S+"),
    re.compile(r"<[^>\n]*>"),  # html tags
]


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace matches with spaces (positions stay, so context checks see what a reader sees)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _decimals(token: str) -> int:
    t = token.replace(",", "")
    if "e" in t.lower():
        mant, exp = re.split("[eE]", t)
        return max(0, (len(mant.split(".")[1]) if "." in mant else 0) - int(exp))
    return len(t.split(".")[1]) if "." in t else 0


def prose_numbers(text: str) -> list[dict]:
    """The checked numbers of a piece of prose: ``{"token", "value", "decimals", "unit", "integer"}``."""
    for p in _STRIP:
        text = _blank(text, p)
    in_unit_bracket = [False] * len(text)
    for m in _BRACKET_UNIT.finditer(text):
        for i in range(m.start(), m.end()):
            in_unit_bracket[i] = True
    out = []
    for m in _PROSE_NUMBER.finditer(text):
        a, b = m.start(), m.end()
        tok = m.group("num")
        before, before2 = text[a - 1:a], text[a - 2:a - 1]
        after = text[b:b + 2]
        if before.isalnum() or before in ("_", ".") or (before == "-" and before2.isalpha()):
            continue  # part of a name (L6, SST-2, v2, s42) or of a version
        if before == "/" or after[:1] == "/" or after[:2] in ("x/", "×/"):
            continue  # fractions and lists: 1/2 width, 2x/3x/4x
        if re.match(r"\.\d", after):
            continue  # a version: 1.19.6
        if text[b:b + 1].isalpha():
            if not re.match(r"[x×](?![A-Za-z])", text[b:]):
                continue  # 2nd, 10k
            unit = "x"
        elif text[b:b + 1] in ("%", "×"):
            unit = "%" if text[b] == "%" else "x"
        else:
            unit_m = re.match(r"\s(points?|pp|pts?)\b", text[b:])
            unit = "points" if unit_m else None
        if re.match(r"-[A-Za-z]", after):
            continue  # 12-layer
        line_start = text.rfind("\n", 0, a) + 1
        if re.fullmatch(r"\s*(#+\s*)?(\d+\.\s*)?", text[line_start:a]) and re.match(r"\.\s", text[b:b + 2]):
            continue  # a heading's or list item's number
        if re.fullmatch(r"(19|20)\d\d", tok) and (re.search(r"al\.,?\s$", text[max(0, a - 6):a]) or after[:1] == ")"):
            continue  # a year
        if unit is None and in_unit_bracket[a]:
            unit = "points"
        value = float(tok.replace(",", ""))
        out.append({"token": tok, "value": abs(value), "decimals": _decimals(tok), "unit": unit,
                    "integer": "." not in tok and "e" not in tok.lower()})
    return out


_PRINTED_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+")


def printed_numbers(text: str) -> list[tuple[float, int]]:
    """Every number in printed text (loose: digits inside names count too), as (absolute value, decimals)."""
    out = [(float(t), _decimals(t)) for t in _PRINTED_NUMBER.findall(text)]
    out += [(float(t.replace(",", "")), 0) for t in re.findall(r"\d{1,3}(?:,\d{3})+(?!\d)", text)]
    return out


def code_literals(source: str) -> list[tuple[float, int]]:
    """Numeric literals of a code cell (its settings), as (value, 0): exact values."""
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if tok.type == tokenize.NUMBER and not tok.string.endswith(("j", "J")):
                s = tok.string.replace("_", "")
                v = float(int(s, 0)) if s[:2].lower() in ("0x", "0o", "0b") else float(s)
                out.append((v, 0))  # a setting is exact: matched without rounding
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        pass
    return out


def _matches(p: dict, printed: list[tuple[float, int]]) -> bool:
    """Whether prose number ``p`` is one of the printed (value, decimals): rounding intervals overlap."""
    if p["integer"] and p["unit"] is None:
        return any(d == 0 and q == p["value"] for q, d in printed)
    half_p = 0.5 * 10.0 ** -p["decimals"]
    for q, d in printed:
        half_q = 0.5 * 10.0 ** -d if d else 0.0  # printed integers (counts, code literals) are exact
        if abs(p["value"] - q) <= half_p + half_q + 1e-12:
            return True
        if p["unit"] in ("%", "points") and \
                abs(p["value"] - 100 * q) <= half_p + 100 * half_q + 1e-9:
            return True
    return False


def _output_texts(output) -> tuple[list[str], list[str]]:
    """(prose, printed) texts of one output."""
    if output.get("output_type") == "stream":
        return [], ([output.get("text", "")] if output.get("name") == "stdout" else [])
    data = output.get("data", {})
    if "text/markdown" in data:
        return [data["text/markdown"]], []
    if "image/png" in data or "image/svg+xml" in data:
        alt = output.get("metadata", {}).get("image/png", {}).get("alt") or data.get("text/plain", "")
        return [alt], []
    printed = []
    if "text/html" in data:
        printed.append(re.sub(r"<[^>]*>", " ", data["text/html"]))
    if "text/plain" in data:
        printed.append(data["text/plain"])
    return [], printed


def unprinted_numbers(nb) -> list[str]:
    """Numbers in ``nb``'s prose that it does not print (see the module docstring), as readable lines."""
    prose: list[tuple[str, str]] = []
    printed: list[tuple[float, int]] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            prose.append((f"markdown cell {i}", cell.source))
        elif cell.cell_type == "code":
            printed += code_literals(cell.source)
            for out in cell.get("outputs", []):
                p, t = _output_texts(out)
                prose += [(f"output of code cell {i}", x) for x in p]
                for x in t:
                    printed += printed_numbers(x)
    problems = []
    for where, text in prose:
        for p in prose_numbers(text):
            if not _matches(p, printed):
                k = text.find(p["token"])
                context = " ".join(text[max(0, k - 50):k + 30].split())
                problems.append(f"{where}: {p['token']}{p['unit'] or ''} is not printed (...{context}...)")
    return problems


# ------------------------------------------------------------------------------------------------- the checker itself
def _nb(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def _code(source, *texts, markdown=None):
    c = nbformat.v4.new_code_cell(source)
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in texts]
    if markdown is not None:
        c.outputs.append(nbformat.v4.new_output("display_data", data={"text/markdown": markdown,
                                                                      "text/plain": "<Markdown>"}))
    return c


@pytest.mark.parametrize("prose, ok", [
    ("the last exit reaches 0.876", True),  # printed 0.8761
    ("the last exit reaches 0.878", False),
    ("it loses 1.9 points", True),  # printed drop 0.0190
    ("within 1.5 points", False),
    ("speed-up 2.5x at the same accuracy", True),  # printed 2.53
    ("speed-up 2.3x", False),
    ("2.6% of the sentences", True),  # printed 0.0261
    ("the interval [-1.0, +3.6] points", True),  # printed -0.0104 and 0.0361
    ("the interval [-1.2, +3.6] points", False),
    ("a gain of 1.9 points [-1.0, +3.6]", True),
    ("a gain of 1.9 points, [-1.0, +3.7]", False),
    ("872 test sentences", True),  # printed 872
    ("1,000 resamples", False),  # the code says 300
    ("300 resamples", True),  # a code literal
    ("exits L1 to L6 of all-MiniLM-L6-v2 on SST-2, 1/2 width, 2x/3x/4x budgets", True),  # structural
    ("a 12-layer model, the 2nd exit", True),
    ("Schwartz et al. 2020 and (Li 2021)", True),
    ("`n_boot=5000` in code is not prose", True),
    ("## 7. Section", True),
])
def test_prose_number_rules(prose, ok):
    nb = _nb([_code("boots = run(n_boot=300)", "last exit 0.8761, drop 0.0190, speed-up 2.53, share 0.0261\n"
                    "difference -0.0104 [lo -0.0104, hi 0.0361], n 872\n"),
              nbformat.v4.new_markdown_cell(prose)])
    assert (unprinted_numbers(nb) == []) == ok, unprinted_numbers(nb)


def test_rendered_markdown_is_checked_like_markdown_cells():
    good = _nb([_code("x = 1", "accuracy 0.8761\n", markdown="The last exit reaches **0.876**.")])
    bad = _nb([_code("x = 1", "accuracy 0.8761\n", markdown="The last exit reaches **0.878**.")])
    assert unprinted_numbers(good) == []
    assert len(unprinted_numbers(bad)) == 1 and "0.878" in unprinted_numbers(bad)[0]


def test_a_planted_wrong_number_fails_a_real_notebook():
    """Two numbers 07 does not print (a wrong accuracy and a wrong drop), planted into the executed notebook, is caught."""
    name = next((n for n in NAMES if n.startswith("07_")), NAMES[0])
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    assert unprinted_numbers(nb) == []
    nb.cells.append(nbformat.v4.new_markdown_cell("The 1/2-width last exit reaches 0.6543, within 7.77 points."))
    found = unprinted_numbers(nb)
    assert len(found) == 2 and "0.6543" in found[0] and "7.77" in found[1], found


# ------------------------------------------------------------------------------------------------- the notebooks
def test_every_notebook_has_its_percent_script_and_vice_versa():
    assert NAMES, "no notebooks found"
    scripts = sorted(p.stem for p in NB_DIR.glob("*.py"))
    assert scripts == NAMES, (f"unpaired: notebooks without a .py {sorted(set(NAMES) - set(scripts))}, scripts "
                              f"without a notebook {sorted(set(scripts) - set(NAMES))}; pair them with "
                              f"`jupytext --sync notebooks/NAME.ipynb`")


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_and_script_hold_the_same_cells(name):
    py = NB_DIR / f"{name}.py"
    if not py.exists():
        pytest.fail(f"{name}.ipynb has no paired {name}.py")
    script = jupytext.read(py)
    assert "percent" in script.metadata.get("jupytext", {}).get("text_representation", {}).get("format_name", ""), \
        f"{py.name} is not in jupytext's percent format"
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    a, b = _cells(script), _cells(nb)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, (f"{name}: cell {i} differs between the .py and the .ipynb; edit the .py, then "
                        f"`jupytext --sync notebooks/{name}.py` and re-execute the notebook")
    assert len(a) == len(b), f"{name}: {len(a)} cells in the .py, {len(b)} in the .ipynb"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_executed_without_errors(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), f"{name}: commit it executed"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{name}: cells ran out of order ({counts}); re-execute it"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_has_alt_text(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    for o in figures:
        alt = o.get("metadata", {}).get("image/png", {}).get("alt", "")
        assert len(alt.split()) >= 8, f"{name}: a figure without alt text (use toolkit.report.show)"
        html = o["data"].get("text/html", "")
        assert re.search(r'<img [^>]*alt="[^"]{20,}"', html), f"{name}: the figure's HTML <img> has no alt text"


@pytest.mark.parametrize("name", NAMES)
def test_every_number_in_the_prose_is_printed(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    problems = unprinted_numbers(nb)
    assert not problems, f"{name}: numbers in prose that the notebook does not print:\n" + "\n".join(problems)


def test_make_notebooks_is_retired():
    assert not (REPO / "scripts" / "make_notebooks.py").exists(), "the .py files in notebooks/ are the sources now"
    assert Path(REPO / "pyproject.toml").read_text().count("[tool.jupytext]") == 1
