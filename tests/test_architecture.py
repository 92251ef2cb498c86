"""The shape of the code, enforced: the analysis side never imports the torch side, and no import cycles.

Every import statement counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "toolkit"
TORCH_SIDE = ("torch", "transformers", "accelerate", "safetensors", "sklearn", "gguf", "toolkit.nn",
              "toolkit.zoo.build", "toolkit.zoo.recipes", "toolkit.cli")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (top level and inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            # `from .pkg import module` imports a submodule
            out.update(f"{mod}.{a.name}" for a in node.names if (PKG.parent / Path(*f"{mod}.{a.name}".split("."))).with_suffix(".py").exists())
    return out


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}
ANALYSIS_SIDE = [m for m in MODULES
                 if m.startswith(("toolkit.analysis", "toolkit.caches", "toolkit.data", "toolkit.imports"))] + [
    "toolkit", "toolkit.testing", "toolkit._moved", "toolkit.zoo", "toolkit.zoo.manifest", "toolkit.zoo.catalogue",
    "toolkit.zoo.claims", "toolkit.zoo.cal_shift", "toolkit.zoo.readme", "toolkit.zoo.ledger", "toolkit.zoo.lineage",
    "toolkit.report", "toolkit.policy"]


@pytest.mark.parametrize("module", sorted(ANALYSIS_SIDE))
def test_analysis_side_never_imports_the_torch_side(module):
    bad = sorted(i for i in imports_of(MODULES[module])
                 if any(i == t or i.startswith(t + ".") for t in TORCH_SIDE))
    assert not bad, f"{module} imports {bad}: the analysis side must not depend on torch or toolkit.nn"


def test_no_import_cycles():
    graph = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of dependencies
    graph = {m: {i for i in deps if not i.startswith(m + ".")} for m, deps in graph.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_caches_never_import_the_analysis_side_at_load():
    """The cache boundary sits below the analysis: a cache module may import analysis only lazily (inside a
    function), so loading a cache never drags the analysis in, and no import cycle can form at load time."""
    bad = {}
    for m in MODULES:
        if m.startswith("toolkit.caches"):
            tree = ast.parse(MODULES[m].read_text())
            top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
            hits = sorted(x for x in names if x.startswith("toolkit.analysis"))
            if hits:
                bad[m] = hits
    assert not bad, f"cache modules importing the analysis at load: {bad}"


def test_old_module_paths_import_as_the_moved_modules():
    import importlib
    import warnings

    from toolkit._moved import MOVED
    for old, new in MOVED.items():
        if new.startswith("toolkit.nn"):
            continue  # the torch side: checked where torch is installed, by the nn tests' own imports
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sys.modules.pop(old, None)
            mod = importlib.import_module(old)
        assert mod is importlib.import_module(new), old
        assert any(new in str(w.message) for w in caught), f"no DeprecationWarning naming {new} for {old}"


def test_importing_the_analysis_side_loads_no_torch():
    mods = " ".join(f"import {m};" for m in sorted(ANALYSIS_SIDE))
    code = (f"import sys; {mods} import toolkit.cli; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') or "
            "m.startswith('toolkit.nn')); print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert r.returncode == 0, f"importing the analysis side loaded {r.stdout.strip()} {r.stderr[-2000:]}"


def test_no_test_module_imports_another():
    """Helpers shared by tests live in toolkit.testing (random caches, a latency profile) or tests/support (torch
    models, lm-eval logs), never in a test module another one imports."""
    bad = {}
    for path in sorted((PKG.parent / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            hits = [n for n in names if any(part.startswith("test_") for part in n.split("."))]
            if hits:
                bad.setdefault(path.name, []).extend(f"line {node.lineno}: {n}" for n in hits)
    assert not bad, f"test modules importing other test modules (move the helper to toolkit.testing or " \
                    f"tests/support): {bad}"
