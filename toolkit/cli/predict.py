"""``toolkit predict``."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("predict", help="real early-exit / cascade inference with a saved policy",
                        description="Run a policy saved with toolkit.nn.runtime.Policy.save (models, score, thresholds, "
                                    "temperatures) on a text file, one example per line (a tab separates sentence "
                                    "pairs). Exited examples stop computing. Writes line, predicted class, exit stage.")
    p.add_argument("--policy", required=True, help="policy JSON")
    p.add_argument("--input", required=True, help="UTF-8 text file, one example per line")
    p.add_argument("--out", help="TSV to write (default: standard output)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(fn=run)


def run(a) -> int:
    from pathlib import Path

    from ..nn.runtime import Policy, runner_from_policy

    policy = Policy.load(a.policy)
    lines = [ln for ln in Path(a.input).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{a.input}: no texts (one example per line; sentence pairs separated by a tab)")
    parts = [ln.split("\t") for ln in lines]
    pair = all(len(p) == 2 for p in parts)
    texts_a = [p[0] for p in parts]
    texts_b = [p[1] for p in parts] if pair else None
    runner = runner_from_policy(policy)
    res = runner.run(texts_a, texts_b, batch_size=a.batch_size)
    import contextlib

    with open(a.out, "w", encoding="utf-8") if a.out else contextlib.nullcontext(sys.stdout) as out:
        print("line\tprediction\texit_stage", file=out)
        for i, (p, e) in enumerate(zip(res.prediction, res.exit_stage)):
            print(f"{i + 1}\t{int(p)}\t{int(e)}", file=out)
    print(f"{len(lines)} examples in {res.seconds:.2f} s; share exiting before the last stage "
          f"{(res.exit_stage < res.exit_stage.max(initial=0)).mean():.3f}", file=sys.stderr)
    return 0
