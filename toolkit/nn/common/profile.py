"""``toolkit profile``: time each model's pieces on this machine into a latency profile
(:mod:`toolkit.analysis.cost.latency` reads it, without torch, and predicts the time of a runtime's schedule).

Each piece is timed the way the runtimes call it (:class:`toolkit.nn.encoder.runtime.EarlyExitRunner`'s embedding, layer
and exit steps (the exit with its row selection); :class:`toolkit.nn.causal.decode.LayerStepper`'s pass set-up, layer,
head, exit (the logit lens; a tuned exit adds its ``translator``, timed on the head's grid) and state
propagation) on a grid of batch sizes and positions. Every grid point of every piece of every
model is timed in rounds (:class:`Rounds`: after ``warmup`` untimed calls, one call of each per round, 3 to
``repeats`` rounds, fewer calls for slow points), so the drift of a shared machine's load spreads over all points
alike. The profile's statistic is the **mean** of a point's calls (the median is kept beside it): on a shared
machine a call is preempted in proportion to its length, and only the mean carries that share into a sum of pieces;
on a quiet machine the two agree. The values are made non-decreasing along each axis
(:func:`toolkit.analysis.cost.latency.monotone`; the raw ones are kept). An encoder layer is timed cycling through the
model's layers (as in a forward, no call finds its weights left in cache by the last), and so is a decoder layer,
each with its own keys and values at a fixed cached context (``context``). The decoder loop's own overhead
per step (bookkeeping between passes) is what greedy decoding of random prompts takes
beyond its pieces, measured after the rounds at each batch size. The whole encoder forward is timed at a few grid
points as a check of the pieces' sum (not used to predict). The profile records the machine, threads, dtype,
library versions and the load average at the start, during the rounds and at the end.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

import numpy as np
import torch

from toolkit.analysis.cost.latency import INTERPOLATION, PROFILE_FORMAT, load_profile, monotone

ENCODER_GRID = {"batch": [1, 2, 4, 8, 16, 32], "positions": [8, 16, 24, 32, 48, 64]}
DECODER_GRID = {"batch": [1, 2, 4, 8], "positions": [1, 2, 3, 4, 5, 7, 9]}
QUICK_GRID = {"batch": [1, 2], "positions": [4, 8]}
QUICK_DECODER_GRID = {"batch": [1, 2], "positions": [1, 3]}


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], *, repeats: int, warmup: int, device="cpu",
            after: Callable[[], object] | None = None, budget_s: float = 0.5) -> tuple[float, float, list[float]]:
    """Mean and median milliseconds of ``fn()`` over 3 to ``repeats`` timed calls after ``warmup`` untimed ones
    (``after`` runs untimed after each call, e.g. to drop what it appended to a cache): once 3 timed calls took
    ``budget_s`` no more are made, and a warm-up call over ``budget_s / 2`` ends the warm-up."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if after:
            after()
        if time.perf_counter() - t0 > budget_s / 2:
            break
    out = []
    for i in range(repeats):
        if i >= 3 and sum(out) > 1e3 * budget_s:
            break
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(1e3 * (time.perf_counter() - t0))
        if after:
            after()
    return (statistics.fmean(out), statistics.median(out), out) if out else (float("nan"), float("nan"), out)


class Rounds:
    """Every grid point of every piece, timed in rounds (one call of each per round, after ``warmup`` untimed calls
    each): slow drift of a shared machine's load then spreads over all points alike instead of biasing the ones
    timed in a bad minute. Up to ``repeats`` rounds; a point stops after 3 calls once its calls took ``budget_s``."""

    def __init__(self, *, repeats: int, warmup: int, device="cpu", budget_s: float = 0.5):
        self.repeats, self.warmup, self.device, self.budget_ms = repeats, warmup, device, 1e3 * budget_s
        self.cells: list[tuple[dict, int, int, Callable, Callable | None, list[float]]] = []

    def grid(self, fn, grid, *, batch=None, positions=None) -> dict:
        """Register ``fn(b, p)`` (returning the callable to time and an optional untimed ``after``) over a grid; the
        returned piece dict is filled by :meth:`run`."""
        bs, ps = batch or grid["batch"], positions or grid["positions"]
        d = {"batch": list(bs), "positions": [float(p) for p in ps]}
        for i, b in enumerate(bs):
            for j, p in enumerate(ps):
                call, after = fn(b, p)
                self.cells.append((d, i, j, call, after, []))
        return d

    @torch.inference_mode()
    def run(self, progress=None) -> None:
        for *_, call, after, _times in self.cells:
            time_ms(call, repeats=0, warmup=self.warmup, device=self.device, after=after,
                    budget_s=self.budget_ms / 1e3)
        for r in range(self.repeats):
            live = [c for c in self.cells if r < 3 or sum(c[5]) < self.budget_ms]
            if not live:
                break
            for *_, call, after, times in live:
                times.extend(time_ms(call, repeats=1, warmup=0, device=self.device, after=after)[2])
            if progress and r in (0, 2):
                progress(f"round {r + 1}: {len(live)} grid points, load {loadavg()}")
        for d in {id(c[0]): c[0] for c in self.cells}.values():
            cells = [c for c in self.cells if c[0] is d]
            shape = (len(d["batch"]), len(d["positions"]))
            raw, med, calls = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=int)
            for _, i, j, _, _, times in cells:
                raw[i, j], med[i, j], calls[i, j] = statistics.fmean(times), statistics.median(times), len(times)
            d.update(ms=monotone(raw).tolist(), raw_ms=raw.tolist(), median_ms=med.tolist(), calls=calls.tolist())
        self.cells = []


# ---------------------------------------------------------------------------------------------------- encoders

def _id_range(vocab: int) -> tuple[int, int]:
    """Token ids for random inputs: ordinary tokens away from the special ones at the start of a vocabulary."""
    hi = min(vocab, 20000)
    return min(1000, hi // 2), hi


def _texts(n_tokens: int, rows: int) -> list[str]:
    """``rows`` texts of about ``n_tokens`` tokens (a common one-token word repeated; specials add 2)."""
    return [" ".join(["the"] * max(n_tokens - 2, 1))] * rows


@torch.inference_mode()
def profile_encoder(model, tokenizer, rounds: Rounds, *, grid=ENCODER_GRID, device="cpu",
                    max_length: int = 128) -> dict:
    """The pieces of a :class:`~toolkit.nn.encoder.models.MultiExitModel` as :class:`~toolkit.nn.encoder.runtime.EarlyExitRunner`
    and ``run_full`` call them, in ms on ``grid`` (batch x tokens per row), registered with ``rounds``."""
    from toolkit.analysis.scores.classification import confidence
    from toolkit.nn.common.inference import pad_rows, sorted_encoding
    from toolkit.nn.encoder.runtime import EarlyExitRunner

    runner = EarlyExitRunner(model, tokenizer, 0.5, max_length=max_length, device=device)
    layers = runner.family.layers(model.backbone)
    lo, hi = _id_range(int(model.config.backbone.get("vocab_size", 1000)))
    gen = torch.Generator().manual_seed(0)

    def batch_of(b, p):
        ids = torch.randint(lo, hi, (b, int(p)), generator=gen)
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}

    def inputs(b, p):
        texts = _texts(int(p), b)

        def call():
            enc, order = sorted_encoding(tokenizer, texts, None, max_length)
            pad_rows(tokenizer, enc, order)
        return call, None

    def embed(b, p):
        x = batch_of(b, p)
        return (lambda: runner._embed(x)), None

    def layer(b, p):
        x = batch_of(b, p)
        hidden, mask, extras = runner._embed(x)
        turn = iter(range(10**9))

        def call():  # each call the next layer: as in a forward, a layer's weights are not the last call's
            return layers[next(turn) % len(layers)](hidden, mask, *extras)
        return call, None

    def exit_(b, p):
        x = batch_of(b, p)
        hidden, _, _ = runner._embed(x)
        am = x["attention_mask"]

        def call():  # the runner's exit step: head, confidence, and the rows that go on (here all of them)
            z = model.heads[0](model.pool(hidden, am)).float().cpu().numpy()
            done = confidence(z, score="max_prob", temperature=1.0) > 1.0
            keep = torch.from_numpy(np.flatnonzero(~done)).to(device)
            hidden[keep], am[keep]
        return call, None

    def head(b, p):
        x = batch_of(b, p)
        hidden, _, _ = runner._embed(x)
        return (lambda: model.heads[0](model.pool(hidden, x["attention_mask"]))), None

    def forward(b, p):
        x = batch_of(b, p)
        return (lambda: model(**x)), None

    pieces = {name: rounds.grid(fn, grid) for name, fn in
              (("inputs", inputs), ("embed", embed), ("layer", layer), ("exit", exit_), ("head", head))}
    check = {"batch": grid["batch"][:: max(1, len(grid["batch"]) // 2)][:2],
             "positions": grid["positions"][: max(1, len(grid["positions"]) // 2)][-2:]}
    pieces["forward"] = rounds.grid(forward, check)  # a check of the pieces' sum, not used to predict
    return {"kind": "encoder", "layers": int(model.exit_layers[-1]), "exit_layers": list(model.exit_layers),
            "hidden": int(model.config.hidden_size), "pieces": pieces}


# ---------------------------------------------------------------------------------------------------- decoders

@torch.inference_mode()
def profile_causal_lm(model, rounds: Rounds, *, grid=DECODER_GRID, context: int = 128, device="cpu",
                      overhead_tokens: int = 12, pieces: tuple[str, ...] | None = None):
    """The pieces of a Llama-style causal LM as the decoders of :mod:`toolkit.nn.causal.decode` call them, in ms on
    ``grid`` (batch x new positions of a pass) at ``context`` cached positions, registered with ``rounds``; returns
    the model's entry and a function that adds the loop overhead once the rounds ran. ``pieces``: time only these
    (e.g. to add one piece to an existing profile); the loop overhead needs ``setup``, ``layer`` and ``head``."""
    from toolkit.nn.causal.decode import LayerStepper, token_confidence
    from toolkit.nn.causal.exits import LogitLens, TunedExits

    st = LayerStepper(model)
    lens = LogitLens(model)
    tuned = TunedExits(model).to(device=device, dtype=st.dtype)  # time does not depend on the translators' weights
    H = model.config.hidden_size
    lo, hi = _id_range(int(model.config.vocab_size))
    gen = torch.Generator().manual_seed(0)

    def cached(b, layers: int = 1):
        """A cache holding ``context`` positions at its first ``layers`` layers, and the valid mask over them."""
        cache = st.new_cache()
        ids = torch.randint(lo, hi, (b, context), generator=gen).to(device)
        h = st.embed(ids)
        valid = torch.ones((b, context), dtype=torch.bool, device=device)
        mask, rope = st.mask(valid, context), st.rope(h, torch.arange(context, device=device)[None].expand(b, -1))
        for i in range(layers):
            st.layer(i, h, mask, rope, cache)
        return cache, valid

    full: dict[int, tuple] = {}  # per batch size, one cache through every layer, shared by its layer grid points

    def new(b, q):
        ids = torch.randint(lo, hi, (b, int(q)), generator=gen).to(device)
        pos = (context + torch.arange(int(q), device=device))[None].expand(b, -1)
        return ids, pos

    def setup(b, q):
        ids, pos = new(b, q)
        valid = torch.ones((b, context + int(q)), dtype=torch.bool, device=device)

        def call():
            h = st.embed(ids)
            st.rope(h, pos)
            st.mask(valid, int(q))
        return call, None

    def layer(b, q):  # each call the next layer, as in decoding (its weights and cache not hot from the last call)
        if b not in full:
            full[b] = cached(b, st.n_layers)
        cache, valid = full[b]
        ids, pos = new(b, q)
        h = st.embed(ids)
        rope = st.rope(h, pos)
        mask = st.mask(torch.cat([valid, torch.ones((b, int(q)), dtype=torch.bool, device=device)], 1), int(q))
        turn, at = iter(range(10**9)), [0]

        def call():
            at[0] = next(turn) % st.n_layers
            return st.layer(at[0], h, mask, rope, cache)

        def after():  # drop the q positions the call appended to its layer only
            lay = cache.layers[at[0]]
            lay.keys, lay.values = lay.keys[..., : -int(q), :], lay.values[..., : -int(q), :]
        return call, after

    def head(b, q):
        h = torch.randn((b, int(q), H), generator=gen).to(device, st.dtype)
        return (lambda: st.head(h).argmax(-1)), None

    def exit_(b, q):
        h = torch.randn((b, H), generator=gen).to(device, st.dtype)
        return (lambda: lens(1, h).argmax(-1)), None

    def translator(b, q):  # a tuned exit's translator before its LM head (TunedExits.translate: h + Linear(H, H))
        h = torch.randn((b, H) if int(q) == 1 else (b, int(q), H), generator=gen).to(device, st.dtype)
        return (lambda: tuned.translate(1, h)), None

    def conf(b, q):
        z = torch.randn((b, model.config.vocab_size), generator=gen).to(device, st.dtype)
        return (lambda: bool((token_confidence(z, "max_prob") >= 0.5).any())), None

    def kv(b, q):  # a skipped layer's keys and values from the exited state, appended to its cache
        cache, _ = cached(b)
        h = torch.randn((b, 1, H), generator=gen).to(device, st.dtype)
        rope = st.rope(h, torch.full((b, 1), context, device=device))
        return (lambda: cache.update(*st.propagated_kv(0, h, rope), 0)), (lambda: cache.crop(-1))

    one = [1]
    timers = {"setup": (setup, None), "layer": (layer, None), "head": (head, None), "translator": (translator, None),
              "exit": (exit_, one), "confidence": (conf, one), "kv_propagation": (kv, one)}
    chosen = list(timers) if pieces is None else list(pieces)
    if unknown := sorted(set(chosen) - set(timers)):
        raise ValueError(f"pieces: unknown {unknown}; a causal LM's timed pieces are {list(timers)}")
    entry = {"kind": "causal_lm", "layers": st.n_layers, "context": context, "hidden": H,
             "vocab": model.config.vocab_size,
             "pieces": {k: rounds.grid(timers[k][0], grid, positions=timers[k][1]) for k in chosen}}
    if not {"setup", "layer", "head"} <= set(chosen):
        return entry, lambda: None
    return entry, lambda: _loop_overhead(model, entry, grid, context, overhead_tokens, lo, hi, gen)


@torch.inference_mode()
def _loop_overhead(model, entry, grid, context, overhead_tokens, lo, hi, gen) -> None:
    """The decoder loop's overhead per step: greedy decoding of random prompts beyond its pieces."""
    from toolkit.analysis.cost.latency import Piece
    from toolkit.nn.causal.decode import greedy_decode

    pieces = entry["pieces"]
    ps = {k: Piece(k, tuple(v["batch"]), tuple(v["positions"]), np.asarray(v["ms"])) for k, v in pieces.items()}
    L = entry["layers"]
    raw = []
    for b in grid["batch"]:
        prompts = torch.randint(lo, hi, (b, min(context, 64)), generator=gen).tolist()  # a short prefill
        steps = np.concatenate([greedy_decode(model, prompts, overhead_tokens, eos_token_ids=[]).block_seconds
                                for _ in range(1 if b > 2 else 2)])
        step = 1e3 * float(steps[1:].mean())  # the first step warms up
        pieces_ms = float(2 * ps["setup"](b, 1) + L * ps["layer"](b, 1) + ps["head"](b, 1))
        raw.append(max(step - pieces_ms, 0.0))
    raw_t = np.asarray(raw)[:, None]
    pieces["step_overhead"] = {"batch": list(grid["batch"]), "positions": [1.0], "ms": monotone(raw_t).tolist(),
                               "raw_ms": raw_t.tolist(), "derived": "mean greedy step of random prompts minus "
                               "2 setup + L layers + head at the same batch"}


# ---------------------------------------------------------------------------------------------------- profile

def machine_info() -> dict:
    import transformers

    from toolkit import __version__

    return {"machine": {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count()},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "numpy": np.__version__, "python": platform.python_version(), "toolkit": __version__}}


def profile_models(models: Mapping[str, tuple], *, quick: bool = False, repeats: int | None = None,
                   warmup: int = 2, context: int = 128, device="cpu", dtype: str = "float32",
                   progress: Callable[[str], None] | None = None) -> dict:
    """A latency profile (a dict in the format :func:`toolkit.analysis.cost.latency.load_profile` reads) of ``models``:
    ``{name: (model, tokenizer)}``, a MultiExitModel with its tokenizer or a Llama-style causal LM (tokenizer
    unused). ``quick``: a 2 x 2 grid and 3 repeats (tests)."""
    repeats = repeats or (3 if quick else 30)
    out = {"format": PROFILE_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           **machine_info(), "threads": torch.get_num_threads(), "device": str(device), "dtype": dtype,
           "repeats": repeats, "warmup": warmup, "statistic": "mean (of 3 to `repeats` calls; median kept as median_ms)", "interpolation": INTERPOLATION,
           "loadavg_start": loadavg(), "models": {}}
    t0 = time.perf_counter()
    rounds = Rounds(repeats=repeats, warmup=warmup, device=device)
    finish = []
    for name, (model, tok) in models.items():
        if hasattr(model, "exit_layers") and hasattr(model, "heads"):
            m = profile_encoder(model, tok, rounds, grid=QUICK_GRID if quick else ENCODER_GRID, device=device)
        else:
            m, f = profile_causal_lm(model, rounds, grid=QUICK_DECODER_GRID if quick else DECODER_GRID,
                                     context=16 if quick else context, device=device,
                                     overhead_tokens=4 if quick else 12)
            finish.append(f)
        out["models"][name] = m
    rounds.run(progress)
    for f in finish:
        f()
    if progress:
        progress(f"{len(models)} model(s) profiled in {time.perf_counter() - t0:.0f} s, load {loadavg()}")
    out.update(loadavg_end=loadavg(), seconds=round(time.perf_counter() - t0, 2))
    load_profile(out)  # the reader accepts what was written
    return out


def load_for_profile(name: str, *, num_labels: int = 2, device="cpu"):
    """(model, tokenizer) for ``toolkit profile --model NAME``: a causal LM by name or folder (its config says so),
    a trained multi-exit checkpoint, or an encoder by name with new exit heads after every layer (time does not
    depend on head weights); ``NAME@L`` truncates an encoder to its first L layers."""
    from transformers import AutoConfig, AutoTokenizer

    from toolkit.nn.encoder.models import MultiExitConfig, MultiExitModel, load_model, resolve_model

    base, _, layers = name.partition("@")
    folder = resolve_model(base)
    config = AutoConfig.from_pretrained(folder)
    if getattr(config, "is_decoder", False) or "CausalLM" in " ".join(getattr(config, "architectures", None) or []):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.config._attn_implementation = "sdpa"  # as the decoders' benchmarks load it
        return model.to(device).eval(), AutoTokenizer.from_pretrained(folder)
    if isinstance(config, MultiExitConfig):
        return load_model(folder).to(device).eval(), AutoTokenizer.from_pretrained(folder)
    n = int(layers) if layers else None
    model = MultiExitModel.from_backbone(folder, num_labels, num_hidden_layers=n)
    return model.to(device).eval(), AutoTokenizer.from_pretrained(folder)
