"""What ``toolkit predict`` and ``toolkit llm-generate`` share: the policy, input and output arguments, loading a
policy for the command that runs its method, reading UTF-8 lines and writing the TSV atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from toolkit.cli._common import positive_int

COMMAND_OF = {"early_exit": "predict", "cascade": "predict", "calm": "llm-generate",
              "self_speculative": "llm-generate"}


def add_policy_arguments(p, *, batch_size: int) -> None:
    """``--policy``, ``--input``, ``--out``, ``--batch-size``, ``--device``."""
    p.add_argument("--policy", required=True, help="policy JSON (toolkit.policy.Policy, e.g. made with "
                                                   "Policy.from_operating_point(...).save(path))")
    p.add_argument("--input", required=True, help="UTF-8 text file, one example per line")
    p.add_argument("--out", help="TSV to write, atomically (default: standard output)")
    p.add_argument("--batch-size", type=positive_int, default=batch_size)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda ...)")


def load_policy(a, command: str):
    """The policy of ``--policy``, refused (naming the file and the command to use) when its method belongs to the
    other command; ``--out`` is checked first (a link or read-only file refused before the run)."""
    from toolkit.cli._common import output_file
    from toolkit.policy import Policy, PolicyError

    if a.out:
        output_file(a.out, "--out file")  # refused before the model is loaded and run, not at the write
    policy = Policy.load(a.policy)
    if COMMAND_OF[policy.method] != command:
        raise PolicyError(f"{a.policy}: key 'method' is {policy.method!r}: run it with `toolkit "
                          f"{COMMAND_OF[policy.method]}`, not `toolkit {command}`")
    return policy


def read_lines(path) -> list[str]:
    """The lines of a UTF-8 file (split on ``\\n`` only; a byte-order mark and each line's final ``\\r``
    dropped); invalid UTF-8 is a ValueError naming the line."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: invalid UTF-8 (byte {e.start}); save the file as UTF-8") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.removesuffix("\r") for ln in lines]


def write_tsv(out, lines: list[str]) -> None:
    """Write ``lines`` to ``out`` atomically (nothing is left behind on failure), or to standard output."""
    from toolkit.caches.io import write_atomic

    text = "\n".join(lines) + "\n"
    if out:
        write_atomic(out, text)
    else:
        sys.stdout.write(text)
