"""``toolkit profile``: time each model's pieces on this machine into a latency profile (JSON), the input of
predicted-time costing (``toolkit sweep --profile``, :mod:`toolkit.analysis.cost.latency`)."""

from __future__ import annotations

from toolkit.cli._common import output_file, positive_int


def register(sub) -> None:
    p = sub.add_parser("profile", help="time each model's pieces on this machine into a latency profile (JSON)",
                       description="Times each model's pieces as the runtimes call them (encoders: inputs, "
                                   "embeddings, a layer, an exit, the whole forward; causal LMs: pass set-up, a "
                                   "layer at 1..9 new positions, the LM head, a draft exit, CALM confidence, state "
                                   "propagation, the decoder loop's overhead) over a grid of batch sizes, after "
                                   "warm-up, as medians of repeats, with the load average, machine, threads, dtype "
                                   "and library versions. A few minutes per model; --quick for a 2 x 2 grid.")
    p.add_argument("--model", action="append", required=True,
                   help="a model name or folder (repeatable): an encoder (new exit heads after every layer unless "
                        "it is a trained multi-exit checkpoint; NAME@L truncates to L layers) or a causal LM")
    p.add_argument("--out", required=True, help="profile file to write (.json)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=positive_int, help="at most this many timed calls per grid point (default 30, fewer for slow calls; 3 with --quick)")
    p.add_argument("--context", type=positive_int, default=128,
                   help="cached positions at which decoder passes are timed (default 128)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="a 2 x 2 grid and 3 repeats (a smoke test, not a profile)")
    p.set_defaults(fn=run)


def run(a) -> int:
    import json

    out = output_file(a.out, "--out profile")  # a link or read-only file is refused now, not after the timing
    import torch

    from toolkit.caches.io import write_atomic
    from toolkit.nn.common.profile import load_for_profile, profile_models

    if a.threads:
        torch.set_num_threads(a.threads)
    models = {m: load_for_profile(m, device=a.device) for m in a.model}
    prof = profile_models(models, quick=a.quick, repeats=a.repeats, context=a.context, device=a.device,
                          progress=lambda s: print(s, flush=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(prof, indent=1))  # its own tmp+rename replaced a link and a read-only file
    print(f"wrote {out}: {len(prof['models'])} model(s), {prof['threads']} threads, load {prof['loadavg_start']} -> "
          f"{prof['loadavg_end']}, {prof['seconds']:.0f} s")
    return 0
