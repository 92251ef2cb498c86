"""``toolkit predict``."""

from __future__ import annotations

import sys

from toolkit.cli._policy import add_policy_arguments, load_policy, read_lines, write_tsv


def register(sub) -> None:
    p = sub.add_parser("predict", help="real early-exit / cascade inference with a saved policy",
                       description="Run a saved policy (toolkit.policy.Policy, method early_exit or cascade: models "
                                   "with their weight fingerprints, score, thresholds, temperatures) on a text file, "
                                   "one example per line (lines end at \\n only; a tab separates sentence pairs: then "
                                   "every line must hold exactly one tab). The policy runs only on the weights it was "
                                   "chosen for. Exited examples stop computing. Writes one row per input line, "
                                   "numbered like the input: line, predicted class, exit stage (both empty for a "
                                   "blank line).")
    add_policy_arguments(p, batch_size=32)
    p.add_argument("--allow-random-heads", action="store_true",
                   help="run even if a model has no trained classifier/exit heads (random predictions)")
    p.set_defaults(fn=run)


def read_examples(path) -> tuple[list[int], list[str], list[str] | None, int]:
    """Input lines (:func:`read_lines`) as 1-based line numbers of the non-blank ones, their texts (pairs split at
    the tab) and the total line count. Pair mode is set by the first non-blank line; every other line must agree,
    else a ValueError names the line."""
    lines = read_lines(path)
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
    from toolkit.nn.encoder.runtime import runner_from_policy

    policy = load_policy(a, "predict")
    numbers, texts_a, texts_b, n_lines = read_examples(a.input)
    runner = runner_from_policy(policy, a.device, allow_random_heads=a.allow_random_heads, source=str(a.policy))
    res = runner.run(texts_a, texts_b, batch_size=a.batch_size)
    by_line = {n: (int(p), int(e)) for n, p, e in zip(numbers, res.prediction, res.exit_stage)}
    rows = ["line\tprediction\texit_stage"]
    for n in range(1, n_lines + 1):
        p, e = by_line.get(n, ("", ""))
        rows.append(f"{n}\t{p}\t{e}")
    write_tsv(a.out, rows)
    last = runner.n_stages - 1
    blank = n_lines - len(numbers)
    print(f"{len(numbers)} examples in {res.seconds:.2f} s ({blank} blank line(s) left without prediction); share "
          f"stopping before the policy's last stage ({last}): {(res.exit_stage < last).mean():.3f}", file=sys.stderr)
    return 0
