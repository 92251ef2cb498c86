"""``toolkit profile``: time each model's pieces on this machine into a latency profile
(:mod:`toolkit.analysis.latency` reads it, without torch, and predicts the time of a runtime's schedule).

Each piece is timed the way the runtimes call it (:class:`toolkit.nn.runtime.EarlyExitRunner`'s embedding, layer
and exit steps (the exit with its row selection); :class:`toolkit.nn.llm_runtime.LayerStepper`'s pass set-up, layer,
head, exit and state propagation), on a grid of batch sizes and positions, after ``warmup`` untimed calls, over
3 to ``repeats`` timed calls (fewer for slow calls, within about ``budget_s`` per grid point). The profile's
statistic is the **mean** of those calls (the median is kept beside it): on a shared machine a call is preempted in
proportion to its length, and only the mean carries that share into a sum of pieces, so short and long pieces stay
comparable; on a quiet machine the two agree. The values are made non-decreasing along each axis
(:func:`toolkit.analysis.latency.monotone`; the raw ones are kept). A decoder layer is timed at a fixed cached
context (``context``), on one layer (every layer of a model has the same shape). The decoder loop's own overhead
per step (bookkeeping between passes) is what greedy decoding of random prompts takes beyond its pieces, measured
here at each batch size. The whole encoder forward is timed at a few grid points as a check of the pieces' sum.
The profile
records the machine, threads, dtype, library versions and the load average before and after each model.
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

from ..analysis.latency import INTERPOLATION, PROFILE_FORMAT, load_profile, monotone

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
    return statistics.fmean(out), statistics.median(out), out


def _grid_piece(fn, grid, *, repeats, warmup, device, batch=None, positions=None) -> dict:
    """Time ``fn(b, p)`` (which returns the callable to time and an optional ``after``) over a grid."""
    bs, ps = batch or grid["batch"], positions or grid["positions"]
    raw, med, calls = (np.zeros((len(bs), len(ps))) for _ in range(3))
    for i, b in enumerate(bs):
        for j, p in enumerate(ps):
            call, after = fn(b, p)
            raw[i, j], med[i, j], times = time_ms(call, repeats=repeats, warmup=warmup, device=device, after=after)
            calls[i, j] = len(times)
    return {"batch": list(bs), "positions": [float(p) for p in ps], "ms": monotone(raw).tolist(),
            "raw_ms": raw.tolist(), "median_ms": med.tolist(), "calls": calls.astype(int).tolist()}


# ---------------------------------------------------------------------------------------------------- encoders

def _id_range(vocab: int) -> tuple[int, int]:
    """Token ids for random inputs: ordinary tokens away from the special ones at the start of a vocabulary."""
    hi = min(vocab, 20000)
    return min(1000, hi // 2), hi


def _texts(n_tokens: int, rows: int) -> list[str]:
    """``rows`` texts of about ``n_tokens`` tokens (a common one-token word repeated; specials add 2)."""
    return [" ".join(["the"] * max(n_tokens - 2, 1))] * rows


@torch.inference_mode()
def profile_encoder(model, tokenizer, *, grid=ENCODER_GRID, repeats: int = 30, warmup: int = 2, device="cpu",
                    max_length: int = 128) -> dict:
    """The pieces of a :class:`~toolkit.nn.models.MultiExitModel` as :class:`~toolkit.nn.runtime.EarlyExitRunner`
    and ``run_full`` call them, in ms on ``grid`` (batch x tokens per row)."""
    from ..analysis.scores import confidence
    from .inference import pad_rows, sorted_encoding
    from .runtime import EarlyExitRunner

    runner = EarlyExitRunner(model, tokenizer, 0.5, max_length=max_length, device=device)
    layer0 = runner.family.layers(model.backbone)[0]
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
        return (lambda: layer0(hidden, mask, *extras)), None

    def exit_(b, p):
        x = batch_of(b, p)
        hidden, _, _ = runner._embed(x)
        am = x["attention_mask"]

        def call():  # the runner's exit step: head, confidence, and the rows that go on (here all of them)
            z = model.heads[0](model.pool(hidden, am)).float().cpu().numpy()
            done = confidence(z, "max_prob", 1.0) > 1.0
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

    kw = dict(repeats=repeats, warmup=warmup, device=device)
    pieces = {name: _grid_piece(fn, grid, **kw) for name, fn in
              (("inputs", inputs), ("embed", embed), ("layer", layer), ("exit", exit_), ("head", head))}
    check = {"batch": grid["batch"][:: max(1, len(grid["batch"]) // 2)][:2],
             "positions": grid["positions"][: max(1, len(grid["positions"]) // 2)][-2:]}
    pieces["forward"] = _grid_piece(forward, check, **kw)  # a check of the pieces' sum, not used to predict
    return {"kind": "encoder", "layers": int(model.exit_layers[-1]), "exit_layers": list(model.exit_layers),
            "hidden": int(model.config.hidden_size), "pieces": pieces}


# ---------------------------------------------------------------------------------------------------- decoders

@torch.inference_mode()
def profile_causal_lm(model, *, grid=DECODER_GRID, context: int = 128, repeats: int = 30, warmup: int = 2,
                      device="cpu", overhead_tokens: int = 12) -> dict:
    """The pieces of a Llama-style causal LM as the decoders of :mod:`toolkit.nn.llm_runtime` call them, in ms on
    ``grid`` (batch x new positions of a pass) at ``context`` cached positions."""
    from .llm_exits import LogitLens
    from .llm_runtime import LayerStepper, greedy_decode, token_confidence

    st = LayerStepper(model)
    lens = LogitLens(model)
    H = model.config.hidden_size
    lo, hi = _id_range(int(model.config.vocab_size))
    gen = torch.Generator().manual_seed(0)

    def cached(b):
        """A cache holding ``context`` positions at layer 0, and the valid mask over them."""
        cache = st.new_cache()
        ids = torch.randint(lo, hi, (b, context), generator=gen).to(device)
        h = st.embed(ids)
        valid = torch.ones((b, context), dtype=torch.bool, device=device)
        st.layer(0, h, st.mask(valid, context), st.rope(h, torch.arange(context, device=device)[None].expand(b, -1)),
                 cache)
        return cache, valid

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

    def layer(b, q):
        cache, valid = cached(b)
        ids, pos = new(b, q)
        h = st.embed(ids)
        rope = st.rope(h, pos)
        mask = st.mask(torch.cat([valid, torch.ones((b, int(q)), dtype=torch.bool, device=device)], 1), int(q))
        return (lambda: st.layer(0, h, mask, rope, cache)), (lambda: cache.crop(-int(q)))

    def head(b, q):
        h = torch.randn((b, int(q), H), generator=gen).to(device, st.dtype)
        return (lambda: st.head(h).argmax(-1)), None

    def exit_(b, q):
        h = torch.randn((b, H), generator=gen).to(device, st.dtype)
        return (lambda: lens(1, h).argmax(-1)), None

    def conf(b, q):
        z = torch.randn((b, model.config.vocab_size), generator=gen).to(device, st.dtype)
        return (lambda: bool((token_confidence(z, "max_prob") >= 0.5).any())), None

    def kv(b, q):
        h = torch.randn((b, 1, H), generator=gen).to(device, st.dtype)
        rope = st.rope(h, torch.full((b, 1), context, device=device))
        return (lambda: st.propagated_kv(0, h, rope)), None

    kw = dict(repeats=repeats, warmup=warmup, device=device)
    one = [1]
    pieces = {"setup": _grid_piece(setup, grid, **kw), "layer": _grid_piece(layer, grid, **kw),
              "head": _grid_piece(head, grid, **kw),
              "exit": _grid_piece(exit_, grid, positions=one, **kw),
              "confidence": _grid_piece(conf, grid, positions=one, **kw),
              "kv_propagation": _grid_piece(kv, grid, positions=one, **kw)}
    # the decoder loop's overhead per step: greedy decoding of random prompts beyond its pieces
    from ..analysis.latency import Piece

    ps = {k: Piece(k, tuple(v["batch"]), tuple(v["positions"]), np.asarray(v["ms"])) for k, v in pieces.items()}
    L = st.n_layers
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
    return {"kind": "causal_lm", "layers": L, "context": context, "hidden": H, "vocab": model.config.vocab_size,
            "pieces": pieces}


# ---------------------------------------------------------------------------------------------------- profile

def machine_info() -> dict:
    import transformers

    from .. import __version__

    return {"machine": {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count()},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "numpy": np.__version__, "python": platform.python_version(), "toolkit": __version__}}


def profile_models(models: Mapping[str, tuple], *, quick: bool = False, repeats: int | None = None,
                   warmup: int = 2, context: int = 128, device="cpu", dtype: str = "float32",
                   progress: Callable[[str], None] | None = None) -> dict:
    """A latency profile (a dict in the format :func:`toolkit.analysis.latency.load_profile` reads) of ``models``:
    ``{name: (model, tokenizer)}``, a MultiExitModel with its tokenizer or a Llama-style causal LM (tokenizer
    unused). ``quick``: a 2 x 2 grid and 3 repeats (tests)."""
    repeats = repeats or (3 if quick else 30)
    out = {"format": PROFILE_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           **machine_info(), "threads": torch.get_num_threads(), "device": str(device), "dtype": dtype,
           "repeats": repeats, "warmup": warmup, "statistic": "mean (of 3 to `repeats` calls; median kept as median_ms)", "interpolation": INTERPOLATION,
           "loadavg_start": loadavg(), "models": {}}
    t0 = time.perf_counter()
    for name, (model, tok) in models.items():
        la = loadavg()
        t1 = time.perf_counter()
        if hasattr(model, "exit_layers") and hasattr(model, "heads"):
            m = profile_encoder(model, tok, grid=QUICK_GRID if quick else ENCODER_GRID, repeats=repeats,
                                warmup=warmup, device=device)
        else:
            m = profile_causal_lm(model, grid=QUICK_DECODER_GRID if quick else DECODER_GRID,
                                  context=16 if quick else context, repeats=repeats, warmup=warmup, device=device,
                                  overhead_tokens=4 if quick else 12)
        m.update(loadavg_before=la, loadavg_after=loadavg(), seconds=round(time.perf_counter() - t1, 2))
        out["models"][name] = m
        if progress:
            progress(f"{name}: {m['kind']}, {len(m['pieces'])} pieces in {m['seconds']:.1f} s, load {la}")
    out.update(loadavg_end=loadavg(), seconds=round(time.perf_counter() - t0, 2))
    load_profile(out)  # the reader accepts what was written
    return out


def load_for_profile(name: str, *, num_labels: int = 2, device="cpu"):
    """(model, tokenizer) for ``toolkit profile --model NAME``: a causal LM by name or folder (its config says so),
    a trained multi-exit checkpoint, or an encoder by name with new exit heads after every layer (time does not
    depend on head weights); ``NAME@L`` truncates an encoder to its first L layers."""
    from transformers import AutoConfig, AutoTokenizer

    from .models import MultiExitConfig, MultiExitModel, load_model, resolve_model

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
