"""Add one causal-LM piece to an existing latency profile, timed now on this machine, leaving every other piece's
numbers as they are (e.g. ``translator``, a tuned exit's ``h + Linear(H, H)``, to a profile made before it was timed).

The piece is timed by :func:`toolkit.nn.common.profile.profile_causal_lm` (rounds, warm-up, means and medians, as
the other pieces) with the profile's threads, repeats, warm-up and context, on the grid of the profile's LM ``head``
piece; the profile's ``pieces_added`` records when, with what load average and how.

    python benchmarks/profile_add_piece.py benchmarks/latency_profile_cpu.json --model SmolLM2-135M-Instruct \\
        --piece translator
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="the profile file (updated in place)")
    ap.add_argument("--model", required=True, help="the profile's causal LM (name or folder, as `toolkit profile`)")
    ap.add_argument("--piece", required=True, help="the piece to time and add, e.g. translator")
    a = ap.parse_args(argv)

    import torch

    from toolkit.analysis.cost.latency import load_profile
    from toolkit.nn.common.profile import Rounds, load_for_profile, loadavg, profile_causal_lm

    path = Path(a.profile)
    d = json.loads(path.read_text())
    name = load_profile(d).model(a.model).name
    entry = d["models"][name]
    if entry["kind"] != "causal_lm":
        raise SystemExit(f"{path}: models.{name} is an {entry['kind']}, not a causal LM")
    if a.piece in entry["pieces"]:
        raise SystemExit(f"{path}: models.{name}.pieces already has {a.piece!r}; this script only adds pieces")
    torch.set_num_threads(int(d["threads"]))
    head = entry["pieces"]["head"]
    grid = {"batch": head["batch"], "positions": [int(p) for p in head["positions"]]}
    model, _ = load_for_profile(a.model, device=d.get("device", "cpu"))
    rounds = Rounds(repeats=int(d["repeats"]), warmup=int(d["warmup"]), device=d.get("device", "cpu"))
    start, t0 = loadavg(), time.perf_counter()
    new, _ = profile_causal_lm(model, rounds, grid=grid, context=int(entry["context"]),
                               device=d.get("device", "cpu"), pieces=(a.piece,))
    rounds.run(lambda s: print(s, file=sys.stderr))
    entry["pieces"][a.piece] = new["pieces"][a.piece]
    d.setdefault("pieces_added", []).append({
        "model": name, "piece": a.piece, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": start, "loadavg_end": loadavg(), "seconds": round(time.perf_counter() - t0, 2),
        "grid": "the model's head piece grid", "threads": torch.get_num_threads(),
        "note": "timed later than the profile's other pieces, which were not re-timed (their numbers are unchanged)",
        "command": f"python benchmarks/profile_add_piece.py {a.profile} --model {a.model} --piece {a.piece}"})
    load_profile(d)  # the reader accepts what is written
    path.write_text(json.dumps(d, indent=1))  # as `toolkit profile` writes it
    print(json.dumps({"piece": a.piece, "ms": entry["pieces"][a.piece]["ms"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
