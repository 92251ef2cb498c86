"""Predicted wall-clock time as a cost unit: a measured latency profile (``toolkit profile``) read without torch,
and the time a runtime's schedule takes according to it.

A **profile** (JSON, written by :func:`toolkit.nn.common.profile.profile_models`) holds, per model, the mean
milliseconds of each *piece* the runtimes call (an encoder's ``inputs`` (tokenize and pad), ``embed``, one
``layer``, an ``exit`` (pool, head, confidence, to host, row selection), a ``head`` (pool and head), the whole
``forward`` as a check (a forward is predicted from the other pieces, :func:`forward_ms`); a
causal LM's pass ``setup`` (embed, rotary, mask), one decoder ``layer``, the LM ``head`` with its argmax, a draft
``exit`` (logit lens), a tuned exit's ``translator`` (``h + Linear(H, H)`` before the lens; a profile without it
refuses tuned-exit views), the CALM ``confidence``, ``kv_propagation`` of one skipped layer and the decoder loop's
``step_overhead``), each on a grid of batch sizes and positions (tokens of an encoder input; new positions of a
decoder pass at the profile's fixed context).

Interpolation (:data:`INTERPOLATION`): piecewise-linear in positions between grid points, constant below the first,
linear extrapolation from the last segment above the last (never decreasing); linear in log2(batch) between grid
batch sizes, proportional to the batch size above the largest; zero rows cost nothing. The profile stores the
mean times made non-decreasing along each axis (more work never takes less time; the raw means and medians are
kept beside them), so predictions are exact at grid points and monotone between them.

**Schedules** (what each runtime runs; batch effects where it batches):

- encoder early exit (:class:`toolkit.nn.encoder.runtime.EarlyExitRunner`): examples sorted by length, batches padded to
  their longest (dynamic padding); each layer runs on the rows still in the batch; a batch runs to its deepest exit;
- cascades (:class:`toolkit.nn.encoder.runtime.CascadeRunner`): each member on the examples that reach it, sorted and
  batched the same way;
- CALM (:class:`toolkit.nn.causal.decode.CalmDecoder`): per step, each layer on the rows still running, each checked
  exit on them, state propagation for the rows that exited, the LM head on the rest; finished rows leave;
- self-speculative decoding: each block's passes (:func:`toolkit.analysis.cost.causal.self_speculative_passes`, the
  definition the decoder checks itself against) at the block's draft length, for the rows still decoding; each draft
  exit evaluation with a tuned exit's translator where the draft exit is tuned.

Per example, for a sweep (:func:`with_predicted_time`): a cache view's cumulative cost per stage in predicted
milliseconds at batch 1 (exact for the schedule). Above batch 1 no per-example cost is exact (a batch runs to its
deepest exit, exited rows leave it, a cascade re-batches what it escalates), so ``with_predicted_time`` refuses it;
the runtime's batches are priced at every threshold by :func:`time_sweep`: :func:`encoder_time_sweep` (encoders and
cascades; the batches of :func:`early_exit_batches` and :func:`cascade_batches`, which tests check against the
layers the runtimes run) or :func:`calm_time_sweep` (CALM); :func:`choose_time_budget` picks on them. Each row's
share ``t(b, n) / b`` of a full batch of its length (:func:`encoder_example_ms`, :func:`cascade_example_ms` at
``batch=b``) stays available only as the named comparison that misprices them (about 18% on the MRPC cascade at
batch 32, ``benchmarks/bench_time_budget.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from toolkit._api import check_batch
from toolkit.analysis.cost.causal import self_speculative_passes
from toolkit.analysis.engine.choose import VIEW_KEYS, OperatingPoint, is_test_split
from toolkit.analysis.engine.curves import evaluation
from toolkit.analysis.engine.results import html_table, text_repr

PROFILE_FORMAT = "toolkit-latency-profile/1"
INTERPOLATION = ("piecewise-linear in positions (constant below the first grid point, linear extrapolation from the "
                 "last segment above the last, never decreasing); linear in log2(batch) between grid batch sizes, "
                 "proportional to batch above the largest; 0 rows cost 0; values made non-decreasing along both "
                 "axes")
ENCODER_PIECES = ("inputs", "embed", "layer", "exit", "head", "forward")
CAUSAL_PIECES = ("setup", "layer", "head", "exit", "confidence", "kv_propagation", "step_overhead")
MAX_PROFILE_BYTES = 64 << 20  # a profile of many models and grids is well under 1 MB; refuse before reading

__all__ = ["PROFILE_FORMAT", "INTERPOLATION", "Piece", "ModelProfile", "LatencyProfile", "load_profile",
           "monotone", "encoder_run_ms", "encoder_full_ms", "forward_ms", "cascade_run_ms", "calm_run_ms", "greedy_run_ms",
           "greedy_step_ms", "calm_step_ms", "calm_token_ms", "calm_time_sweep", "CalmTimeCurves", "calm_time_curves",
           "self_speculative_run_ms", "SPEC_EXIT_PIECES", "CALM_EXIT_PIECES", "encoder_example_ms", "cascade_example_ms", "with_predicted_time", "models_for", "check_profile_models", "SpeedupAgreement", "speedup_agreement",
           "time_budget_speedup", "TimeBudgetChoice", "choose_time_budget",
           "early_exit_batches", "early_exit_ms", "cascade_batches", "cascade_ms", "sweep_stages", "encoder_time_sweep",
           "time_sweep", "ROW_SHARES_REFUSED"]


def monotone(ms) -> np.ndarray:
    """A ``[batch, positions]`` table of times made non-decreasing along both axes (running maximum)."""
    t = np.asarray(ms, dtype=np.float64)
    return np.maximum.accumulate(np.maximum.accumulate(t, axis=0), axis=1)


def _positions_interp(p: np.ndarray, grid: np.ndarray, row: np.ndarray) -> np.ndarray:
    y = np.interp(p, grid, row)  # constant below the first grid point
    if len(grid) > 1:
        slope = max((row[-1] - row[-2]) / (grid[-1] - grid[-2]), 0.0)
        y = np.where(p > grid[-1], row[-1] + slope * (p - grid[-1]), y)
    return y


@dataclass(frozen=True)
class Piece:
    """Milliseconds (the profile's statistic) of one piece on a grid: ``ms[i, j]`` at ``batch[i]`` rows and ``positions[j]``."""

    name: str
    batch: tuple[int, ...]
    positions: tuple[float, ...]
    ms: np.ndarray

    def __post_init__(self):
        b, p, t = np.asarray(self.batch), np.asarray(self.positions, dtype=np.float64), np.asarray(self.ms)
        if t.shape != (len(b), len(p)) or not len(b) or not len(p):
            raise ValueError(f"piece {self.name!r}: ms has shape {t.shape}, expected ({len(b)}, {len(p)}) "
                             f"(batch x positions)")
        if (np.diff(b) <= 0).any() or b[0] < 1 or (np.diff(p) <= 0).any():
            raise ValueError(f"piece {self.name!r}: batch and positions grids must increase (batch >= 1)")
        if not np.isfinite(t).all() or (t < 0).any():
            raise ValueError(f"piece {self.name!r}: ms must be finite and non-negative")

    def __call__(self, batch, positions=1) -> np.ndarray:
        """Predicted milliseconds at ``batch`` rows (integers >= 0) and ``positions`` (broadcast together)."""
        b = np.asarray(batch, dtype=np.float64)
        p = np.asarray(positions, dtype=np.float64)
        b, p = np.broadcast_arrays(b, p)
        grid_b = np.asarray(self.batch, dtype=np.float64)
        grid_p = np.asarray(self.positions, dtype=np.float64)
        table = np.asarray(self.ms, dtype=np.float64)
        rows = np.stack([_positions_interp(p, grid_p, table[i]) for i in range(len(grid_b))])  # [B_grid, ...]
        lb = np.log2(np.clip(b, grid_b[0], grid_b[-1]))
        lg = np.log2(grid_b)
        hi = np.clip(np.searchsorted(lg, lb, side="left"), 1, max(len(lg) - 1, 1)) if len(lg) > 1 else np.zeros(
            b.shape, dtype=np.int64)
        lo = np.maximum(hi - 1, 0)
        span = np.where(hi > lo, lg[hi] - lg[lo], 1.0)
        w = np.where(hi > lo, (lb - lg[lo]) / span, 0.0)
        y = (1 - w) * np.take_along_axis(rows, lo[None], 0)[0] + w * np.take_along_axis(rows, hi[None], 0)[0]
        y = np.where(b > grid_b[-1], y * b / grid_b[-1], y)
        return np.where(b <= 0, 0.0, y)

    def to_dict(self) -> dict:
        return {"batch": list(map(int, self.batch)), "positions": list(map(float, self.positions)),
                "ms": np.asarray(self.ms).tolist()}


@dataclass(frozen=True)
class ModelProfile:
    """The pieces of one model in a profile (``kind``: encoder or causal_lm)."""

    name: str
    kind: str
    layers: int
    pieces: Mapping[str, Piece]
    info: Mapping = field(default_factory=dict)
    source: str = "profile"

    def __getitem__(self, piece: str) -> Piece:
        if piece not in self.pieces:
            raise KeyError(f"{self.source}: model {self.name!r} has no piece {piece!r} (it has "
                           f"{sorted(self.pieces)}); re-profile it with `toolkit profile --model {self.name}`")
        return self.pieces[piece]


@dataclass(frozen=True)
class LatencyProfile:
    """A latency profile: the machine it was measured on and each model's pieces."""

    meta: Mapping
    models: Mapping[str, ModelProfile]
    path: str | None = None

    @property
    def label(self) -> str:
        """How a cost unit names this profile: its file name and the machine."""
        m = self.meta.get("machine", {})
        return f"{Path(self.path).name if self.path else 'profile'} ({m.get('host', '?')}, " \
               f"{self.meta.get('threads')} threads, {self.meta.get('dtype')})"

    def model(self, name: str) -> ModelProfile:
        if name in self.models:
            return self.models[name]
        short = {k.split("/")[-1].lower(): k for k in self.models}
        key = str(name).rstrip("/").split("/")[-1].lower()
        if key in short:
            return self.models[short[key]]
        raise KeyError(f"{self.path or 'profile'}: no model {name!r} (it has {sorted(self.models)}); profile it "
                       f"with `toolkit profile --model {name} --out ...`")

    def to_dict(self) -> dict:
        return {**self.meta, "format": PROFILE_FORMAT,
                "models": {n: {"kind": m.kind, "layers": m.layers, **dict(m.info),
                               "pieces": {k: p.to_dict() for k, p in m.pieces.items()}} for n, m in
                           self.models.items()}}


def load_profile(path_or_dict) -> LatencyProfile:
    """Read a profile file (or its dict); errors name the file and key."""
    if isinstance(path_or_dict, Mapping):
        d, src = dict(path_or_dict), "profile"
    else:
        src = os.fspath(path_or_dict)
        d = _read_profile_json(src)
    if not isinstance(d, dict):
        raise ValueError(f"{src}: a latency profile is a JSON object, got {type(d).__name__}; make one with "
                         f"`toolkit profile`")
    if d.get("format") != PROFILE_FORMAT:
        raise ValueError(f"{src}: key 'format' is {d.get('format')!r}, expected {PROFILE_FORMAT!r}; make the "
                         f"profile with `toolkit profile`")
    if not isinstance(d.get("models") or {}, dict):
        raise ValueError(f"{src}: key 'models' must be an object of models, got {type(d['models']).__name__}")
    models = {}
    for name, m in (d.get("models") or {}).items():
        kind = m.get("kind") if isinstance(m, dict) else None
        if kind not in ("encoder", "causal_lm"):
            raise ValueError(f"{src}: key models.{name}.kind must be encoder or causal_lm, got {kind!r}")
        try:
            pieces = {k: Piece(k, tuple(p["batch"]), tuple(p["positions"]), np.asarray(p["ms"], dtype=np.float64))
                      for k, p in m["pieces"].items()}
        except (KeyError, TypeError) as e:
            raise ValueError(f"{src}: models.{name}.pieces: malformed piece ({e!r}); re-profile") from None
        info = {k: v for k, v in m.items() if k not in ("kind", "layers", "pieces")}
        models[name] = ModelProfile(name, m["kind"], int(m["layers"]), pieces, info, src)
    meta = {k: v for k, v in d.items() if k != "models"}
    return LatencyProfile(meta, models, None if isinstance(path_or_dict, Mapping) else src)


def _read_profile_json(src: str):
    """The parsed JSON of profile file ``src``; a FIFO, a directory, a missing file or one larger than
    :data:`MAX_PROFILE_BYTES` is refused before anything is read, naming the file."""
    from toolkit.caches.io import check_regular_file

    path = check_regular_file(src, what="latency profile")
    size = path.stat().st_size
    if size > MAX_PROFILE_BYTES:
        raise ValueError(f"{src}: {size:,} bytes, more than a latency profile holds (at most "
                         f"{MAX_PROFILE_BYTES:,}); not read: give the JSON file `toolkit profile` wrote")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{src}: not UTF-8 text ({e.reason} at byte {e.start}), so not a latency profile; make "
                         f"one with `toolkit profile`") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{src}:{e.lineno}: not a JSON latency profile ({e.msg}); make one with "
                         f"`toolkit profile`") from None
    except RecursionError:
        raise ValueError(f"{src}: JSON nested too deeply to be a latency profile") from None


# ---------------------------------------------------------------------------------------------------- encoders

def _sorted_batches(n_tokens, batch_size: int):
    """Rows in the runtimes' order (stable sort by length) cut into batches: (order, batch index per sorted row,
    padded length per batch)."""
    n = np.asarray(n_tokens)
    order = np.argsort(n, kind="stable")
    which = np.arange(len(n)) // check_batch(batch_size, name="batch_size")
    width = np.zeros(which.max() + 1 if len(n) else 0)
    np.maximum.at(width, which, n[order])
    return order, which, width


def early_exit_batches(n_tokens, exit_stage, *, batch_size: int, n_stages: int):
    """The batches :class:`~toolkit.nn.encoder.runtime.EarlyExitRunner` forms, at each row of stops ``exit_stage``
    ``[T, N]`` (0-based stage per example): ``(reach, rows, width)``, ``reach[t, k, e]`` the rows of sorted batch
    ``k`` that enter exit ``e``'s layers (stop at ``e`` or later), ``rows[k]`` its rows and ``width[k]`` its padded
    length (its longest example). The one count the early-exit schedule (:func:`early_exit_ms`) is priced from and
    the runtime is checked against (tests/test_latency_batches.py)."""
    stage = np.atleast_2d(np.asarray(exit_stage, dtype=np.int64))
    order, which, width = _sorted_batches(n_tokens, batch_size)
    T, nb, E = stage.shape[0], len(width), int(n_stages)
    flat = (np.arange(T)[:, None] * nb + which[None, :]) * E + stage[:, order]
    stop = np.bincount(flat.ravel(), minlength=T * nb * E).reshape(T, nb, E)
    reach = np.cumsum(stop[..., ::-1], axis=-1)[..., ::-1]
    return reach, np.bincount(which, minlength=nb), width


def early_exit_ms(m: ModelProfile, n_tokens, exit_stage, *, batch_size: int) -> np.ndarray:
    """Predicted ms ``[T]`` of :class:`~toolkit.nn.encoder.runtime.EarlyExitRunner` at each row of stops
    ``exit_stage`` ``[T, N]`` (stage indices of ``m.info['exit_layers']``): per sorted, padded batch, inputs and
    embeddings of all rows, each layer on the rows still in the batch, each exit on the rows reaching it (a batch
    stops once every row exited: it runs to its deepest exit)."""
    exits = np.asarray(m.info["exit_layers"], dtype=np.int64)
    reach, rows, width = early_exit_batches(n_tokens, exit_stage, batch_size=batch_size, n_stages=len(exits))
    span = np.diff(exits, prepend=0)  # layers run between exit e-1 and exit e
    # each piece once per (rows reaching, batch) pair, looked up at every threshold: reach <= rows <= batch_size
    r, k = np.arange(int(rows.max(initial=0)) + 1)[:, None], np.arange(len(width))[None, :, None]
    layer, exit_ = m["layer"](r, width[None, :]), m["exit"](r, width[None, :])
    t = (layer[reach, k] * span).sum(-1) + exit_[reach, k].sum(-1)
    return t.sum(-1) + float((m["inputs"](rows, width) + m["embed"](rows, width)).sum())


def encoder_run_ms(m: ModelProfile, n_tokens, exit_layer, *, batch_size: int) -> float:
    """Predicted milliseconds of :class:`~toolkit.nn.encoder.runtime.EarlyExitRunner` on examples of ``n_tokens`` tokens
    that exit after encoder layer ``exit_layer`` (1-based, per example; one of ``m.info['exit_layers']``):
    :func:`early_exit_ms` of one row of stops."""
    exits = np.asarray(m.info["exit_layers"])
    layer = np.asarray(exit_layer)
    stage = np.searchsorted(exits, layer)
    if (stage >= len(exits)).any() or (exits[np.minimum(stage, len(exits) - 1)] != layer).any():
        raise ValueError(f"exit layers {sorted(set(layer.tolist()) - set(exits.tolist()))} are not exits of "
                         f"{m.name!r} (its exits: {exits.tolist()})")
    return float(early_exit_ms(m, n_tokens, stage[None], batch_size=batch_size)[0])


def forward_ms(m: ModelProfile, batch, n_tokens) -> np.ndarray:
    """Predicted ms of an encoder's whole forward with its inputs (``run_full``, ``predict_logits``) on ``batch`` rows
    of ``n_tokens``: inputs, embeddings, every layer and every exit head, from the same pieces as the early-exit
    schedule (so a profile's drift between pieces cannot favour one side; the profile's ``forward`` is a check)."""
    E = len(m.info["exit_layers"])
    return (m["inputs"](batch, n_tokens) + m["embed"](batch, n_tokens) + m.layers * m["layer"](batch, n_tokens)
            + E * m["head"](batch, n_tokens))


def encoder_full_ms(m: ModelProfile, n_tokens, *, batch_size: int) -> float:
    """Predicted milliseconds of the whole model on every example (``run_full``, ``predict_logits``: one forward per
    sorted, padded batch, :func:`forward_ms`)."""
    _, which, width = _sorted_batches(n_tokens, batch_size)
    return float(forward_ms(m, np.bincount(which, minlength=len(width)), width).sum())


def _member_tokens(n_tokens, n_members: int) -> list[np.ndarray]:
    return ([np.asarray(x) for x in n_tokens] if np.ndim(n_tokens[0]) else [np.asarray(n_tokens)] * n_members)


def cascade_batches(n_tokens, exit_stage, member: int, *, batch_size: int):
    """The batches :class:`~toolkit.nn.encoder.runtime.CascadeRunner` forms for member ``member`` at each row of
    stops ``exit_stage`` ``[T, N]``: the examples reaching it (``exit_stage >= member``) sorted by length (stable,
    ties in example order) and cut into batches of ``batch_size``. Returns ``(full, last_rows, last_width)``:
    ``full[t, i]`` whether sorted example ``i`` closes a full batch (its length is that batch's padded length),
    and the rows and padded length of the last, partial batch (0 rows where there is none)."""
    stage = np.atleast_2d(np.asarray(exit_stage, dtype=np.int64))
    n = np.asarray(n_tokens)
    order = np.argsort(n, kind="stable")
    inc = stage[:, order] >= member
    rank = np.cumsum(inc, axis=1)
    b = check_batch(batch_size, name="batch_size")
    full = inc & (rank % b == 0)
    last_rows = rank[:, -1] % b if len(n) else np.zeros(len(stage), dtype=np.int64)
    last_width = np.where(inc, n[order][None, :], 0).max(axis=1, initial=0)
    return full, last_rows, np.where(last_rows > 0, last_width, 0)


def cascade_ms(members: Sequence[ModelProfile], n_tokens, exit_stage, *, batch_size: int) -> np.ndarray:
    """Predicted ms ``[T]`` of :class:`~toolkit.nn.encoder.runtime.CascadeRunner` at each row of stops
    ``exit_stage`` ``[T, N]``: member ``e`` runs (inputs and forward, :func:`forward_ms`) on the examples whose
    stop is ``e`` or later, re-sorted and re-batched among themselves (:func:`cascade_batches`). ``n_tokens``:
    ``[N]`` (one tokenizer for all) or one array per member."""
    stage = np.atleast_2d(np.asarray(exit_stage, dtype=np.int64))
    b = check_batch(batch_size, name="batch_size")
    total = np.zeros(len(stage))
    for e, (m, n) in enumerate(zip(members, _member_tokens(n_tokens, len(members)))):
        full, rows, width = cascade_batches(n, stage, e, batch_size=b)
        total += full @ forward_ms(m, b, np.sort(n, kind="stable")) + forward_ms(m, rows, width)
    return total


def cascade_run_ms(members: Sequence[ModelProfile], n_tokens, exit_stage, *, batch_size: int) -> float:
    """Predicted milliseconds of :class:`~toolkit.nn.encoder.runtime.CascadeRunner` on one row of stops
    ``exit_stage`` ``[N]`` (:func:`cascade_ms`)."""
    return float(cascade_ms(members, n_tokens, np.asarray(exit_stage)[None], batch_size=batch_size)[0])


def encoder_example_ms(m: ModelProfile, n_tokens, *, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per example, for a sweep: cumulative predicted ms ``[N, E]`` once exit e answered, and the whole model's
    ms ``[N]`` (the reference), each at a batch of ``batch`` rows of the example's length divided by ``batch``.
    Exact at batch 1 (:func:`with_predicted_time`); above it each row's share of a full batch, kept only as the
    comparison the runtime's batches (:func:`time_sweep`) correct."""
    n = np.asarray(n_tokens, dtype=np.float64)
    exits = np.asarray(m.info["exit_layers"])
    b = float(check_batch(batch))
    start = m["inputs"](b, n) + m["embed"](b, n)
    layers = m["layer"](b, n)[:, None] * exits[None, :]
    heads = m["exit"](b, n)[:, None] * np.arange(1, len(exits) + 1)[None, :]
    return (start[:, None] + layers + heads) / b, forward_ms(m, b, n) / b


def cascade_example_ms(members: Sequence[ModelProfile], n_tokens, *, batch: int = 1) -> np.ndarray:
    """Per example: cumulative predicted ms ``[N, M]`` once member m answered (every earlier member in full); above
    ``batch`` 1 each row's share of a full batch (a comparison only, as :func:`encoder_example_ms`)."""
    n = np.asarray(n_tokens, dtype=np.float64)
    b = check_batch(batch)
    per = np.stack([forward_ms(m, b, n) / b for m in members], axis=1)
    return np.cumsum(per, axis=1)


# ---------------------------------------------------------------------------------------------------- decoders

def _alive(lengths) -> np.ndarray:
    """``[S, R]``: whether row r is still decoding at step s."""
    n = np.asarray(lengths)
    return np.arange(n.max() if len(n) else 0)[:, None] < n[None, :]


def greedy_run_ms(m: ModelProfile, lengths) -> float:
    """Predicted milliseconds of greedy decoding (:func:`toolkit.nn.causal.decode.greedy_decode`, one batch) of rows
    generating ``lengths`` tokens: per step, for the rows still decoding, the block machinery with no draft (two pass
    set-ups, every layer, the head) and the loop's overhead."""
    return float(greedy_step_ms(m, _alive(lengths).sum(1)).sum())


def greedy_step_ms(m: ModelProfile, rows) -> np.ndarray:
    """Predicted ms of one greedy decoding step of ``rows`` rows (array): two pass set-ups, every layer, the head
    and the loop's overhead (:func:`greedy_run_ms`'s step)."""
    B = np.asarray(rows)
    return 2 * m["setup"](B, 1) + m.layers * m["layer"](B, 1) + m["head"](B, 1) + m["step_overhead"](B, 1)


CALM_EXIT_PIECES = ("exit", "confidence", "translator")  # what a CALM checked exit may run: the exit, its
# confidence, a tuned exit's translator (the decoder's CalmDecoder.exit_pieces: the first two for the lens)
SPEC_EXIT_PIECES = ("exit", "translator")  # what a draft exit may run: the lens, a tuned exit's translator before it


def _exit_pieces(exit_pieces, pieces: tuple[str, ...], n_lens: int, what: str) -> tuple[str, ...]:
    """``exit_pieces`` as a tuple if it is the lens's ``pieces[:n_lens]`` or all of ``pieces`` (tuned exits), in
    any order, each once; else a ``ValueError`` saying ``what`` an exit runs and naming both (a repeated piece
    would be priced twice, an unknown one would price another runtime)."""
    got = tuple(exit_pieces)  # a bare string is refused: its letters are no pieces
    allowed = (pieces[:n_lens], pieces)
    if not all(isinstance(p, str) for p in got) or len(set(got)) != len(got) or \
            set(got) not in [set(a) for a in allowed]:
        raise ValueError(f"exit_pieces={exit_pieces!r}: {what}; pass {allowed[0]!r} (the lens) or {allowed[1]!r} "
                         f"(tuned exits), each piece once")
    return got


def _calm_pieces(exit_pieces) -> tuple[str, ...]:
    return _exit_pieces(exit_pieces, CALM_EXIT_PIECES, 2, "a CALM checked exit runs the 'exit' and its "
                        "'confidence' and, if tuned, its 'translator'")


def calm_step_ms(m: ModelProfile, running, rows, checked_layers, *, exit_pieces=("exit", "confidence")) -> np.ndarray:
    """Predicted ms of CALM decoder steps (:class:`~toolkit.nn.causal.decode.CalmDecoder`, the accounting of
    :func:`calm_run_ms`) from ``running[..., L]`` (rows entering decoder layer i, 0-based: rows whose exit is at or
    after layer i + 1) and ``rows[...]`` (rows in the step): a set-up of all rows, each layer on its running rows,
    state propagation of each layer for the rows that already exited, each checked exit (``exit_pieces``: the
    exit, its confidence, a tuned exit's ``translator``) on the rows reaching it, the LM head on the rows reaching
    the last layer, and the loop's overhead."""
    exit_pieces = _calm_pieces(exit_pieces)
    run = np.asarray(running)
    B = np.asarray(rows)
    L = m.layers
    if run.shape[-1] != L:
        raise ValueError(f"running must have one count per layer ({L}), got shape {run.shape}")
    at = run[..., np.asarray(checked_layers, dtype=np.int64) - 1]
    t = m["setup"](B, 1) + m["layer"](run, 1).sum(-1) + m["kv_propagation"](B[..., None] - run, 1).sum(-1)
    t = t + sum(m[p](at, 1) for p in exit_pieces).sum(-1)
    return t + m["head"](run[..., L - 1], 1) + m["step_overhead"](B, 1)


def calm_run_ms(m: ModelProfile, exit_layers: Sequence, checked_layers, *,
                exit_pieces=("exit", "confidence")) -> float:
    """Predicted milliseconds of :class:`~toolkit.nn.causal.decode.CalmDecoder` (one batch) whose rows' tokens exit
    after ``exit_layers[r][s]`` (1-based; L = the full model): per step, a set-up, each layer on the rows still
    running, each checked exit and its confidence on them (until none runs), state propagation for the rows that
    exited, the LM head on the rest, and the loop's overhead. ``exit_pieces``: add ``"translator"`` for tuned
    exits."""
    exit_pieces = _calm_pieces(exit_pieces)
    L = m.layers
    lengths = [len(x) for x in exit_layers]
    alive = _alive(lengths)
    depth = np.zeros(alive.shape, dtype=np.int64)  # 0: row finished
    for r, x in enumerate(exit_layers):  # one row at a time (rows, not tokens)
        depth[: len(x), r] = np.asarray(x)
    running = (depth[:, :, None] >= np.arange(1, L + 1)[None, None, :]).sum(1)  # [S, L] rows entering layer i
    return float(calm_step_ms(m, running, alive.sum(1), checked_layers, exit_pieces=exit_pieces).sum())


def self_speculative_run_ms(m: ModelProfile, accepted: Sequence, draft_layer: int, draft_length: int,
                            max_new_tokens: int, *, exit_pieces=("exit",)) -> float:
    """Predicted milliseconds of :class:`~toolkit.nn.causal.decode.SelfSpeculativeDecoder` (one batch) whose rows'
    blocks accept ``accepted[r]`` drafts each: block j runs, for the rows still decoding, the passes of
    :func:`~toolkit.analysis.cost.causal.self_speculative_passes` at the largest draft length its rows may take
    (``min(d, max_new_tokens - 1 - emitted)``), each pass a set-up, its layers at its positions, its exit
    evaluations (one position per row each, every piece of ``exit_pieces``: the lens ``exit``, plus ``"translator"``
    for tuned exits, as the decoder's ``exit_pieces`` names them) and its head evaluations, plus the loop's overhead.
    A block with no draft (one token of budget left) is a greedy step: its one pass is set up twice, as the decoder
    runs layers 1..k and k+1..L apart (:func:`greedy_step_ms`)."""
    exit_pieces = _exit_pieces(exit_pieces, SPEC_EXIT_PIECES, 1, "a self-speculative draft exit runs the lens "
                               "'exit' and, if tuned, its 'translator' (no confidence: a draft is the exit's argmax)")
    R = len(accepted)
    J = max(len(a) for a in accepted)
    cap = np.full((J, R), -1, dtype=np.int64)
    for r, a in enumerate(accepted):  # one row at a time
        a = np.asarray(a, dtype=np.int64)
        emitted = np.concatenate([[0], np.cumsum(a + 1)[:-1]])
        cap[: len(a), r] = np.minimum(draft_length, max_new_tokens - 1 - emitted)
    total = 0.0
    for D, B in zip(cap.max(1), (cap >= 0).sum(1)):  # one block at a time (blocks, not tokens)
        for p in self_speculative_passes(draft_layer, int(D), m.layers):
            t = m["setup"](B, p.positions) + p.n_layers * m["layer"](B, p.positions)
            t = t + p.exits * sum(m[q](B, 1) for q in exit_pieces) + (m["head"](B, p.heads) if p.heads else 0.0)
            total += float(t)
        total += float(m["step_overhead"](B, 1) + (m["setup"](B, 1) if D == 0 else 0.0))
    return total


# ---------------------------------------------------------------------------------------------------- engine

ROW_SHARES_REFUSED = ("with_predicted_time costs each example alone (batch 1); at batch {batch} a batch runs to its "
                      "deepest exit, exited rows leave it and a cascade re-batches what it escalates, which no "
                      "per-example cost holds (each row's share of a full batch misprices them, ~18% on the MRPC "
                      "cascade at batch 32): sweep the runtime's batches exactly with latency.time_sweep(view, "
                      "profile, n_tokens=..., models=..., batch_size={batch}) (encoder_time_sweep for encoders and "
                      "cascades, calm_time_sweep for LLM token views)")


def with_predicted_time(view, profile: LatencyProfile, n_tokens, *, models: Sequence[str], batch: int = 1):
    """The engine view ``view`` (a classification view of a multi-exit model or a cascade) costed in predicted
    milliseconds per example instead of FLOPs: sweepable with :func:`toolkit.analysis.engine.sweep`, choosable with
    a time budget (:func:`time_budget_speedup`); ``meta['cost_unit']`` names the profile.

    ``n_tokens``: tokens per example (the cache's ``n_tokens``); ``models``: the profile's model for the multi-exit
    model, or one per cascade member; ``batch``: 1 only (each example alone, exact). Above batch 1 it refuses
    (:data:`ROW_SHARES_REFUSED`): a per-example cost cannot hold the runtime's batches, which :func:`time_sweep`
    prices exactly at every threshold. The reference becomes the last model's whole forward (a cascade's reference
    is its last member alone).

    A CALM token view (``engine.staged(token_cache, family=...)``; ``n_tokens`` unused, ``models``: the causal
    LM): each token's cost is its CALM decoding step at batch 1 (:func:`calm_token_ms`), the reference a greedy
    step; batches: :func:`calm_time_sweep`."""
    batch = check_batch(batch)
    if (view.meta or {}).get("kind") == "llm_tokens":
        return _with_calm_time(view, profile, check_profile_models(models)[0], batch)
    if batch != 1:
        raise ValueError(ROW_SHARES_REFUSED.format(batch=batch))
    n = _checked_tokens(view, n_tokens)
    mp, is_cascade = _encoder_models(view, profile, models)
    if is_cascade:
        cost = cascade_example_ms(mp, n)
        reference = forward_ms(mp[-1], 1, n)
    else:
        cost, reference = encoder_example_ms(mp[0], n)
    unit = f"predicted ms (batch {batch}; {profile.label})"
    return replace(view, cost=cost, reference_cost=reference, reference=f"{mp[-1].name} alone",
                   meta={**dict(view.meta), "cost_unit": unit, "latency_profile": profile.path, "batch": batch})


def check_profile_models(models, *, name: str = "models",
                         default: str = "models_for(cache.meta, profile) gives the cache's") -> list[str]:
    """``models`` (the profile's models: one per cascade member, or the causal LM) as a list of names; an empty
    list (it named nothing, and a caller with a default used the default silently) or a bare string (its letters
    are no models) is a ``ValueError`` naming the option ``name`` and the fix (``default``: where the defaults come
    from)."""
    if isinstance(models, (str, bytes)):
        raise ValueError(f"{name}={models!r} is one name, not a list: pass [{models!r}] (one profiled model per "
                         f"cascade member, or the causal LM)")
    out = list(models)
    if not out:
        raise ValueError(f"{name}=[] names no model: {default}, or name one profiled model per cascade member (the "
                         f"causal LM for a token cache)")
    return out


def _encoder_models(view, profile: LatencyProfile, models: Sequence[str]) -> tuple[list[ModelProfile], bool]:
    """The profile's models for a classification view, checked against its stages: ``(models, is_cascade)``."""
    mp = [profile.model(x) for x in check_profile_models(models)]
    n_models = int(np.asarray(view.model_index).max()) + 1
    if n_models > 1:
        if len(mp) != n_models:
            raise ValueError(f"the view is a cascade of {n_models} models; give one profiled model per member, got "
                             f"{len(mp)}")
        member_layers = np.diff(np.concatenate([[0], np.asarray(view.layers, dtype=np.int64)]))
        for i, (m, k) in enumerate(zip(mp, member_layers)):
            if m.layers != k:
                raise ValueError(f"profile model {m.name!r} has {m.layers} layers, cascade member {i} has {k}: "
                                 f"profile that member (e.g. `toolkit profile --model NAME@{k}`) and name it")
        if view.n_stages != n_models:
            raise ValueError(f"one stage per cascade member expected, the view has {view.n_stages}")
        return mp, True
    exits = list(mp[0].info.get("exit_layers", []))
    want = [int(x) for x in np.asarray(view.layers)]
    if exits != want:
        raise ValueError(f"profile model {mp[0].name!r} has exits after layers {exits}, the view's stages are at "
                         f"{want}: profile the same model")
    return mp, False


def _checked_tokens(view, n_tokens) -> np.ndarray:
    n = np.asarray(n_tokens)
    if n.shape != (view.n_examples,):
        raise ValueError(f"n_tokens has shape {n.shape}, the view has {view.n_examples} examples")
    if (n < 1).any():
        raise ValueError("n_tokens must be >= 1 per example: this cache records no token counts (a cache collected "
                         "outside the toolkit, or made with from_arrays without n_tokens), so its batches cannot be "
                         "formed; collect it with `toolkit collect`, or pass the tokenizer's lengths")
    return n


def sweep_stages(view, *, block: int = 1 << 22):
    """The stop of every example at every threshold of ``engine.sweep(view)`` (same rows, same order), in blocks
    of rows: yields ``(start, stage)`` with ``stage`` ``[rows, N]`` (about ``block`` entries each). Built from the
    engine's breakpoints: as the threshold falls, an example only moves to an earlier stage."""
    from toolkit.analysis.engine.curves import breakpoints

    rn, re, _, _, last = breakpoints(view.confidence)
    N, E = view.n_examples, view.n_stages
    row = np.searchsorted(last, np.arange(len(rn))) + 1  # the sweep row from which each record holds
    G = len(last) + 1
    step = max(1, int(block) // max(N, 1))
    state = np.full(N, E - 1, dtype=np.int64)
    for r0 in range(0, G, step):  # a loop over blocks of thresholds, bounding memory
        r1 = min(G, r0 + step)
        stage = np.full((r1 - r0, N), E - 1, dtype=np.int64)
        sel = (row >= r0) & (row < r1)
        np.minimum.at(stage, (row[sel] - r0, rn[sel]), re[sel])
        stage[0] = np.minimum(stage[0], state)
        np.minimum.accumulate(stage, axis=0, out=stage)
        state = stage[-1]
        yield r0, stage


def encoder_time_sweep(view, profile: LatencyProfile, *, n_tokens=None, models: Sequence[str], batch_size: int):
    """Every distinct threshold of a classification view (a multi-exit model or a cascade; or a cache, whose
    ``n_tokens`` are used), costed in predicted ms per example of what the encoder runtime does at ``batch_size``:
    :class:`~toolkit.nn.encoder.runtime.EarlyExitRunner` (:func:`early_exit_ms`: sorted dynamic padding, rows leaving
    the batch as they exit, a batch running to its deepest exit) or
    :class:`~toolkit.nn.encoder.runtime.CascadeRunner` (:func:`cascade_ms`: each member re-sorts and re-batches the
    examples that reach it, its last batch partial). An engine ``Curve`` (``exact``: the rows and metrics of
    ``engine.sweep(view)``; ``flops`` holds predicted ms per example, ``speedup`` is against the last model alone on
    the same batches, :func:`encoder_full_ms`). The cost need not fall monotonically as the threshold falls
    (re-batching); :func:`choose_time_budget` scans every row. Vectorised over thresholds (in blocks of rows,
    :func:`sweep_stages`)."""
    from toolkit.analysis.engine import staged, sweep
    from toolkit.analysis.engine.results import Curve

    if hasattr(view, "n_tokens") and not hasattr(view, "confidence"):  # a cache
        n_tokens = view.n_tokens if n_tokens is None else n_tokens
        view = staged(view)
    if n_tokens is None:
        raise ValueError("n_tokens: tokens per example are needed to form the runtime's batches (the cache's "
                         "n_tokens); pass the cache itself or its n_tokens")
    b = check_batch(batch_size, name="batch_size")
    n = _checked_tokens(view, n_tokens)
    mp, is_cascade = _encoder_models(view, profile, models)
    N = view.n_examples
    curve = sweep(view)
    total = np.empty(len(curve.frame))
    for r0, stage in sweep_stages(view):
        total[r0:r0 + len(stage)] = (cascade_ms(mp, n, stage, batch_size=b) if is_cascade
                                     else early_exit_ms(mp[0], n, stage, batch_size=b))
    ref = encoder_full_ms(mp[-1], n, batch_size=b)
    frame = curve.frame.copy()
    frame["flops"] = total / N
    frame["speedup"] = ref / total
    unit = f"predicted ms (batch {b}, the runtime's batches; {profile.label})"
    meta = {**curve.meta, "cost_unit": unit, "latency_profile": profile.path, "batch": b, "reference_ms": ref / N,
            "schedule": "cascade" if is_cascade else "early_exit"}
    return Curve(frame, curve.metric, f"{mp[-1].name} alone (batch {b})", N, exact=True, meta=meta)


def time_sweep(view, profile: LatencyProfile, *, n_tokens=None, models: Sequence[str], batch_size: int):
    """The exact sweep of ``view`` in predicted ms of what its runtime runs at ``batch_size`` (an engine ``Curve``,
    every threshold): :func:`calm_time_sweep` for a CALM token view (``models``: the causal LM; per token, batches of
    prompts in the cache's order), :func:`encoder_time_sweep` otherwise (encoder early exit and cascades; ``n_tokens``:
    the cache's). What ``toolkit sweep``, ``toolkit plot`` and the explorer draw at a batch size."""
    if (getattr(view, "meta", None) or {}).get("kind") == "llm_tokens":
        return calm_time_sweep(view, profile, model=check_profile_models(models)[0], batch_size=batch_size)
    return encoder_time_sweep(view, profile, n_tokens=n_tokens, models=models, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------------- CALM views

def _calm_view_parts(view, profile: LatencyProfile, model: str):
    """The profile's model, the view's stage layers and the exit's pieces, checked against each other."""
    if (view.meta or {}).get("kind") != "llm_tokens":
        raise ValueError("not a token view: make it with engine.staged(token_cache, family=...)")
    if view.meta.get("propagate") is False:
        raise ValueError("the token view was built with propagate=False, but the profile times the CALM decoder, "
                         "which always propagates the skipped layers' keys/values: build it with propagate=True")
    m = profile.model(model)
    if m.kind != "causal_lm":
        raise ValueError(f"profile model {m.name!r} is an {m.kind}, the view is a causal LM's token exits")
    layers = np.asarray(view.layers, dtype=np.int64)
    if layers[-1] != m.layers:
        raise ValueError(f"profile model {m.name!r} has {m.layers} layers, the view's last stage is "
                         f"{view.stage_names[-1]}: profile the cache's model")
    pieces = ("exit", "confidence")
    if view.meta.get("exit_kind") == "tuned_exits":
        if "translator" not in m.pieces:
            raise ValueError(f"the view's exits ({view.meta.get('family')!r}) are tuned exits, whose translator "
                             f"{m.name!r}'s profile does not time (it has {sorted(m.pieces)}; a profile made before "
                             f"the translator was timed): re-profile with `toolkit profile --model {m.name}` (it "
                             f"writes a 'translator' piece), or cost the lens family")
        pieces = (*pieces, "translator")
    return m, layers, pieces


def calm_token_ms(m: ModelProfile, stage_layers, *, exit_pieces=("exit", "confidence")) -> np.ndarray:
    """Predicted ms ``[E]`` of one CALM decoding step of one row (batch 1) whose token exits at each stage's layer
    (``stage_layers``, increasing, the last = the model's L; the earlier ones are the checked exits):
    :func:`calm_step_ms` of a single row."""
    layers = np.asarray(stage_layers, dtype=np.int64)
    running = (np.arange(1, m.layers + 1)[None, :] <= layers[:, None]).astype(np.float64)
    return calm_step_ms(m, running, np.ones(len(layers)), layers[:-1], exit_pieces=exit_pieces)


def _with_calm_time(view, profile: LatencyProfile, model: str, batch: int):
    if batch != 1:
        raise ValueError(f"a token view is costed per token at batch 1 (exact); at batch {batch} a step runs to "
                         f"its deepest exit, which no per-token cost holds: use latency.calm_time_sweep(view, "
                         f"profile, model={model!r}, batch_size={batch})")
    m, layers, pieces = _calm_view_parts(view, profile, model)
    S = view.n_examples
    cost = np.broadcast_to(calm_token_ms(m, layers, exit_pieces=pieces), (S, len(layers))).copy()
    reference = np.full(S, float(greedy_step_ms(m, 1)))
    unit = f"predicted ms per token (batch 1; {profile.label})"
    return replace(view, cost=cost, reference_cost=reference, reference=f"greedy decoding ({m.name}, batch 1)",
                   meta={**dict(view.meta), "cost_unit": unit, "latency_profile": profile.path, "batch": 1,
                         "reference_ms": float(reference[0])})


def calm_time_sweep(view, profile: LatencyProfile, *, model: str, batch_size: int, prompt_lengths=None):
    """Every distinct threshold of a CALM token view (``engine.staged(token_cache, family=...)``), costed in
    predicted ms per token of :class:`~toolkit.nn.causal.decode.CalmDecoder` decoding the cache's prompts in
    batches of ``batch_size`` (exactly :func:`calm_run_ms` per batch, at every threshold): a step runs each layer
    on its rows still running, so it costs what its deepest exit asks; finished rows leave. An engine ``Curve``
    (``exact``: the rows and metrics of ``engine.sweep(view)``; ``flops`` holds predicted ms per token and
    ``speedup`` is against greedy decoding of the same batches); pick a time budget on it with
    ``engine.threshold_on_sweep(curve, rule="budget", budget=time_budget_speedup(curve, ms))``.

    Batches: consecutive prompts in the cache's order (``toolkit llm-generate``), or sorted by ``prompt_lengths``
    (stable; ``benchmarks/bench_llm_runtime.batches``). Rows generate the cache's continuations (the full model's:
    an exited token can change a real decode's length). Vectorised over thresholds: each threshold moves one
    token's exit, which changes one step of one batch; the steps' costs are updated in order."""
    from toolkit.analysis.engine import sweep
    from toolkit.analysis.engine.curves import breakpoints, cumulate
    from toolkit.analysis.engine.results import Curve

    b = check_batch(batch_size, name="batch_size")
    m, layers, pieces = _calm_view_parts(view, profile, model)
    L, S = m.layers, view.n_examples
    prompt = np.asarray(view.clusters, dtype=np.int64)
    step = np.char.rpartition(np.asarray(view.example_ids, dtype=str), "#")[:, 2].astype(np.int64)
    P = int(prompt.max()) + 1
    order = np.arange(P) if prompt_lengths is None else np.argsort(np.asarray(prompt_lengths), kind="stable")
    if len(order) != P:
        raise ValueError(f"prompt_lengths: one per prompt ({P}) expected, got {len(order)}")
    group = np.empty(P, dtype=np.int64)
    group[order] = np.arange(P) // b
    _, cell = np.unique(group[prompt] * (int(step.max()) + 1) + step, return_inverse=True)  # (batch, step)
    B = np.bincount(cell).astype(np.float64)
    checked = layers[:-1]
    ms0 = calm_step_ms(m, np.repeat(B[:, None], L, 1), B, checked, exit_pieces=pieces)  # every row to layer L
    rn, re, nxt, vals, last = breakpoints(view.confidence)
    # event j: token rn[j] now exits at layers[re[j]] instead of layers[nxt[j]]: layers lo..hi-1 (0-based) lose a row
    lo, hi = layers[re], layers[nxt]
    idx = np.arange(L)
    c = cell[rn]
    o = np.argsort(c, kind="stable")  # each step's events in threshold order
    co = c[o]
    delta = -((idx[None, :] >= lo[o, None]) & (idx[None, :] < hi[o, None])).astype(np.int32)
    cs = np.cumsum(delta, axis=0)
    first = np.flatnonzero(np.r_[True, co[1:] != co[:-1]])
    seg = np.cumsum(np.r_[True, co[1:] != co[:-1]]) - 1
    base = (cs[first] - delta[first])[seg]  # the running sum before each step's first event
    after = calm_step_ms(m, B[co, None] + (cs - base), B[co], checked, exit_pieces=pieces)
    before = np.r_[0.0, after[:-1]]
    before[first] = ms0[co[first]]
    d = np.empty(len(o))
    d[o] = after - before
    total = cumulate(d, ms0.sum(), last)
    ref = float(greedy_step_ms(m, B).sum())
    curve = sweep(view)
    frame = curve.frame.copy()
    if not np.array_equal(frame["threshold"].to_numpy(), np.concatenate([[np.inf], vals[last]])):
        raise AssertionError("the sweep's thresholds differ from the breakpoints'")  # engine invariant
    frame["flops"] = total / S
    frame["speedup"] = ref / total
    unit = f"predicted ms per token (batch {b}; {profile.label})"
    meta = {**curve.meta, "cost_unit": unit, "latency_profile": profile.path, "batch": b, "reference_ms": ref / S,
            "batches": "by prompt length" if prompt_lengths is not None else "in cache order"}
    return Curve(frame, curve.metric, f"greedy decoding ({m.name}, batch {b})", S, exact=True, meta=meta)


@dataclass(frozen=True, eq=False)
class CalmTimeCurves:
    """One CALM token view swept in FLOPs (against the full model) and in predicted time at several batch sizes
    (against greedy decoding of the same batches, :func:`calm_time_sweep`): the same thresholds and agreement, three
    cost axes. ``label`` names the view (family and checked layers)."""

    flops: object  # engine Curve
    timed: Mapping[int, object]  # batch size -> engine Curve in predicted ms per token
    label: str
    profile: str

    def to_frame(self):
        """Long frame: ``cost`` (FLOPs or ``predicted, batch b``), ``threshold``, ``agreement``, ``speedup``."""
        import pandas as pd

        parts = [("FLOPs", self.flops)] + [(f"predicted time, batch {b}", c) for b, c in self.timed.items()]
        return pd.concat([c.frame[["threshold", "agreement", "speedup"]].assign(cost=name) for name, c in parts],
                         ignore_index=True)[["cost", "threshold", "agreement", "speedup"]]

    def best_speedup(self, min_agreement: float) -> dict:
        """Per cost axis, the largest speed-up at any threshold whose agreement is at least ``min_agreement``
        (an upper bound on the swept split)."""
        f = self.to_frame()
        ok = f[f["agreement"] >= min_agreement - 1e-12]
        return {k: float(v) for k, v in ok.groupby("cost", sort=False)["speedup"].max().items()}

    def to_dict(self) -> dict:
        return {"view": self.label, "profile": self.profile, "batch sizes": list(self.timed),
                **{f"best speed-up at agreement >= 0.9, upper bound ({k})": v for k, v in self.best_speedup(0.9).items()}}

    def _repr_html_(self) -> str:
        from toolkit.analysis.engine.results import html_table

        return html_table("CALM in FLOPs and predicted time", self.to_dict())

    def __repr__(self) -> str:
        import pandas as pd

        return text_repr(f"CALM in FLOPs and predicted time ({self.label}; profile {self.profile}):",
                         pd.DataFrame([self.to_dict()]).drop(columns=["view", "profile"]))


def calm_time_curves(view, profile: LatencyProfile, *, model: str, batch_sizes=(1, 4),
                     prompt_lengths=None) -> CalmTimeCurves:
    """:class:`CalmTimeCurves` of a CALM token view: ``engine.sweep(view)`` and :func:`calm_time_sweep` at each
    batch size (batches as there)."""
    from toolkit.analysis.engine import sweep

    sizes = [check_batch(b, name="batch_sizes") for b in batch_sizes]  # int(b) ran True as 1, 2.5 as 2
    timed = {b: calm_time_sweep(view, profile, model=model, batch_size=b, prompt_lengths=prompt_lengths)
             for b in sizes}
    layers = ",".join(str(int(x)) for x in np.asarray(view.layers)[:-1])
    return CalmTimeCurves(sweep(view), timed, f"{view.meta.get('family')}, checked layers {layers}", profile.label)


def time_budget_speedup(view, budget_ms: float) -> float:
    """The ``budget`` of ``engine.choose(rule="budget")`` that keeps a time-costed view's mean predicted time per
    example (or per token) within ``budget_ms`` (its reference's mean over the budget); ``view`` may also be a
    :func:`calm_time_sweep` curve (for ``engine.threshold_on_sweep``)."""
    if not budget_ms > 0:
        raise ValueError(f"budget_ms must be positive, got {budget_ms}")
    if "predicted ms" not in str(view.meta.get("cost_unit", "")):
        raise ValueError("the view is not costed in predicted ms: make it with latency.with_predicted_time first")
    if "reference_ms" in view.meta:  # a token view or a CALM time curve (calm_time_sweep)
        return float(view.meta["reference_ms"] / budget_ms)
    return float(np.mean(view.reference_cost) / budget_ms)


@dataclass(frozen=True, eq=False)
class TimeBudgetChoice:
    """An operating point chosen on cal within a time budget on several time-costed views of it (e.g. batch 1 and
    batch 32): ``point`` (the :class:`~toolkit.analysis.engine.OperatingPoint`), and per view its name, the budget
    and the point's mean predicted ms per example on cal, the reference's, and which view's budget bound the
    choice (``binding``: the view whose budget alone admits the same thresholds as all budgets, ``"joint"`` where
    none does)."""

    point: OperatingPoint
    names: tuple[str, ...]
    budget_ms: tuple[float, ...]
    cal_ms: tuple[float, ...]
    reference_ms: tuple[float, ...]
    binding: str

    @property
    def threshold(self) -> float:
        return self.point.threshold

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"view": self.names, "budget_ms": self.budget_ms, "cal_ms": self.cal_ms,
                             "reference_ms": self.reference_ms,
                             "cal_speedup": np.divide(self.reference_ms, self.cal_ms),
                             "within_budget": np.less_equal(self.cal_ms, self.budget_ms),
                             "binding": [n == self.binding for n in self.names]})

    def to_dict(self) -> dict:
        return {**self.point.to_dict(), "binding": self.binding,
                "views": self.to_frame().to_dict(orient="records")}

    def _repr_html_(self) -> str:
        return (html_table("Operating point within a time budget (chosen on cal)",
                           {**self.point.to_dict(), "binding": self.binding})
                + self.to_frame().to_html(index=False, float_format="{:.4g}".format))

    def __repr__(self) -> str:
        return text_repr(f"Operating point within a time budget (chosen on cal): threshold {self.threshold:.4g}, "
                         f"binding view {self.binding!r}; per view:", self.to_frame())


def _timed_sweep(v, name: str):
    """The exact sweep of one item of :func:`choose_time_budget` (a view costed at batch 1, or an exact curve)."""
    from toolkit.analysis.engine import sweep

    if hasattr(v, "frame"):
        if not v.exact or "predicted ms" not in str(v.meta.get("cost_unit", "")):
            raise ValueError(f"view {name!r}: a curve must be an exact sweep in predicted ms (encoder_time_sweep or "
                             f"calm_time_sweep)")
        return v
    time_budget_speedup(v, 1.0)  # refuses a view not costed in predicted ms
    if int(v.meta.get("batch", 1)) > 1:
        raise ValueError(f"view {name!r} is costed at batch {v.meta['batch']} by each row's share of a full batch, "
                         f"which misprices what the runtime runs (it re-batches escalated examples, pads to each "
                         f"batch's longest, runs a batch to its deepest exit): pass latency.encoder_time_sweep(cal, "
                         f"profile, models=..., batch_size={v.meta['batch']}) instead")
    return sweep(v)


def choose_time_budget(views: Sequence, budget_ms: Sequence[float], *, metric: str = "accuracy",
                       names: Sequence[str] | None = None, cal=None) -> TimeBudgetChoice:
    """The best cal ``metric`` among the thresholds whose mean predicted ms per example stays within
    ``budget_ms[j]`` on every ``views[j]``, then the lowest such threshold; exact (every distinct threshold is
    scanned, so a time that is not monotone in the threshold, as batched runtimes' is, is handled).

    ``views``: one cal split costed in predicted ms at several batch sizes: a view costed at batch 1
    (:func:`with_predicted_time`, exact there) or an exact curve of the runtime's batches
    (:func:`encoder_time_sweep`, at any batch size); a row-share view at batch > 1 is refused. ``cal``: the view the
    operating point is evaluated on (default: the first view among ``views``). ``binding``: the view whose budget
    alone admits exactly the thresholds all budgets admit (``"joint"`` where none does)."""
    views = list(views)
    budgets = [float(b) for b in np.atleast_1d(np.asarray(budget_ms, dtype=np.float64))]
    names = [f"view {j}" for j in range(len(views))] if names is None else [str(n) for n in names]
    if not views or len(budgets) != len(views) or len(names) != len(views):
        raise ValueError(f"one budget (ms per example) and one name per view: {len(views)} views, {len(budgets)} "
                         f"budgets, {len(names)} names")
    for b in budgets:
        if not b > 0:
            raise ValueError(f"budgets must be positive ms per example, got {b}")
    cal = cal if cal is not None else next((v for v in views if not hasattr(v, "frame")), None)
    if cal is None:
        raise ValueError("no view to evaluate the point on: pass cal= (the cal view, e.g. costed at batch 1)")
    if is_test_split(cal.split):
        raise ValueError(f"choose on a cal split, not test (split {cal.split!r} is kept for reporting)")
    curves = [_timed_sweep(v, n) for v, n in zip(views, names)]
    thr = curves[0].frame["threshold"].to_numpy()
    for j, c in enumerate(curves):
        if c.n != cal.n_examples or not np.array_equal(c.frame["threshold"].to_numpy(), thr):
            raise ValueError(f"views {names[0]!r} and {names[j]!r} are not of the same split and stages: cost one cal "
                             f"cache at several batch sizes")
    for j, v in enumerate(views):
        if not hasattr(v, "frame") and (tuple(v.stage_names) != tuple(cal.stage_names)
                                        or not np.array_equal(v.example_ids, cal.example_ids)):
            raise ValueError(f"views {names[0]!r} and {names[j]!r} are not of the same split and stages: cost one cal "
                             f"cache at several batch sizes (with_predicted_time, encoder_time_sweep)")
    if metric not in curves[0].frame:
        raise ValueError(f"metric {metric!r} is not a column of the sweep: {list(curves[0].frame.columns)}")
    ms = np.stack([c.frame["flops"].to_numpy() for c in curves], axis=1)  # [threshold, view]
    within = ms <= np.asarray(budgets)[None, :] * (1 + 1e-12)
    ok = within.all(1)
    if not ok.any():
        cheapest = [float(ms[:, j].min()) for j in range(len(curves))]
        raise ValueError("no threshold meets every time budget on cal: " + "; ".join(
            f"view {n!r}: budget {b:.4g} ms per example, cheapest threshold {c:.4g}"
            for n, b, c in zip(names, budgets, cheapest)))
    score = curves[0].frame[metric].to_numpy()
    cand = np.flatnonzero(ok & (score >= score[ok].max() - 1e-12))
    k = int(cand[np.argmin(thr[cand])])
    settings = {"budget_ms": "; ".join(f"{n}: {b:.6g}" for n, b in zip(names, budgets))}
    meta = {key: cal.meta[key] for key in (*VIEW_KEYS, "identity") if key in cal.meta}
    point = OperatingPoint(float(thr[k]), "time budget", metric, settings, evaluation(cal, float(thr[k])),
                           tuple(cal.stage_names), cal.reference, meta)
    alone = [j for j in range(len(curves)) if np.array_equal(within[:, j], ok)]
    binding = names[alone[0]] if alone else "joint"
    refs = [float(c.meta["reference_ms"]) if "reference_ms" in c.meta else float(np.mean(v.reference_cost))
            for c, v in zip(curves, views)]
    return TimeBudgetChoice(point, tuple(names), tuple(budgets), tuple(float(x) for x in ms[k]), tuple(refs), binding)


def _has(profile: LatencyProfile, name: str) -> bool:
    try:
        profile.model(name)
    except KeyError:
        return False
    return True


def models_for(meta: Mapping, profile: LatencyProfile) -> list[str]:
    """The profile's model for each model a cache records (its ``name``, else its ``source_model``); an error lists
    what the profile has and how to name them (``--profile-model``)."""
    out = []
    for m in meta.get("models") or []:
        found = [k for k in (m.get("name"), m.get("source_model"), m.get("path")) if k and _has(profile, k)]
        if found:
            out.append(profile.model(found[0]).name)
        else:
            raise KeyError(f"{profile.path or 'profile'} has no model for the cache's {m.get('name')!r} (source "
                           f"{m.get('source_model')!r}); it has {sorted(profile.models)}: name them with "
                           f"--profile-model (models=...)")
    if not out:
        raise KeyError("the cache records no models: name the profile's models with --profile-model (models=...)")
    return out


@dataclass(frozen=True)
class SpeedupAgreement:
    """Predicted against measured speed-ups of a set of cases: relative errors ``|predicted - measured| /
    measured``, their median, the worst case, and the rank (Spearman) correlation."""

    cases: tuple[str, ...]
    predicted: np.ndarray
    measured: np.ndarray

    @property
    def relative_error(self) -> np.ndarray:
        return np.abs(self.predicted - self.measured) / self.measured

    @property
    def median_relative_error(self) -> float:
        return float(np.median(self.relative_error))

    @property
    def worst(self) -> tuple[str, float]:
        i = int(np.argmax(self.relative_error))
        return self.cases[i], float(self.relative_error[i])

    @property
    def spearman(self) -> float:
        import pandas as pd

        r = pd.DataFrame({"p": self.predicted, "m": self.measured}).rank()
        return float(np.corrcoef(r["p"], r["m"])[0, 1])

    def to_dict(self) -> dict:
        return {"cases": len(self.cases), "median_relative_error": self.median_relative_error,
                "worst_case": self.worst[0], "worst_relative_error": self.worst[1], "spearman": self.spearman}

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"case": self.cases, "predicted": self.predicted, "measured": self.measured,
                             "relative_error": self.relative_error})

    def __repr__(self) -> str:
        worst, err = self.worst
        return text_repr(f"Predicted vs measured speed-ups, {len(self.cases)} cases: median relative error "
                         f"{self.median_relative_error:.3g}, worst {err:.3g} ({worst}), Spearman {self.spearman:.3f}:",
                         self.to_frame())


def speedup_agreement(cases, predicted, measured) -> SpeedupAgreement:
    """:class:`SpeedupAgreement` of ``predicted`` and ``measured`` speed-ups (one per case, measured > 0)."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape or p.ndim != 1 or len(p) < 2 or len(cases) != len(p):
        raise ValueError(f"need one predicted and one measured speed-up per case (at least 2), got {p.shape}, "
                         f"{m.shape} for {len(cases)} cases")
    if not (m > 0).all() or not np.isfinite(p).all():
        raise ValueError("measured speed-ups must be positive and predicted ones finite")
    return SpeedupAgreement(tuple(map(str, cases)), p, m)
