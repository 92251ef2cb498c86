"""Provenance of an artifact: package versions and the command line that made it. Imports no torch."""

from __future__ import annotations

import shlex
import sys

DISTRIBUTION = "adaptive-inference-toolkit"  # pip's name of this package (pyproject [project] name); imported as toolkit


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that change what a cache or a checkpoint holds (this package under
    ``"toolkit"``, its import name, whatever its distribution is called)."""
    import importlib.metadata as md

    from toolkit import __version__

    out = {"toolkit": __version__}
    for name in ("torch", "transformers", "datasets", "accelerate", "numpy", "pandas", "pyarrow"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out



def command_line(argv: list[str] | None = None, prog: str = "toolkit") -> str:
    """The command as a user would retype it, quoted for a POSIX shell."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([prog, *(shlex.quote(a) for a in argv)])
