"""Execute notebooks from their sources: for each ``notebooks/NN_name.py`` (jupytext percent format, the file people
edit), build the notebook, execute it in ``notebooks/`` and write the executed ``NN_name.ipynb`` beside it, timing
each run (with the machine's load average) and checking that it leaves no file behind in ``notebooks/`` or in its
temporary folder (the kernel gets a fresh ``TMPDIR``, listed after the run, then removed).

    python scripts/run_notebooks.py                      # every notebook
    python scripts/run_notebooks.py 01_quickstart 04     # names or prefixes
    python scripts/run_notebooks.py --figures runs/figures   # also write every figure as PNG (to look at them)

Run it with the environment the tests use (``MPLBACKEND=Agg HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false``).
``tests/test_notebooks.py`` then checks that each pair holds the same cells, that every figure has alt text and
that every number in the prose is printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"


def _listing(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


def run(py: Path, *, timeout: int, figures: Path | None) -> tuple[float, str, list[str]]:
    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    before = _listing(NB_DIR)
    tmp = Path(tempfile.mkdtemp(prefix="nbrun-"))
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp)  # the kernel inherits it: whatever the notebook leaves in temp shows up here
    try:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NB_DIR)}}).execute()
        wall = time.perf_counter() - t0
        load = f"{load0:.1f} -> {os.getloadavg()[0]:.1f}"
    finally:
        if old_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmp
    out = py.with_suffix(".ipynb")
    jupytext.write(nb, out)
    left = sorted(_listing(NB_DIR) - before - {out.name}) + sorted(f"TMPDIR/{n}" for n in _listing(tmp))
    shutil.rmtree(tmp, ignore_errors=True)
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        k = 0
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                if "image/png" in o.get("data", {}):
                    k += 1
                    (figures / f"{py.stem}_{k}.png").write_bytes(base64.b64decode(o["data"]["image/png"]))
    return wall, load, left


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    ap.add_argument("--figures", type=Path, help="write every figure as PNG into this folder")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = ap.parse_args(argv)
    scripts = sorted(NB_DIR.glob("*.py"))
    if args.names:
        scripts = [p for p in scripts if any(p.stem.startswith(n) for n in args.names)]
    if not scripts:
        print("no notebook matches", args.names, file=sys.stderr)
        return 2
    for py in scripts:
        wall, load, left = run(py, timeout=args.timeout, figures=args.figures)
        note = f"; LEFT BEHIND: {left}" if left else ""
        print(f"{py.stem}: {wall:.1f} s (load average {load}){note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
