"""``toolkit predict``."""

from __future__ import annotations

import sys

from ._common import positive_int


def register(sub) -> None:
    p = sub.add_parser("predict", help="real early-exit / cascade inference with a saved policy",
                        description="Run a policy saved with toolkit.nn.runtime.Policy.save (models, score, thresholds, "
                                    "temperatures) on a text file, one example per line (lines end at \\n only; a tab "
                                    "separates sentence pairs: then every line must hold exactly one tab). Exited "
                                    "examples stop computing. Writes one row per input line, numbered like the input: "
                                    "line, predicted class, exit stage (both empty for a blank line).")
    p.add_argument("--policy", required=True, help="policy JSON")
    p.add_argument("--input", required=True, help="UTF-8 text file, one example per line")
    p.add_argument("--out", help="TSV to write (default: standard output)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--allow-random-heads", action="store_true",
                   help="run even if a model has no trained classifier/exit heads (random predictions)")
    p.set_defaults(fn=run)


def read_examples(path) -> tuple[list[int], list[str], list[str] | None, int]:
    """Input lines (split on ``\\n`` only, a final ``\\r`` dropped) as 1-based line numbers of the non-blank ones,
    their texts (pairs split at the tab) and the total line count. Pair mode is set by the first non-blank line;
    every other line must agree, else a ValueError names the line."""
    from pathlib import Path

    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: invalid UTF-8 (byte {e.start}); save the file as UTF-8") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.removesuffix("\r") for ln in lines]
    numbers = [i + 1 for i, ln in enumerate(lines) if ln.strip()]
    if not numbers:
        raise ValueError(f"{path}: no texts (one example per line; sentence pairs separated by a tab)")
    fields = {n: lines[n - 1].split("\t") for n in numbers}
    first = numbers[0]
    pair = len(fields[first]) > 1
    for n in numbers:
        f = fields[n]
        if pair and (len(f) != 2 or not f[0].strip() or not f[1].strip()):
            raise ValueError(f"{path}:{n}: expected two non-empty texts separated by one tab (line {first} is a "
                             f"pair), got {len(f)} field(s)")
        if not pair and len(f) != 1:
            raise ValueError(f"{path}:{n}: holds a tab, but line {first} is a single text; give every line one "
                             f"text, or every line a pair separated by one tab")
    texts_a = [fields[n][0] for n in numbers]
    texts_b = [fields[n][1] for n in numbers] if pair else None
    return numbers, texts_a, texts_b, len(lines)


def run(a) -> int:
    import contextlib

    from ..nn.runtime import Policy, runner_from_policy

    policy = Policy.load(a.policy)
    numbers, texts_a, texts_b, n_lines = read_examples(a.input)
    runner = runner_from_policy(policy, allow_random_heads=a.allow_random_heads, source=str(a.policy))
    res = runner.run(texts_a, texts_b, batch_size=a.batch_size)
    by_line = {n: (int(p), int(e)) for n, p, e in zip(numbers, res.prediction, res.exit_stage)}
    with open(a.out, "w", encoding="utf-8") if a.out else contextlib.nullcontext(sys.stdout) as out:
        print("line\tprediction\texit_stage", file=out)
        for n in range(1, n_lines + 1):
            p, e = by_line.get(n, ("", ""))
            print(f"{n}\t{p}\t{e}", file=out)
    last = runner.n_stages - 1
    blank = n_lines - len(numbers)
    print(f"{len(numbers)} examples in {res.seconds:.2f} s ({blank} blank line(s) left without prediction); share "
          f"stopping before the policy's last stage ({last}): {(res.exit_stage < last).mean():.3f}", file=sys.stderr)
    return 0
