"""The documentation site: it builds with ``mkdocs build --strict``, its runnable snippets run, every notebook and
guide has a page, and nothing user-facing speaks of how the project was built."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RUNNABLE = re.compile(r"<!-- runnable -->\n```(python|bash)\n(.*?)\n```", re.S)
# words about how the project was made, not what it does: never on a page a user reads
INTERNAL = re.compile(r"zoo v[12]\b|\bissue \d+|no GPU was lent|\bsession\b", re.I)


def runnable_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of each block marked ``<!-- runnable -->`` on the line before its fence."""
    return RUNNABLE.findall(page.read_text())


def nav_pages() -> list[str]:
    """Every page the mkdocs.yml nav names (paths under docs/)."""
    return re.findall(r"(?:^\s+-\s+(?:[^:\n]+:\s+)?)([\w./-]+\.(?:md|ipynb))\s*$", (REPO / "mkdocs.yml").read_text(),
                      re.M)


GUIDES = sorted((DOCS / "guides").glob("*.md"))
README = REPO / "README.md"
PAGES_WITH_CODE = [README] + sorted(p for p in DOCS.rglob("*.md") if "notebooks" not in p.parts and runnable_blocks(p))


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO).with_suffix(""))


def test_runnable_blocks_are_found():
    """The marker is parsed (a typo in it would silently skip every snippet)."""
    assert len(PAGES_WITH_CODE) >= 10, [p.name for p in PAGES_WITH_CODE]
    assert runnable_blocks(README), "README's start-here snippet is not marked <!-- runnable -->"
    assert runnable_blocks(DOCS / "getting-started.md")[0][0] == "python"


@pytest.mark.parametrize("guide", [g for g in GUIDES if g.name != "index.md"], ids=lambda p: p.stem)
def test_every_guide_runs_something(guide):
    assert runnable_blocks(guide), f"{guide.relative_to(REPO)} has no block marked <!-- runnable -->"


def _run_bash(code: str, tmp_path: Path) -> None:
    """Each command line of a bash block, in a scratch folder that sees the repository's data/ (outputs land there)."""
    exe = shutil.which("toolkit")
    if exe is None:
        pytest.skip("the `toolkit` command is not on PATH (pip install -e .)")
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data").symlink_to(REPO / "data")
    env = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    for line in code.replace("\\\n", " ").splitlines():
        command = line.split("  #", 1)[0].strip()
        if not command:
            continue
        r = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"`{command}` failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def _pages(lang: str) -> list[Path]:
    return [p for p in PAGES_WITH_CODE if any(lg == lang for lg, _ in runnable_blocks(p))]


@pytest.mark.parametrize("page", _pages("python"), ids=_page_id)
def test_python_snippets_run(page, monkeypatch):
    """Every runnable Python block of a page, in order, in one namespace, from the repository root (the shipped
    caches)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, (lang, code) in enumerate(runnable_blocks(page)):
        if lang != "python":
            continue
        try:
            exec(compile(code, f"{page.relative_to(REPO)} (block {i + 1})", "exec"), namespace)
        except ModuleNotFoundError as e:
            pytest.skip(f"{page.name} needs {e.name}")


@pytest.mark.slow  # each command starts a Python process: about 5 s apiece on a busy machine
@pytest.mark.parametrize("page", _pages("bash"), ids=_page_id)
def test_command_snippets_run(page, tmp_path):
    """Every command of a page's runnable bash blocks."""
    for i, (lang, code) in enumerate(runnable_blocks(page)):
        if lang == "bash":
            _run_bash(code, tmp_path / f"block{i}")


def test_every_notebook_and_page_is_in_the_nav():
    nav = set(nav_pages())
    missing = [f"notebooks/{p.name}" for p in sorted((REPO / "notebooks").glob("*.ipynb"))
               if f"notebooks/{p.name}" not in nav]
    missing += [str(p.relative_to(DOCS)) for p in sorted(DOCS.rglob("*.md"))
                if "notebooks" not in p.relative_to(DOCS).parts and str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"add these to the nav of mkdocs.yml (and notebooks to docs/notebook-list.md): {missing}"
    listed = (DOCS / "notebook-list.md").read_text()
    assert all(f"({p})" in listed for p in nav if p.startswith("notebooks/")), "docs/notebook-list.md misses one"


def test_no_project_internal_words():
    pages = [p for p in DOCS.rglob("*.md") if "notebooks" not in p.relative_to(DOCS).parts] + [README]
    found = [f"{p.relative_to(REPO)}:{n}: {m.group(0)!r}" for p in pages
             for n, line in enumerate(p.read_text().splitlines(), 1) for m in INTERNAL.finditer(line)]
    assert not found, "words about how the project was built, on pages users read:\n" + "\n".join(found)


def test_internal_words_pattern_catches_them():
    assert all(INTERNAL.search(s) for s in ("zoo v2 caches", "see issue 17", "no GPU was lent", "this session"))
    assert not INTERNAL.search("the zoo's caches, a GPU run, the issue of calibration")


DOC_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter")


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """The whole site, warnings as errors: API reference from the docstrings, the notebooks as committed."""
    absent = [m for m in DOC_PACKAGES if importlib.util.find_spec(m.split(".")[0]) is None
              or importlib.util.find_spec(m) is None]
    if absent:
        pytest.skip(f"the docs extra is not installed (pip install -e '.[docs]'): missing {absent}")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    for page in ("index.html", "reference/engine/index.html", "notebooks/01_quickstart/index.html",
                 "results/claims/index.html", "guides/llm/index.html"):
        assert (site / page).is_file(), f"{page} was not built"
    engine_page = (site / "reference/engine/index.html").read_text()
    assert "OperatingPoint" in engine_page and "def choose" not in engine_page  # rendered, not source
    assert ":func:`" not in engine_page, "Sphinx roles left raw in the API reference (docs/griffe_roles.py)"
    notebook = (site / "notebooks/01_quickstart/index.html").read_text()
    assert "<img" in notebook or "image/png" in notebook, "notebook 01 rendered without its figures"


def test_readme_is_a_front_door():
    """At most 150 lines, both set-up commands (tests/test_ci.py checks them against .ci/run), and every relative
    link in it names a file that exists."""
    text = README.read_text()
    assert len(text.splitlines()) <= 150, f"README.md has {len(text.splitlines())} lines; move detail into docs/"
    assert "**Main job**" in text and "**All tests**" in text
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", text) if not t.startswith(("http", "#"))]
    assert links and not [t for t in links if not (REPO / t).exists()], "README links to files that do not exist"
