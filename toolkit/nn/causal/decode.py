"""Real early-exit decoding for Hugging Face causal LMs with a KV cache: self-speculative (LayerSkip-style) and
CALM-style per-token early exit, batch size 1 or more.

**Self-speculative decoding** (:class:`SelfSpeculativeDecoder`) follows the block structure of the cost model
(:func:`toolkit.analysis.cost.causal.self_speculative_block_flops`): at a block start every token up to ``x[p-1]`` is
emitted and every layer's keys/values exist up to ``x[p-2]``. The draft feeds ``x[p-1]`` and then each draft token
through layers 1..k and the exit, giving ``y[p..p+d-1]``; one verification pass over ``[x[p-1], y[p..p+d-1]]``
reuses the draft's layer-<=k keys/values and layer-k hidden states for the first d inputs, runs layers 1..k for the
last draft token only, layers k+1..L and the LM head for all d+1, giving ``z[p..p+d]``. The block accepts the
``a`` leading drafts equal to ``z``, emits them and ``z[p+a]``, and drops the rejected positions' cache. The output
is the full model's greedy output (up to floating-point ties).

Block-length rule (shared with the offline acceptance): a block starting at generated position ``p`` drafts
``min(d, max_new_tokens - 1 - p)`` tokens (so it never emits past ``max_new_tokens``; at ``p = max_new_tokens - 1``
it is a plain full-model step) and stops counting at a drafted end-of-sequence token. Generation starts by
prefilling all prompt tokens but the last through every layer; the last prompt token is ``x[-1]`` of the first
block (p = 0). So the accepted count of the block at ``p`` is the number of leading positions
``p .. p + min(d, max_new_tokens - 1 - p, T - p) - 1`` whose layer-k exit top-1 on the full model's trajectory equals
the full model's token (T = the full output's length).

**Accounting shared with the cost model.** The stepper records every layer, exit and head evaluation of a block;
:meth:`LayerStepper.passes` folds them into :class:`~toolkit.analysis.cost.causal.Pass` records (layer range, positions,
offset read from the attention mask, exits, heads), and the decoder checks each block's against
:func:`~toolkit.analysis.cost.causal.self_speculative_passes`, the definition the offline walk's FLOPs and weight reads
use, so the estimate and the runtime cannot drift apart. :class:`SpecResult` exposes them (``passes``,
``block_flops``, ``block_reads``).

**CALM-style decoding** (:class:`CalmDecoder`): per token, the exit is evaluated after each checked layer in order;
the first whose confidence (``max_prob``, ``margin`` or ``entropy`` at a temperature; higher = more confident, as in
:mod:`toolkit.analysis.scores.classification`) is at least its threshold emits its top-1 token. The skipped layers' keys/values
for that token are filled from the exited hidden state (state propagation: each skipped layer's input norm, key and
value projections and rotary embedding). Its output can differ from the full model's.

Batches: rows advance by different amounts. Every row keeps its own positions and a per-row mask over the shared
cache columns; rejected columns of one row that another row kept stay in the cache as masked holes, and the cache is
re-packed (:meth:`_Batch.compact`) when holes pass ``compact_slack`` of the width. Finished rows leave the batch.

Exits: any callable ``exit_logits(layer, hidden) -> logits`` (layer 1-based, hidden ``[..., H]``); the default
is the logit lens :class:`~toolkit.nn.causal.exits.LogitLens` (trained exits: :class:`~toolkit.nn.causal.exits.TunedExits`). Layer stepping (embeddings, rotary embeddings, masks, decoder layers with the
cache, final norm and LM head, state propagation) lives in :class:`LayerStepper` alone; it supports Llama-style
models (Llama, SmolLM, Mistral, Qwen2) with ``eager`` or ``sdpa`` attention, transformers 5.x (the cache argument is
``cache`` from 5.24, ``past_key_values`` before).
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from toolkit.analysis.cost.causal import (
    CausalLMDims,
    Pass,
    passes_flops,
    passes_reads,
    self_speculative_passes,
    translator_flops,
)
from toolkit.nn.causal.exits import ExitFn, LogitLens, TunedExits
from toolkit.policy import Policy

CALM_SCORES = ("max_prob", "margin", "entropy")


def token_confidence(logits: torch.Tensor, score: str = "max_prob", temperature: float = 1.0) -> torch.Tensor:
    """Confidence of next-token logits ``[..., V]`` (higher = more confident), in float32 or float64.

    ``max_prob``: largest probability; ``margin``: top-1 minus top-2 probability; ``entropy``: minus the entropy in
    nats (the same definitions as :mod:`toolkit.analysis.scores.classification`).
    """
    if score not in CALM_SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {CALM_SCORES}")
    z = logits if logits.dtype == torch.float64 else logits.float()
    lp = torch.log_softmax(z / temperature, dim=-1)
    if score == "entropy":
        return (lp.exp() * lp).sum(-1)
    top = lp.topk(2, dim=-1).values.exp()
    return top[..., 0] if score == "max_prob" else top[..., 0] - top[..., 1]


class LayerStepper:
    """The one place that knows how a Llama-style Hugging Face causal LM is put together."""

    def __init__(self, model):
        base = getattr(model, "model", None)
        needed = ("embed_tokens", "layers", "norm", "rotary_emb")
        if base is None or not all(hasattr(base, n) for n in needed):
            raise TypeError(f"{type(model).__name__}: early-exit decoding supports Llama-style causal LMs "
                            f"(model.model with {', '.join(needed)}); this model is not one")
        impl = getattr(model.config, "_attn_implementation", None) or "eager"
        if impl not in ("eager", "sdpa"):
            raise ValueError(f"attention implementation {impl!r} cannot take per-row masks; load the model with "
                             f"attn_implementation='sdpa' (or 'eager')")
        self.model = model
        self.embed, self.layers, self.norm, self.rotary = base.embed_tokens, base.layers, base.norm, base.rotary_emb
        self.lm_head = model.get_output_embeddings()
        self.n_layers = len(self.layers)
        self.eager = impl == "eager"
        params = inspect.signature(self.layers[0].forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.24
        attn = self.layers[0].self_attn
        self._rotary_fn = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.trace: list | None = None  # when a list: every layer, exit and head evaluation is recorded (passes())

    @staticmethod
    def new_cache():
        from transformers import DynamicCache

        return DynamicCache()

    def rope(self, hidden: torch.Tensor, positions: torch.Tensor):
        """Rotary (cos, sin) for ``positions`` ``[B, q]``."""
        return self.rotary(hidden, positions)

    def mask(self, valid: torch.Tensor, q: int) -> torch.Tensor:
        """Attention mask ``[B, 1, q, T]`` for ``q`` new queries in the last ``q`` of ``T`` cache columns.

        ``valid`` ``[B, T]``: which columns a row may attend to; the new columns are causal among themselves; a
        query always sees itself (so padding queries stay finite).
        """
        B, T = valid.shape
        m = valid[:, None, :].expand(B, q, T).clone()
        idx = torch.arange(q, device=valid.device)
        m[:, :, T - q:] &= idx[:, None] >= idx[None, :]
        m[:, idx, T - q + idx] = True
        m = m[:, None]
        if self.eager:
            return torch.zeros(m.shape, dtype=self.dtype, device=m.device).masked_fill_(~m, torch.finfo(self.dtype).min)
        return m

    def layer(self, i: int, hidden, mask, rope, cache) -> torch.Tensor:
        """Decoder layer ``i`` (0-based) on ``hidden`` ``[B, q, H]``, appending its keys/values to ``cache``."""
        if self.trace is not None:
            self.trace.append(("layer", i + 1, hidden.shape[1], mask))
        out = self.layers[i](hidden, attention_mask=mask, position_embeddings=rope, use_cache=True,
                             **{self._cache_kw: cache})
        return out[0] if isinstance(out, tuple) else out

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's own final norm and LM head (``hidden`` ``[B, q, H]`` or ``[B, H]``)."""
        if self.trace is not None:
            self.trace.append(("head", hidden.shape[1] if hidden.dim() == 3 else 1))
        return self.lm_head(self.norm(hidden))

    def exit(self, exit_fn: ExitFn, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """``exit_fn(layer, hidden)`` for ``hidden`` ``[B, H]``, recorded in the trace."""
        if self.trace is not None:
            self.trace.append(("exit", 1))
        return exit_fn(layer, hidden)

    def passes(self, context: int) -> tuple[Pass, ...]:
        """The trace as :class:`~toolkit.analysis.cost.causal.Pass` records of row 0, whose block started with
        ``context`` cached positions: consecutive layers on the same positions at the same offset form one pass (a
        pass's offset read from its attention mask: row 0's first query attends to ``context + offset + 1``
        positions); exit and head evaluations attach to the pass before them."""
        out: list[Pass] = []
        offsets: dict[int, int] = {}
        for kind, *rest in self.trace or ():
            if kind == "layer":
                layer, q, mask = rest
                if id(mask) not in offsets:
                    row = mask[0, 0, 0]
                    offsets[id(mask)] = int((row == 0).sum() if self.eager else row.sum()) - context - 1
                off = offsets[id(mask)]
                prev = out[-1] if out else None
                if (prev and layer == prev.last + 1 and q == prev.positions and off == prev.offset
                        and not prev.exits and not prev.heads):
                    out[-1] = replace(prev, last=layer)
                else:
                    out.append(Pass(layer, layer, q, offset=off))
            elif not out:
                raise RuntimeError(f"an {kind} evaluation before any layer ran")
            else:
                out[-1] = replace(out[-1], **{f"{kind}s": getattr(out[-1], f"{kind}s") + rest[0]})
        return tuple(out)

    def propagated_kv(self, i: int, hidden: torch.Tensor, rope):
        """Keys and values that layer ``i`` would cache for an input ``hidden`` ``[B, q, H]`` (state propagation)."""
        layer = self.layers[i]
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        shape = (*x.shape[:-1], -1, attn.head_dim)
        k = attn.k_proj(x).view(shape)
        if hasattr(attn, "k_norm"):  # Qwen3-style per-head key norm
            k = attn.k_norm(k)
        k, v = k.transpose(1, 2), attn.v_proj(x).view(shape).transpose(1, 2)
        cos, sin = rope
        _, k = self._rotary_fn(k, k, cos, sin)
        return k, v

    @staticmethod
    def cache_tensors(cache):
        """(keys, values) of every layer of a DynamicCache, for in-place re-packing."""
        return [(lay.keys, lay.values) for lay in cache.layers]

    @staticmethod
    def set_cache_tensors(cache, tensors) -> None:
        for lay, (k, v) in zip(cache.layers, tensors):
            lay.keys, lay.values = k, v


class _RowMergedCache:
    """A cache view for a layer run on a subset of rows: the other rows' keys/values (state propagation) are
    appended in the same update, and the running rows get their own slice back."""

    def __init__(self, cache, running: torch.Tensor, others: torch.Tensor, fill):
        self.cache, self.running, self.others, self.fill = cache, running, others, fill

    def update(self, keys, values, layer_idx, *args, **kwargs):
        fk, fv = self.fill
        B = len(self.running) + len(self.others)
        K = keys.new_empty((B, *keys.shape[1:]))
        V = values.new_empty((B, *values.shape[1:]))
        K[self.running], K[self.others] = keys, fk
        V[self.running], V[self.others] = values, fv
        K, V = self.cache.update(K, V, layer_idx, *args, **kwargs)
        return K[self.running], V[self.running]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eos_set(model, eos_token_ids) -> set[int]:
    if eos_token_ids is None:
        gc = getattr(model, "generation_config", None)
        eos_token_ids = getattr(gc, "eos_token_id", None) if gc is not None else None
        if eos_token_ids is None:
            eos_token_ids = getattr(model.config, "eos_token_id", None)
    if eos_token_ids is None:
        return set()
    return {int(eos_token_ids)} if isinstance(eos_token_ids, (int, np.integer)) else {int(e) for e in eos_token_ids}


def _check_prompts(prompts) -> list[list[int]]:
    rows = [[int(t) for t in p] for p in prompts]
    if not rows:
        raise ValueError("no prompts")
    for i, r in enumerate(rows):
        if not r:
            raise ValueError(f"prompt {i} is empty (it needs at least one token)")
    return rows


class _Batch:
    """Decoding state of a batch: the shared cache, per-row masks and positions, emitted tokens."""

    def __init__(self, stepper: LayerStepper, prompts: list[list[int]], max_new_tokens: int, eos: set[int],
                 compact_slack: float):
        self.st, self.M, self.eos, self.slack = stepper, int(max_new_tokens), eos, compact_slack
        dev = stepper.device
        self.cache = stepper.new_cache()
        self.rows = list(range(len(prompts)))  # original index of each live row
        self.out: list[list[int]] = [[] for _ in prompts]
        self.last = torch.tensor([p[-1] for p in prompts], device=dev)
        n = torch.tensor([len(p) - 1 for p in prompts], device=dev)
        width = int(n.max())
        self.valid = torch.arange(width, device=dev)[None, :] >= (width - n)[:, None]  # left padding
        self.n_valid = n  # cached positions per row = the next token's position id
        if width:
            ids = torch.zeros((len(prompts), width), dtype=torch.long, device=dev)
            for b, p in enumerate(prompts):
                if len(p) > 1:
                    ids[b, width - len(p) + 1:] = torch.tensor(p[:-1], device=dev)
            pos = (self.valid.long().cumsum(1) - 1).clamp_min(0)
            h = stepper.embed(ids)
            rope, mask = stepper.rope(h, pos), stepper.mask(self.valid, width)
            for i in range(stepper.n_layers):
                h = stepper.layer(i, h, mask, rope, self.cache)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return self.valid.shape[1]

    def emitted(self, b: int) -> int:
        return len(self.out[self.rows[b]])

    def emit(self, b: int, tokens: list[int]) -> bool:
        """Append ``tokens`` to live row ``b``, cut at end-of-sequence or ``max_new_tokens``; True if it finished."""
        out = self.out[self.rows[b]]
        for t in tokens:
            out.append(t)
            if t in self.eos or len(out) >= self.M:
                return True
        return False

    def retire(self, done: list[bool]) -> None:
        """Remove finished rows from the batch (and their cache rows)."""
        if not any(done):
            return
        keep = [b for b, d in enumerate(done) if not d]
        self.rows = [self.rows[b] for b in keep]
        if not keep:
            return
        idx = torch.tensor(keep, device=self.valid.device)
        self.cache.batch_select_indices(idx)
        self.valid, self.n_valid, self.last = self.valid[idx], self.n_valid[idx], self.last[idx]
        self.compact()

    def compact(self, force: bool = False) -> None:
        """Re-pack every row's cached columns to the right when masked holes exceed ``slack`` of the width."""
        need = int(self.n_valid.max())
        if self.width <= need or not (force or self.width > (1 + self.slack) * max(need, 1)):
            return
        order = torch.argsort(self.valid.to(torch.int8), dim=1, stable=True)[:, self.width - need:]  # [B, need]
        self.valid = torch.gather(self.valid, 1, order)
        tensors = []
        for k, v in LayerStepper.cache_tensors(self.cache):
            ix = order[:, None, :, None].expand(k.shape[0], k.shape[1], need, k.shape[3])
            tensors.append((torch.gather(k, 2, ix), torch.gather(v, 2, ix)))
        LayerStepper.set_cache_tensors(self.cache, tensors)


def _prefill(st: LayerStepper, prompts, max_new_tokens: int, eos: set[int], slack: float):
    """Validated prompts, the batch state after the prefill, and the prefill's seconds."""
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompts = _check_prompts(prompts)
    _sync(st.device)
    t0 = time.perf_counter()
    bt = _Batch(st, prompts, max_new_tokens, eos, slack)
    _sync(st.device)
    return prompts, bt, time.perf_counter() - t0


@dataclass(frozen=True)
class SpecResult:
    """Output of :meth:`SelfSpeculativeDecoder.generate` (rows in prompt order)."""

    tokens: list[np.ndarray]  # per row: generated ids, end-of-sequence included if reached
    accepted: list[np.ndarray]  # per row: accepted draft tokens of each of its blocks
    drafted: list[np.ndarray]  # per row: draft tokens counted in each block (min(d, room left, up to EOS))
    block_seconds: np.ndarray  # [n_blocks] wall time of each batch block (all live rows)
    block_rows: np.ndarray  # [n_blocks] live rows in each batch block
    prefill_seconds: float
    seconds: float  # decoding after the prefill (the sum of block_seconds)
    draft_layer: int
    draft_length: int
    passes: list[tuple[Pass, ...]]  # per batch block: the passes each live row ran (recorded, not assumed)
    block_context: list[np.ndarray]  # per batch block: cached positions of each live row at its start
    block_row_ids: list[np.ndarray]  # per batch block: the prompt index of each live row
    dims: CausalLMDims
    exit_overhead: float  # FLOPs of the exit before its LM head (a tuned exit's translator), per evaluation

    @property
    def n_tokens(self) -> int:
        return int(sum(len(t) for t in self.tokens))

    @property
    def block_flops(self) -> np.ndarray:
        """``[n_blocks]`` FLOPs each batch block ran, summed over its live rows (the shared cost model,
        :func:`~toolkit.analysis.cost.causal.passes_flops`, of the recorded passes)."""
        return np.array([float(np.sum(passes_flops(p, c, self.dims, exit_overhead=self.exit_overhead)))
                         for p, c in zip(self.passes, self.block_context)])

    @property
    def block_reads(self) -> np.ndarray:
        """``[n_blocks]`` model weights each batch block read (in FLOPs at one position; once for all live rows:
        :func:`~toolkit.analysis.cost.causal.passes_reads` of the recorded passes)."""
        return np.array([passes_reads(p, self.dims, exit_overhead=self.exit_overhead) for p in self.passes])

    def to_frame(self):
        """One row per (row, block) in decoding order: ``row``, ``accepted``, ``drafted``, ``flops`` (that row's
        share of the block) and ``reads`` (the block's weight reads: what the row alone would read)."""
        import pandas as pd

        rows, flops, reads = [], [], []
        for p, c, ids in zip(self.passes, self.block_context, self.block_row_ids):
            rows.append(ids)
            flops.append(passes_flops(p, c, self.dims, exit_overhead=self.exit_overhead))
            reads.append(np.full(len(ids), passes_reads(p, self.dims, exit_overhead=self.exit_overhead)))
        rows, flops, reads = (np.concatenate(x) if x else np.zeros(0) for x in (rows, flops, reads))
        order = np.argsort(rows, kind="stable")  # batch blocks are in decoding order: stable keeps each row's order
        return pd.DataFrame({"row": np.repeat(np.arange(len(self.accepted)), [len(a) for a in self.accepted]),
                             "accepted": np.concatenate(self.accepted), "drafted": np.concatenate(self.drafted),
                             "flops": flops[order], "reads": reads[order]})


class SelfSpeculativeDecoder:
    """Draft with layers 1..``draft_layer`` and ``exit_fn``, verify with the full model (see module docstring).

    ``draft_length=0`` is plain greedy decoding with the same machinery (one full-model step per token).
    """

    def __init__(self, model, draft_layer: int, draft_length: int, exit_fn: ExitFn | None = None, *,
                 eos_token_ids=None, compact_slack: float = 0.5):
        self.st = LayerStepper(model)
        L = self.st.n_layers
        if draft_length and not 1 <= int(draft_layer) < L:
            raise ValueError(f"draft_layer must lie in 1..{L - 1} (the model has {L} layers), got {draft_layer}")
        if int(draft_length) < 0:
            raise ValueError(f"draft_length must be >= 0, got {draft_length}")
        self.k, self.d = (int(draft_layer) if draft_length else L), int(draft_length)
        self.exit = exit_fn or LogitLens(model)
        self.eos = _eos_set(model, eos_token_ids)
        self.slack = compact_slack
        self.dims = CausalLMDims.from_config(model.config.to_dict())
        tuned = isinstance(self.exit, TunedExits)
        self.exit_overhead = translator_flops(self.dims) if tuned else 0.0
        # the latency profile's pieces one draft exit evaluation runs (latency.self_speculative_run_ms(exit_pieces=))
        self.exit_pieces = ("exit", "translator") if tuned else ("exit",)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> SpecResult:
        """Decode every prompt (token ids) greedily, all rows in one batch."""
        prompts, bt, prefill = _prefill(self.st, prompts, max_new_tokens, self.eos, self.slack)
        dev = self.st.device
        accepted = [[] for _ in prompts]
        drafted = [[] for _ in prompts]
        secs, nrows, passes, contexts, row_ids = [], [], [], [], []
        while len(bt):
            t1 = time.perf_counter()
            caps = [min(self.d, bt.M - 1 - bt.emitted(b)) for b in range(len(bt))]
            context = bt.n_valid.tolist()
            contexts.append(np.asarray(context, dtype=np.int64))
            row_ids.append(np.asarray(bt.rows, dtype=np.int64))
            self.st.trace = []
            try:
                a, d_eff, y, z = self._block(bt, max(caps), torch.tensor(caps, device=dev))
                passes.append(self._check_passes(self.st.passes(context[0]), max(caps)))
            finally:
                self.st.trace = None
            done = []
            for b, row in enumerate(bt.rows):
                ab, db = a[b], d_eff[b]
                accepted[row].append(ab)
                drafted[row].append(db)
                ends_on_draft = ab == db and ab > 0 and y[b][ab - 1] in self.eos
                done.append(bt.emit(b, y[b][:ab] if ends_on_draft else y[b][:ab] + [z[b][ab]]))
            bt.retire(done)
            _sync(dev)
            secs.append(time.perf_counter() - t1)
            nrows.append(len(done))
        return SpecResult([np.asarray(o, dtype=np.int64) for o in bt.out],
                          [np.asarray(x, dtype=np.int64) for x in accepted],
                          [np.asarray(x, dtype=np.int64) for x in drafted], np.asarray(secs), np.asarray(nrows),
                          prefill, float(sum(secs)), self.k, self.d, passes, contexts, row_ids, self.dims,
                          self.exit_overhead)

    def _check_passes(self, ran: tuple[Pass, ...], D: int) -> tuple[Pass, ...]:
        """The recorded passes of a block, checked against the cost model's definition of one
        (:func:`~toolkit.analysis.cost.causal.self_speculative_passes`): the estimate and the runtime cannot drift."""
        want = self_speculative_passes(self.k, D, self.st.n_layers)
        if ran != want:
            raise RuntimeError(f"self-speculative block (k={self.k}, d={D}) ran passes {ran}, but the cost model "
                               f"defines {want}: fix the decoder or llm_cost.self_speculative_passes together")
        return ran

    def _block(self, bt: _Batch, D: int, caps: torch.Tensor):
        st, k, L = self.st, self.k, self.st.n_layers
        B, T0, dev = len(bt), bt.width, bt.valid.device
        valid = torch.cat([bt.valid, torch.ones((B, D + 1), dtype=torch.bool, device=dev)], 1)
        inp = bt.last[:, None]
        hidden_k, drafts = [], []
        for j in range(D):  # draft: layers 1..k and the exit, one input at a time
            h = st.embed(inp)
            rope = st.rope(h, (bt.n_valid + j)[:, None])
            mask = st.mask(valid[:, :T0 + j + 1], 1)
            for i in range(k):
                h = st.layer(i, h, mask, rope, bt.cache)
            hidden_k.append(h)
            inp = st.exit(self.exit, k, h[:, -1]).argmax(-1)[:, None]
            drafts.append(inp)
        # verify: layers 1..k for the last input only, then layers k+1..L and the head for all D+1 inputs
        h = st.embed(inp)
        rope = st.rope(h, (bt.n_valid + D)[:, None])
        mask = st.mask(valid, 1)
        for i in range(k):
            h = st.layer(i, h, mask, rope, bt.cache)
        h = torch.cat([*hidden_k, h], 1)
        rope = st.rope(h, bt.n_valid[:, None] + torch.arange(D + 1, device=dev))
        mask = st.mask(valid, D + 1)
        for i in range(k, L):
            h = st.layer(i, h, mask, rope, bt.cache)
        z = st.head(h).argmax(-1)  # [B, D+1]
        y = torch.cat(drafts, 1) if D else z[:, :0]
        # counted drafts: up to the cap and up to the first drafted end-of-sequence
        j = torch.arange(D, device=dev)
        d_eff = caps.clone()
        if self.eos and D:
            is_eos = torch.isin(y, torch.tensor(sorted(self.eos), device=dev))
            first = torch.where(is_eos, j, D).min(1).values + 1
            d_eff = torch.minimum(d_eff, first)
        agree = (y == z[:, :D]) & (j[None, :] < d_eff[:, None])
        a = agree.long().cumprod(1).sum(1)
        keep = a + 1  # columns kept per row: x[p-1] and the accepted drafts
        width = int(keep.max())
        bt.cache.crop(-(D + 1 - width)) if width < D + 1 else None
        new = torch.arange(width, device=dev)[None, :] < keep[:, None]
        bt.valid = torch.cat([bt.valid, new], 1)
        bt.n_valid = bt.n_valid + keep
        bt.last = z.gather(1, a[:, None])[:, 0]
        bt.compact()
        return a.tolist(), d_eff.tolist(), y.tolist(), z.tolist()


def greedy_decode(model, prompts, max_new_tokens: int, *, eos_token_ids=None) -> SpecResult:
    """Plain greedy decoding, one full-model step per token, with the same layer stepping (the speed reference)."""
    return SelfSpeculativeDecoder(model, 1, 0, eos_token_ids=eos_token_ids).generate(prompts, max_new_tokens)


@dataclass(frozen=True)
class CalmResult:
    """Output of :meth:`CalmDecoder.generate` (rows in prompt order)."""

    tokens: list[np.ndarray]  # per row: generated ids
    exit_layers: list[np.ndarray]  # per row, per token: the layer (1-based) whose exit emitted it (L = full model)
    step_seconds: np.ndarray  # [n_steps] wall time of each batch step
    step_rows: np.ndarray  # [n_steps]
    prefill_seconds: float
    seconds: float

    @property
    def n_tokens(self) -> int:
        return int(sum(len(t) for t in self.tokens))


class CalmDecoder:
    """CALM-style early exit with state propagation (see module docstring).

    ``checked_layers``: layers (1-based, < L) whose exit is evaluated, in order; ``thresholds``: one value or one
    per checked layer; ``temperature``: one value or one per checked layer. ``propagate``: fill the skipped layers'
    keys/values from the exited hidden state (the only mode this decoder has; False is refused, naming the setting
    the token view of :func:`toolkit.analysis.llm.exits.from_llm_tokens` records).
    """

    def __init__(self, model, checked_layers: Sequence[int], thresholds, *, score: str = "max_prob",
                 temperature=1.0, exit_fn: ExitFn | None = None, eos_token_ids=None, propagate: bool = True):
        if propagate is not True:
            raise ValueError(f"propagate={propagate!r}: this decoder always propagates the skipped layers' keys/values "
                             f"(state propagation); a threshold chosen on a view built with propagate=False was costed "
                             f"for another runtime: choose it on a view with propagate=True")
        self.propagate = True
        self.st = LayerStepper(model)
        L = self.st.n_layers
        layers = [int(x) for x in checked_layers]
        if not layers or sorted(set(layers)) != layers or layers[0] < 1 or layers[-1] >= L:
            raise ValueError(f"checked_layers must be increasing layers in 1..{L - 1}, got {list(checked_layers)}")
        self.checked = {layer: e for e, layer in enumerate(layers)}
        self.thr = _per_layer(thresholds, len(layers), "thresholds")
        self.temp = _per_layer(temperature, len(layers), "temperature")
        if any(not (t > 0 and math.isfinite(t)) for t in self.temp):
            raise ValueError(f"temperature must be positive and finite, got {temperature}")
        if score not in CALM_SCORES:
            raise ValueError(f"unknown score {score!r}; choose one of {CALM_SCORES}")
        self.score = score
        self.exit = exit_fn or LogitLens(model)
        self.eos = _eos_set(model, eos_token_ids)
        # the latency profile's pieces one checked exit runs (latency.calm_run_ms(exit_pieces=))
        self.exit_pieces = ("exit", "confidence", "translator") if isinstance(self.exit, TunedExits) else \
            ("exit", "confidence")

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> CalmResult:
        prompts, bt, prefill = _prefill(self.st, prompts, max_new_tokens, self.eos, 0.5)
        dev = self.st.device
        exits = [[] for _ in prompts]
        secs, nrows = [], []
        while len(bt):
            t1 = time.perf_counter()
            tokens, layer = self._step(bt)
            done = []
            for b, row in enumerate(bt.rows):
                exits[row].append(layer[b])
                done.append(bt.emit(b, [tokens[b]]))
            bt.retire(done)
            _sync(dev)
            secs.append(time.perf_counter() - t1)
            nrows.append(len(done))
        return CalmResult([np.asarray(o, dtype=np.int64) for o in bt.out],
                          [np.asarray(x, dtype=np.int64) for x in exits], np.asarray(secs), np.asarray(nrows),
                          prefill, float(sum(secs)))

    def _step(self, bt: _Batch):
        st, L = self.st, self.st.n_layers
        B, dev = len(bt), bt.valid.device
        valid = torch.cat([bt.valid, torch.ones((B, 1), dtype=torch.bool, device=dev)], 1)
        mask = st.mask(valid, 1)
        h = st.embed(bt.last[:, None])
        rope = st.rope(h, bt.n_valid[:, None])
        running = torch.arange(B, device=dev)
        exited_h = torch.empty_like(h)  # [B, 1, H] exited hidden states, by row
        exited = running[:0]
        tokens = torch.empty(B, dtype=torch.long, device=dev)
        layer_of = torch.full((B,), L, dtype=torch.long, device=dev)
        for i in range(L):
            if len(exited) == 0:
                h = st.layer(i, h, mask, rope, bt.cache)
            elif len(running) == 0:
                bt.cache.update(*st.propagated_kv(i, exited_h, rope), i)
            else:
                fill = st.propagated_kv(i, exited_h[exited], (rope[0][exited], rope[1][exited]))
                view = _RowMergedCache(bt.cache, running, exited, fill)
                h = st.layer(i, h, mask[running], (rope[0][running], rope[1][running]), view)
            e = self.checked.get(i + 1)
            if e is None or len(running) == 0:
                continue
            logits = self.exit(i + 1, h[:, -1])
            go = token_confidence(logits, self.score, self.temp[e]) >= self.thr[e]
            if not bool(go.any()):
                continue
            rows = running[go]
            tokens[rows] = logits[go].argmax(-1)
            layer_of[rows] = i + 1
            exited_h[rows] = h[go]
            exited = torch.sort(torch.cat([exited, rows])).values
            running, h = running[~go], h[~go]
        if len(running):
            tokens[running] = st.head(h[:, -1]).argmax(-1)
        bt.valid = valid
        bt.n_valid = bt.n_valid + 1
        bt.last = tokens
        return tokens.tolist(), layer_of.tolist()


def encode_prompts(tokenizer, texts: Sequence[str], *, chat_template: bool = True) -> list[list[int]]:
    """Token ids of each prompt: as a user turn of the model's chat template (generation prompt added), or plain."""
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; set chat_template false in the policy")
    out = []
    for t in texts:
        if chat_template:
            t = tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                              add_generation_prompt=True)
            out.append(tokenizer(t, add_special_tokens=False)["input_ids"])
        else:
            out.append(tokenizer(t)["input_ids"])
    return out


def _per_layer(value, n: int, name: str) -> list[float]:
    v = np.asarray(value, dtype=np.float64).ravel()
    if v.size == 1:
        v = np.full(n, v.item())
    if v.size != n:
        raise ValueError(f"{name}: give one value or one per checked layer ({n}), got {v.size}")
    if np.isnan(v).any():
        raise ValueError(f"{name} contains NaN")
    return [float(x) for x in v]


# --------------------------------------------------------------------------------------------------------------
# Policies (``toolkit llm-generate``): :class:`toolkit.policy.Policy` with method ``calm`` or ``self_speculative``


def load_exit(policy: Policy, model, *, weights: str | None = None) -> ExitFn:
    """The exit callable a policy names: the logit lens, or the tuned exits in its folder (whatever the folder is
    called), refused unless trained on ``model`` (``weights``: its fingerprint, when computed before a cast)."""
    ex = policy.params["exit"]
    if ex["kind"] == "lens":
        return LogitLens(model)
    return TunedExits.from_pretrained(ex["folder"], model, weights=weights)


def decoder_from_policy(policy: Policy, model, *, weights: str | None = None, source: str = "policy"):
    """A SelfSpeculativeDecoder or CalmDecoder for a policy, on the weights it was chosen for.

    ``weights``: the :func:`~toolkit.nn.common.parts.weights_sha256` of ``model`` computed before a cast (e.g. to
    bfloat16); default: computed here. Refused, as a :class:`~toolkit.policy.PolicyError` naming ``source`` and the
    key: an encoder policy, a model the decoders cannot step, layers beyond the model's, other weights than the
    policy records (and tuned exits trained on other weights)."""
    from toolkit.nn.common.parts import weights_sha256
    from toolkit.nn.encoder.runtime import check_policy_weights
    from toolkit.policy import LLM_METHODS, PolicyError

    if policy.method not in LLM_METHODS:
        raise PolicyError(f"{source}: key 'method' is {policy.method!r}, an encoder policy: run it with "
                          f"`toolkit predict`")
    try:
        stepper = LayerStepper(model)
    except TypeError as e:
        raise PolicyError(f"{source}: key 'models' entry 0 ({policy.model!r}): {e}") from None
    policy.check_layers(stepper.n_layers, source)
    weights = weights or weights_sha256(model)
    check_policy_weights(policy, [model], source, weights=[weights])
    exit_fn = load_exit(policy, model, weights=weights)
    p = policy.params
    if policy.method == "self_speculative":
        return SelfSpeculativeDecoder(model, p["draft_layer"], p["draft_length"], exit_fn)
    if p["propagate"] is not True:
        raise PolicyError(f"{source}: key 'propagate' is {p['propagate']!r}: the CALM decoder always propagates the "
                          f"skipped layers' keys/values, so this policy's threshold (chosen on a view costed without "
                          f"propagation) would not give the speed-up it was chosen for; choose it on a view with "
                          f"propagate=True")
    return CalmDecoder(model, list(p["checked_layers"]), list(p["thresholds"]), score=p["score"],
                       temperature=list(p["temperature"]), exit_fn=exit_fn, propagate=p["propagate"])
