"""Argument types and groups shared by several commands: the parser refuses bad values with a clear message."""

from __future__ import annotations

import argparse
import math


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with checks across flags: each function of :attr:`checks` gets ``(namespace, parser)``
    once this parser has parsed its arguments (a subcommand's parser included, so every caller of ``parse_args``
    sees them) and refuses a bad combination with ``parser.error`` (exit 2, the command's usage)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checks: list = []

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        for check in self.checks:
            check(namespace, self)
        return namespace, rest


def _number(kind, text: str, *, low=None, low_open=False, high=None):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if low is not None and (v <= low if low_open else v < low):
        raise argparse.ArgumentTypeError(f"{text!r} must be {'>' if low_open else '>='} {low}")
    if high is not None and v > high:
        raise argparse.ArgumentTypeError(f"{text!r} must be <= {high}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (``--limit``, ``--batch-size``, ``--rows`` ...)."""
    return _number(int, text, low=1)


def non_negative_int(text: str) -> int:
    return _number(int, text, low=0)


def at_least(low: int):
    """An integer type refusing values below ``low`` (``--folds``: at least 2)."""
    def kind(text: str) -> int:
        return _number(int, text, low=low)

    kind.__name__ = f"integer >= {low}"
    return kind


def token_length(text: str) -> int:
    """``--max-length``: an integer >= 4 (room for the special tokens and some text; transformers silently ignores
    a max_length that leaves none)."""
    return _number(int, text, low=4)


def max_steps(text: str) -> int:
    """``--max-steps``: -1 (train for the given epochs) or a positive number of optimizer steps."""
    v = _number(int, text, low=-1)
    if v == 0:
        raise argparse.ArgumentTypeError("'0' steps trains nothing: give -1 (use --epochs) or a positive count")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, temperatures, epochs)."""
    return _number(float, text, low=0.0, low_open=True)


def probability(text: str) -> float:
    """A number in the open interval (0, 1) (``--delta``, ``--epsilon``)."""
    v = _number(float, text, low=0.0, low_open=True)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be < 1")
    return v


def schedule_args(p: argparse.ArgumentParser, lr: float, layers: bool = True) -> None:
    """Training-schedule flags shared by `train`, `difficulty` and `train-t2t`."""
    if layers:
        p.add_argument("--layers", type=positive_int, help="truncate the encoder to its first k layers")
    p.add_argument("--epochs", type=positive_float, default=1.0)
    p.add_argument("--max-steps", type=max_steps, default=-1, help="stop after this many optimizer steps (-1: epochs)")
    p.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate (linear warm-up and decay)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-length", type=token_length, default=128, help="truncate inputs to this many tokens")
    p.add_argument("--train-limit", type=positive_int, help="seeded subsample of the training split")
    p.add_argument("--seed", type=non_negative_int, default=42)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (about 2x faster on CPUs with bf16 units)")


# ------------------------------------------------------------------------------------------------- analysis output
def engine_args(p: argparse.ArgumentParser, *, rows: bool = True) -> None:
    """Flags shared by the analysis commands: reference, output rows, CSV and JSON."""
    p.add_argument("--reference",
                   help="what speed-ups divide by: 'last' (default: the last member alone: the last model of a "
                        "cascade or of Swift/Super, the last exit of one model), 'all' (every stage in turn) or a "
                        "stage/model name (that member alone); not for LLM token caches (the full model)")
    if rows:
        p.add_argument("--rows", type=positive_int, default=15,
                       help="frontier rows to print (evenly spaced; the cheapest and the most accurate always shown)")
        p.add_argument("--csv", help="write the whole curve to this CSV file")
    p.add_argument("--json", action="store_true", help="print JSON (no NaN: missing values are null)")


def profile_args(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--profile``, ``--profile-model`` and ``--batch`` of ``toolkit sweep`` and ``toolkit plot``: cost in
    predicted ms from a latency profile; above batch 1, the runtime's own batches at every threshold
    (:func:`toolkit.analysis.cost.latency.time_sweep`). ``what``: what the command does with it."""
    p.add_argument("--profile", help=f"classification and LLM token caches: {what} in predicted ms per example (per "
                                     f"token) from this latency profile (`toolkit profile`) instead of FLOPs; the "
                                     f"output names the profile")
    p.add_argument("--profile-model", nargs="+", help="--profile: the profile's model for the cache's model (one "
                                                      "per cascade member; default: the cache's model names, "
                                                      "then their source models)")
    p.add_argument("--batch", type=positive_int,
                   help="--profile: predicted time per example of the runtime at this batch size, exactly at every "
                        "threshold (encoders and cascades: sorted, padded batches, exited rows leaving, escalated "
                        "examples re-batched; LLM token caches: the CALM decoder on batches of this many prompts, "
                        "each step running to its deepest exit) (default 1; needs --profile)")
    p.checks.append(_needs_profile)


def _needs_profile(a: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """``--batch`` and ``--profile-model`` without ``--profile`` are refused (they would be ignored: the cost stays
    in FLOPs); with a profile, ``--batch`` defaults to 1. An empty ``--profile`` is refused (the commands read it as
    no profile)."""
    if a.profile is not None and not a.profile.strip():
        p.error(f"--profile: an empty path ({a.profile!r}); give the latency profile file (PROFILE.json, made with "
                f"`toolkit profile`), or leave --profile out to cost in FLOPs")
    if a.profile is None:
        given = (["--batch prices the runtime's batches in predicted time"] if a.batch is not None else []) + \
                (["--profile-model names the profile's models"] if a.profile_model is not None else [])
        if given:
            p.error(f"{' and '.join(given)} and needs --profile PROFILE.json (a latency profile made with "
                    f"`toolkit profile`); without it the cost is FLOPs")
    elif a.batch is None:
        a.batch = 1


def input_file(path, what: str = "file"):
    """``path`` if it is an existing regular file, refused unread otherwise (a FIFO would block, a device never
    ends): the library's :func:`~toolkit.caches.io.check_regular_file`, naming ``what``."""
    from toolkit.caches.io import check_regular_file

    return check_regular_file(path, what=what)


def output_file(path, what: str = "output file"):
    """``path`` if the atomic writer will write it (absent, or a writable regular file), checked before anything is
    computed with the writer's own check (:func:`toolkit.caches.io.check_writable`): a symbolic link, a read-only
    file, a directory, FIFO or device is refused now, not after a long run (writing to a FIFO blocks until someone
    reads it)."""
    from pathlib import Path

    from toolkit.caches.io import CacheError, check_writable

    check_writable(path, what=what, error=CacheError)
    return Path(path)


def output_folder(path, what: str = "output folder"):
    """``path`` if a folder output (a saved model) may be written there (absent, or a writable directory), checked
    before the run with the library's :func:`toolkit.caches.io.check_writable_folder`: a symbolic link, a file or a
    read-only folder is refused now, not after the fit."""
    from pathlib import Path

    from toolkit.caches.io import CacheError, check_writable_folder

    check_writable_folder(path, what=what, error=CacheError)
    return Path(path)


def cache_kind(path) -> str:
    """"classification", "generation" or "llm_tokens", from a cache file's header through the library's checks
    (:func:`toolkit.caches.kinds.kind_of`: a FIFO or device is refused unread, a malformed header names the
    file)."""
    from toolkit.caches.kinds import kind_of

    return kind_of(path).name


def bounded_int(low: int, high: int, what: str):
    """An integer type refusing values outside ``low..high`` (resource arguments: resamples, dots per inch)."""
    def kind(text: str) -> int:
        v = _number(int, text, low=low, high=high)
        return v

    kind.__name__ = f"integer in {low}..{high} ({what})"
    return kind


def evenly(frame, n: int):
    """``n`` evenly spaced rows of a frame, always with its first and last row (the top of a frontier).

    >>> import pandas as pd
    >>> evenly(pd.DataFrame({"a": range(10)}), 3)["a"].tolist()
    [0, 4, 9]
    """
    import numpy as np

    idx = np.unique(np.round(np.linspace(0, len(frame) - 1, min(n, len(frame)))).astype(int))
    return frame.iloc[idx]


SHARES = ("escalated", "final_share")


def readable(frame, metrics=(), *, unit: str = "FLOPs"):
    """A curve frame for people: GFLOPs (or the cache's cost unit), speed-ups in x, shares in %, metrics to 4
    decimals."""
    from toolkit.caches.inputs import cost_scale

    out = frame.copy()
    if "flops" in out:
        scale, shown = cost_scale(unit)
        out["flops"] = (out["flops"] / scale).round(3) if unit == "FLOPs" else out["flops"].map("{:.4g}".format)
        out = out.rename(columns={"flops": shown if unit == "FLOPs" else f"cost ({shown})"})
    if "speedup" in out:
        out["speedup"] = out["speedup"].map(lambda v: f"{v:.2f}x")
        out = out.rename(columns={"speedup": "speed-up"})
    for k in SHARES:
        if k in out:
            out[k] = out[k].map(lambda v: f"{100 * v:.1f}%")
            out = out.rename(columns={k: f"{k} %".replace("_share", "")})
    for k in ("mean_layers", "tokens"):
        if k in out:
            out[k] = out[k].round(2)
    for k in metrics:
        if k in out:
            out[k] = out[k].round(4)
    if "threshold" in out:
        out["threshold"] = out["threshold"].round(4)
    return out


def print_json(obj) -> None:
    import json

    from toolkit.analysis.engine import jsonable

    print(json.dumps(jsonable(obj), indent=1, allow_nan=False))
