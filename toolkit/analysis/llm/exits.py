"""Offline analyses of a decoder-only LLM's per-token exits (numpy only), from an :class:`LLMTokenCache`.

Everything is measured on the full model's own greedy trajectory (teacher forced).

- **Reliability of intermediate layers** (:func:`layer_reliability`, :func:`layer_reliability_curve`): per layer,
  how often its exit's top-1 equals the full model's token (agreement), and whether its confidence predicts that
  (ECE with the toolkit's binning convention, AUROC; one layer's reliability diagram).
- **CALM-style per-token early exit** on the engine: :func:`from_llm_tokens` (registered:
  ``engine.staged(token_cache, family=..., checked_layers=...)``) is the engine's view, so ``engine.sweep`` is the
  exact sweep (every distinct threshold), ``engine.choose(cal, rule="target", target=0.95, metric="agreement")``
  the cheapest global threshold reaching an agreement on cal, ``engine.oracle`` the earliest agreeing layer, and
  every interval resamples prompts; :func:`calm_layer_thresholds` (per-token specific) makes each checked layer as
  reliable as asked. A token stops at the first checked layer whose confidence clears the threshold (global, or
  one per layer); its cost is :func:`~toolkit.analysis.cost.causal.calm_token_flops` (layers
  run, every exit head evaluated on the way, K/V projections of the skipped layers); its outcome is agreement with
  the full model's token. On the full model's trajectory this *estimates* CALM: once an exited token differs, a real
  decode continues from another context (a real runtime measures the gap).
- **Self-speculative decoding** (:func:`self_speculative`, :func:`self_speculative_blocks`,
  :func:`acceptance_counts`, :func:`self_speculative_by_prompt`, :func:`memory_bound_ceiling`): exact, see below.

Intervals over prompts for all three: :mod:`toolkit.analysis.llm.intervals`.

Self-speculative blocks (INTERFACES section 2; LayerSkip). Draft with layer ``k``'s exit, ``d`` tokens per block. A
block starting at generated position ``p`` drafts ``d' = min(d, max_new_tokens - 1 - p)`` tokens, leaving room for the
verifier's token (a drafted end-of-sequence does not stop the draft; with one token of budget left, ``d' = 0`` and the
block is one plain full step); ``a`` = the number of leading positions ``p .. p+d'-1`` whose layer-k top-1 equals the
full model's token (while the draft agrees, its context is the true prefix, so its layer-<=k states are the full
pass's); the verifier emits the correction (or the bonus token when all ``d'`` agree), unless the accepted tokens
already end the continuation; the next block starts at ``p + a + 1``. This is what the real decoder
(:class:`toolkit.nn.causal.decode.SelfSpeculativeDecoder`) does, block for block. Its FLOPs are
:func:`~toolkit.analysis.cost.causal.passes_flops` of :func:`~toolkit.analysis.cost.causal.self_speculative_passes` (the
block's passes, one definition shared with the decoder) with ``n_prompt - 1 + p`` cached positions; the
reference is :func:`~toolkit.analysis.cost.causal.full_token_flops` per token at ``n_prompt + t`` attended positions
(the prompt's prefill, common to both, is left out). The output equals the full model's greedy output.

>>> from toolkit.analysis.llm.exits import _run_lengths
>>> _run_lengths(np.array([[1], [1], [0], [1], [1]], bool), np.array([0, 3, 5]))[:, 0].tolist()
[2, 1, 0, 2, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit._api import keyword_options, renamed
from toolkit.analysis.cost.causal import (
    calm_token_flops,
    full_token_flops,
    head_flops,
    layer_weight_flops,
    passes_flops,
    passes_reads,
    self_speculative_passes,
    translator_flops,
)
from toolkit.analysis.engine import MeanMetrics, Staged, staged
from toolkit.analysis.engine.results import _Table, html_table, text_repr
from toolkit.analysis.metrics.calibration import confidence_ece, confidence_reliability_curve
from toolkit.analysis.scores.tokens import TOKEN_SCORES, token_scores
from toolkit.caches.identity import cache_identity
from toolkit.caches.tokens import LLMTokenCache


# ------------------------------------------------------------------------------------------------- confidence
@keyword_options
def layer_confidence(cache: LLMTokenCache, family: str, *, score: str = "max_prob",
                     temperature: float = 1.0) -> np.ndarray:
    """``[S, L]`` confidence of every layer's exit at every generated token, higher = more confident (named
    ``confidence`` before 0.3; :func:`toolkit.analysis.scores.confidence` is the one on classification logits).

    Scores as in :mod:`toolkit.analysis.scores.tokens` (``max_prob``, ``margin``, ``energy``, ``entropy``; the last
    two negated); ``temperature`` must be one of the cache's.
    """
    if score not in TOKEN_SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {TOKEN_SCORES}")
    _, st = cache.family(family)
    S, L, F = st.shape

    class _Flat:  # token_scores reads ``.stats`` [steps, F]: every (token, layer) pair is one step
        stats = st.reshape(S * L, F)

    s = token_scores(_Flat, cache.temperatures, score=score, temperature=temperature).reshape(S, L)
    return -s if score in ("energy", "entropy") else s


__getattr__ = renamed({"confidence": ("layer_confidence", layer_confidence)}, module=__name__)


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count one half); NaN if one class is empty."""
    from scipy.stats import rankdata

    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def layer_reliability(cache: LLMTokenCache, family: str, *, score: str = "max_prob", temperature: float = 1.0,
                      n_bins: int = 15) -> pd.DataFrame:
    """Per layer 1..L-1: agreement with the full model's token, mean confidence, ECE (confidence vs agreement,
    equal-width bins, :mod:`toolkit.analysis.metrics.calibration`'s convention) and AUROC of confidence for agreement.

    ECE needs a probability: ``score`` must be ``max_prob`` or ``margin`` for it (NaN otherwise).
    """
    agree = cache.agreement(family)[:, :-1]
    conf = layer_confidence(cache, family, score=score, temperature=temperature)[:, :-1]
    prob = score in ("max_prob", "margin")
    rows = [{"family": family, "layer": e + 1, "agreement": float(agree[:, e].mean()),
             "confidence": float(conf[:, e].mean()),
             "ece": confidence_ece(np.clip(conf[:, e], 0, 1), agree[:, e], n_bins=n_bins) if prob else float("nan"),
             "auroc": _auroc(conf[:, e], agree[:, e])} for e in range(agree.shape[1])]
    return pd.DataFrame(rows)


def layer_reliability_curve(cache: LLMTokenCache, family: str, layer: int, *, score: str = "max_prob",
                            temperature: float = 1.0, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin data of one layer's reliability diagram (confidence against agreement with the full model's token),
    in :func:`toolkit.analysis.metrics.calibration.reliability_curve`'s columns (``accuracy`` = agreement in the bin), so
    :func:`toolkit.analysis.plots.curves.plot_reliability` draws it with its bin counts."""
    if score not in ("max_prob", "margin"):
        raise ValueError(f"a reliability diagram needs a probability: score 'max_prob' or 'margin', got {score!r}")
    if not 1 <= int(layer) <= cache.n_layers:
        raise ValueError(f"layer must lie in 1..{cache.n_layers}, got {layer}")
    conf = np.clip(layer_confidence(cache, family, score=score, temperature=temperature)[:, int(layer) - 1], 0, 1)
    return confidence_reliability_curve(conf, cache.agreement(family)[:, int(layer) - 1], n_bins=n_bins)


def full_model_reads(cache: LLMTokenCache) -> float:
    """Weights read by one greedy decoding step (all layers and the LM head), in FLOPs at one position without
    attention (2 x their parameters): the unit of ``reads_per_token`` in :func:`self_speculative`."""
    return cache.n_layers * layer_weight_flops(cache.dims) + float(head_flops(cache.dims))


def memory_bound_ceiling(cache: LLMTokenCache, family: str, layer: int, draft_length: int) -> float:
    """The memory-bound speed-up of self-speculative decoding were every draft accepted: ``d + 1`` tokens per block
    for the block's weight reads (:func:`~toolkit.analysis.cost.causal.passes_reads` of its passes) against ``d + 1``
    greedy steps. No exit at ``layer`` can do better.
"""
    passes = self_speculative_passes(int(layer), int(draft_length), cache.n_layers)
    reads = passes_reads(passes, cache.dims, exit_overhead=exit_overhead_flops(cache, family))
    return (int(draft_length) + 1) * full_model_reads(cache) / reads


def exit_overhead_flops(cache: LLMTokenCache, family: str) -> float:
    """FLOPs an exit of ``family`` spends before the LM head: a tuned exit's translator, nothing for the lens."""
    kind = (cache.families.get(family) or {}).get("kind")
    return translator_flops(cache.dims) if kind == "tuned_exits" else 0.0


# ------------------------------------------------------------------------------------------------- CALM
def from_llm_tokens(cache: LLMTokenCache, *, family: str | None = None, score: str = "max_prob",
                    temperature: float = 1.0, checked_layers=None, propagate: bool = True) -> Staged:
    """The sweep engine's view of an LLM token cache (``engine.staged(cache, family=...)``): CALM-style per-token
    exit of ``family`` (default: the cache's first family) at ``checked_layers`` (default: every layer; the last
    layer is always a stage), one "example" per generated token (id ``<example_id>#<step>``), stages ``L<layer>``,
    metric ``agreement`` with the full model's token (also the per-token quality, so ``engine.oracle`` is the
    earliest agreeing layer), reference the full model.

    Cost per token (:func:`~toolkit.analysis.cost.causal.calm_token_flops`): layers run at its attended positions,
    every checked exit's head up to the exit (and a tuned exit's translator before each), and (``propagate``) the
    skipped layers' K/V projections. ``meta['propagate']`` records that setting: an operating point chosen on the view
    holds only for views built the same way, and a policy made from it carries it to the runtime (the
    :class:`~toolkit.nn.causal.decode.CalmDecoder` always propagates, so it refuses ``propagate=False``).
    ``clusters`` = the token's prompt: every engine interval resamples prompts and
    keeps a continuation's tokens together. Every engine function applies (``sweep``, ``choose`` on cal, e.g.
    ``rule="target"``, ``evaluate`` on test, ``oracle``, ``bootstrap_bands``, the explorer).
    """
    family = cache.family_names[0] if family is None else family
    if family not in cache.family_names:
        raise KeyError(f"exit family {family!r} is not in the cache; it holds {cache.family_names}")
    if not isinstance(propagate, (bool, np.bool_)):
        raise TypeError(f"propagate must be True or False (K/V state propagation of the skipped layers, costed), got "
                        f"{propagate!r}")
    L = cache.n_layers
    layers = np.arange(1, L + 1) if checked_layers is None else np.unique(np.append(checked_layers, L)).astype(int)
    if layers.min() < 1 or layers.max() > L:
        raise ValueError(f"checked_layers must lie in 1..{L}")
    idx = layers - 1
    conf = layer_confidence(cache, family, score=score, temperature=temperature)[:, idx]
    agree = cache.agreement(family)[:, idx].astype(np.float64)
    cost = calm_token_flops(cache.positions[:, None], layers[None, :], cache.dims, checked_layers=layers[:-1],
                            propagate=propagate)
    # a tuned exit's translator runs before each intermediate exit evaluated (the last layer has none)
    cost = cost + exit_overhead_flops(cache, family) * np.minimum(np.arange(1, len(layers) + 1), len(layers) - 1)
    tok_ids = np.char.add(np.char.add(np.repeat(cache.example_ids, cache.lengths), "#"), cache.steps.astype(str))
    meta = {"kind": "llm_tokens", "task": cache.meta.get("task"), "split": cache.meta.get("split"),
            "identity": cache_identity(cache),
            "family": family, "exit_kind": (cache.families.get(family) or {}).get("kind"), "score": score,
            "temperature": float(temperature), "propagate": bool(propagate), "cost_unit": "FLOPs"}
    return Staged(confidence=conf.astype(np.float64), cost=np.asarray(cost, dtype=np.float64), stats=agree[:, :, None],
                  metrics=MeanMetrics(("agreement",)),
                  reference_cost=np.asarray(full_token_flops(cache.positions, cache.dims), dtype=np.float64),
                  reference=f"full model (L{L})", loss=1.0 - agree, quality=agree,
                  stage_names=tuple(f"L{k}" for k in layers), layers=layers.astype(np.float64),
                  model_index=np.zeros(len(layers), dtype=int), example_ids=tok_ids, metric="agreement", meta=meta,
                  clusters=cache.example_index)


staged.register(LLMTokenCache, from_llm_tokens)


def calm_layer_thresholds(cal: Staged, targets) -> np.ndarray:
    """Per-layer thresholds ``[A, E]`` (last column +inf, unused) on a token view (:func:`from_llm_tokens`): for each
    target ``alpha``, stage e's threshold is the lowest confidence at which the cal tokens clearing it at that stage
    agree with the full model at rate ``>= alpha`` (+inf where no threshold reaches it): each layer is made as
    reliable as asked, on cal. Apply a row with ``engine.evaluation(test, row)`` (per-stage thresholds)."""
    targets = np.atleast_1d(np.asarray(targets, dtype=np.float64))
    S, E = cal.confidence.shape
    out = np.full((len(targets), E), np.inf)
    for e in range(E - 1):
        order = np.argsort(-cal.confidence[:, e], kind="stable")
        c, a = cal.confidence[order, e], cal.stats[order, e, 0]
        prec = np.cumsum(a) / np.arange(1, S + 1)
        ends = np.flatnonzero(np.append(c[1:] != c[:-1], True))  # last token of each group of equal confidence
        rc = np.maximum.accumulate(prec[ends][::-1])[::-1]  # best precision of any cut at or below this one
        # the deepest cut whose precision reaches alpha: rc is non-increasing, so count cuts with rc >= alpha
        k = np.searchsorted(-rc, -(targets - 1e-12), side="right")  # the target rule's tolerance
        ok = k > 0
        out[ok, e] = c[ends[k[ok] - 1]]
    return out


# ------------------------------------------------------------------------------------------------- self-speculative
def _run_lengths(agree: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``[S, K]``: consecutive agreeing tokens starting at each token, within its own continuation."""
    S = agree.shape[0]
    ends = np.repeat(offsets[1:], np.diff(offsets))  # [S] one past each token's continuation
    stop = np.where(agree, S, np.arange(S)[:, None])  # index of a disagreement, S elsewhere
    next_stop = np.minimum.accumulate(stop[::-1], axis=0)[::-1]
    return np.minimum(next_stop, ends[:, None]) - np.arange(S)[:, None]


def _speculate(cache: LLMTokenCache, family: str, layers: np.ndarray, draft_lengths: np.ndarray, *,
               per_prompt: bool = False):
    """Walk every (layer, draft length) pair's blocks on all continuations at once.

    Returns per pair ``[K, D]`` (``[K, D, N]`` per prompt with ``per_prompt``): blocks, drafted, accepted, emitted,
    flops, reads; and the per-block records ``(k, d, example, start, accepted, drafted, emitted, flops, reads)`` in walk order
    (``start`` a token index into the cache).
    """
    L = cache.n_layers
    if layers.min() < 1 or layers.max() >= L:
        raise ValueError(f"draft layers must lie in 1..{L - 1}")
    if draft_lengths.min() < 1:
        raise ValueError("draft lengths must be >= 1")
    run = _run_lengths(cache.agreement(family)[:, layers - 1], cache.offsets)  # [S, K]
    starts, ends = cache.offsets[:-1], cache.offsets[1:]
    max_new = cache.max_new_tokens[cache.example_index]  # [S] the budget of each token's prompt
    steps = cache.steps
    context = cache.n_prompt.astype(np.float64)[cache.example_index] - 1 + steps  # cached positions at a block start
    Dmax = int(draft_lengths.max())
    overhead = exit_overhead_flops(cache, family)  # per exit evaluation (a tuned exit's translator)
    # each block's passes (llm_cost.self_speculative_passes, shared with the decoder) for every (layer, d'); d' =
    # min(d, max_new - 1 - t) needs every d' in 0..Dmax (d' = 0: one plain full step). FLOPs [K, Dmax+1, S] at each
    # start's context; weights read [K, Dmax+1] (a pass reads its layers once, whatever its positions)
    passes = [[self_speculative_passes(int(k), dd, L) for dd in range(Dmax + 1)] for k in layers]
    table = np.stack([np.stack([passes_flops(ps, context, cache.dims, exit_overhead=overhead) for ps in row])
                      for row in passes])
    read_table = np.array([[passes_reads(ps, cache.dims, exit_overhead=overhead) for ps in row] for row in passes])
    K, D, N = len(layers), len(draft_lengths), cache.n_examples
    p = np.broadcast_to(starts, (K, D, N)).copy()
    end = np.broadcast_to(ends, (K, D, N))
    kk = np.arange(K)[:, None, None] * np.ones((1, D, N), dtype=int)
    dd = np.broadcast_to(draft_lengths[None, :, None], (K, D, N))
    totals = {name: np.zeros((K, D, N)) for name in ("blocks", "drafted", "accepted", "emitted", "flops", "reads")}
    records = []
    active = p < end
    while active.any():
        ka, da, na = np.nonzero(active)
        pa = p[ka, da, na]
        d_eff = np.minimum(dd[ka, da, na], max_new[pa] - 1 - steps[pa])  # room for the verifier's token
        a = np.minimum(run[pa, kk[ka, da, na]], d_eff)
        emitted = a + (pa + a < end[ka, da, na])
        cost, reads = table[ka, d_eff, pa], read_table[ka, d_eff]
        for name, v in (("blocks", 1), ("drafted", d_eff), ("accepted", a), ("emitted", emitted), ("flops", cost),
                        ("reads", reads)):
            totals[name][ka, da, na] += v  # one block per active (layer, length, prompt): no repeated index
        records.append((ka, da, na, pa, a, d_eff, emitted, cost, reads))
        p[ka, da, na] = pa + emitted
        active = p < end
    cat = [np.concatenate(x) for x in zip(*records)] if records else [np.zeros(0, int)] * 9
    return (totals if per_prompt else {name: v.sum(-1) for name, v in totals.items()}), cat


@dataclass(frozen=True, repr=False, eq=False)
class SpeculativeBlocks(_Table):
    """Every self-speculative block of one (draft layer, draft length) on a token cache, in decoding order per
    prompt: ``example`` (prompt index), ``example_id``, ``start`` (generated position of the block's first token),
    ``drafted``, ``accepted``, ``emitted``, ``flops`` and ``reads`` (model weights read, in FLOPs at one position:
    :func:`~toolkit.analysis.cost.causal.passes_reads`). The decoder's result counts the same per block
    (:class:`toolkit.nn.causal.decode.SpecResult`)."""

    frame: pd.DataFrame
    family: str
    layer: int
    draft_length: int
    title = "self-speculative blocks"

    def by_prompt(self, column: str) -> list[np.ndarray]:
        """``column`` of each prompt's blocks, in order (one array per prompt)."""
        n = int(self.frame.attrs["n_examples"])
        ex = self.frame["example"].to_numpy()
        bounds = np.searchsorted(ex, np.arange(n + 1))
        v = self.frame[column].to_numpy()
        return [v[bounds[i]:bounds[i + 1]] for i in range(n)]


def self_speculative_blocks(cache: LLMTokenCache, family: str, layer: int, draft_length: int) -> SpeculativeBlocks:
    """Every block of self-speculative decoding with ``family``'s exit at ``layer``, ``draft_length`` tokens per
    block, one row each (see :class:`SpeculativeBlocks`). A runtime must reproduce these block by block."""
    _, (_, _, ex, start, acc, dr, em, flops, reads) = _speculate(cache, family, np.array([int(layer)]),
                                                                 np.array([int(draft_length)]))
    o = np.lexsort((start, ex))
    frame = pd.DataFrame({"example": ex[o], "example_id": cache.example_ids[ex[o]], "start": cache.steps[start[o]],
                          "drafted": dr[o], "accepted": acc[o], "emitted": em[o], "flops": flops[o],
                          "reads": reads[o]})
    frame.attrs["n_examples"] = cache.n_examples
    return SpeculativeBlocks(frame=frame, family=family, layer=int(layer), draft_length=int(draft_length))


def acceptance_counts(cache: LLMTokenCache, family: str, layer: int, draft_length: int) -> list[np.ndarray]:
    """Per prompt, the accepted draft tokens of each self-speculative block in order (drafting with ``family``'s
    exit at ``layer``, ``draft_length`` tokens per block). A runtime must reproduce these block by block."""
    return self_speculative_blocks(cache, family, layer, draft_length).by_prompt("accepted")


@keyword_options
def self_speculative(cache: LLMTokenCache, family: str, *, layers=None, draft_lengths=range(1, 9)) -> pd.DataFrame:
    """Exact self-speculative decoding for every (draft layer, draft length): one row each with ``blocks``,
    ``full_passes_per_token`` (verification passes through all layers per emitted token; greedy decoding needs 1),
    ``acceptance`` (accepted / drafted tokens), ``accepted_per_block``, ``tokens_per_block`` (emitted / blocks),
    ``flops_per_token``, ``speedup`` (full model's FLOPs / self-speculative FLOPs, same tokens),
    ``reads_per_token`` (model weights read per emitted token, in full-model reads: a block reads layers 1..k, the
    exit and its head once per draft step, then all L layers (the last draft token has not been through 1..k) and
    the head once; greedy decoding reads the whole model once per token: the passes of
    :func:`~toolkit.analysis.cost.causal.self_speculative_passes`, which the decoder shares) and
    ``memory_bound_speedup`` (1 / that).

    In FLOPs every emitted token still passes all L layers once (1..k drafting, k+1..L verifying), and each block
    adds d draft heads and d + 1 verify heads against one head per token: the FLOPs speed-up is below 1 by
    construction, so FLOPs cannot rank this method. Where decoding is memory-bound (a pass costs its weight reads,
    about the same for one position or a few), its gain is fewer weight reads per token: ``memory_bound_speedup`` is
    that latency proxy, and the criterion to choose a pair by on cal."""
    layers = np.arange(1, cache.n_layers) if layers is None else np.asarray(layers, dtype=int)
    draft_lengths = np.asarray(list(draft_lengths), dtype=int)
    tot, _ = _speculate(cache, family, layers, draft_lengths)
    ref = float(np.sum(full_token_flops(cache.positions, cache.dims)))
    K, D = len(layers), len(draft_lengths)
    return pd.DataFrame({"family": family, "layer": np.repeat(layers, D), "draft_length": np.tile(draft_lengths, K),
                         "blocks": tot["blocks"].ravel().astype(int),
                         "full_passes_per_token": (tot["blocks"] / cache.n_tokens).ravel(),
                         "acceptance": (tot["accepted"] / tot["drafted"]).ravel(),
                         "accepted_per_block": (tot["accepted"] / tot["blocks"]).ravel(),
                         "tokens_per_block": (tot["emitted"] / tot["blocks"]).ravel(),
                         "flops_per_token": (tot["flops"] / cache.n_tokens).ravel(),
                         "speedup": (ref / tot["flops"]).ravel(),
                         "reads_per_token": (tot["reads"] / (cache.n_tokens * full_model_reads(cache))).ravel(),
                         "memory_bound_speedup": (cache.n_tokens * full_model_reads(cache) / tot["reads"]).ravel()})


@dataclass(frozen=True, eq=False)
class SpeculativeChoice:
    """A (draft layer, draft length) chosen on cal by the memory-bound speed-up (the latency proxy; FLOPs cannot
    rank self-speculative pairs), with the :func:`self_speculative` table it was chosen from."""

    family: str
    layer: int
    draft_length: int
    table: pd.DataFrame  # every (layer, draft length) on cal

    @property
    def row(self) -> pd.Series:
        t = self.table
        return t[(t.layer == self.layer) & (t.draft_length == self.draft_length)].iloc[0]

    @property
    def cases_above_one(self) -> int:
        """Pairs whose memory-bound speed-up on cal exceeds 1x."""
        return int((self.table.memory_bound_speedup > 1).sum())

    def to_dict(self) -> dict:
        r = self.row
        return {"family": self.family, "layer": self.layer, "draft_length": self.draft_length,
                "cal_memory_bound_speedup": float(r.memory_bound_speedup), "cal_speedup": float(r.speedup),
                "cal_acceptance": float(r.acceptance), "cases_above_one": self.cases_above_one,
                "cases": len(self.table)}

    def _repr_html_(self) -> str:
        return html_table("Self-speculative pair (chosen on cal)", self.to_dict())

    def __repr__(self) -> str:
        return text_repr("Self-speculative pair (chosen on cal; every pair in .table):",
                         pd.DataFrame([self.to_dict()]))


def choose_self_speculative(cal: LLMTokenCache, family: str, *, layers=None,
                            draft_lengths=range(1, 9)) -> SpeculativeChoice:
    """The (draft layer, draft length) with the best memory-bound speed-up on ``cal`` (every pair of
    :func:`self_speculative`; ties: the first in layer, then length order). A cache of split ``test`` is refused:
    a pair picked on test is an upper bound, not a choice."""
    if (cal.meta or {}).get("split") == "test":
        raise ValueError("choose the pair on a cal cache, not test (a pair picked on test is an upper bound)")
    table = self_speculative(cal, family, layers=layers, draft_lengths=draft_lengths)
    best = table.iloc[int(table.memory_bound_speedup.to_numpy().argmax())]
    return SpeculativeChoice(family, int(best.layer), int(best.draft_length), table)


def self_speculative_by_prompt(cache: LLMTokenCache, family: str, layer: int, draft_length: int) -> pd.DataFrame:
    """One (draft layer, draft length) per prompt: ``example_id``, ``tokens`` (its continuation's length),
    ``blocks``, ``drafted``, ``accepted``, ``emitted``, ``flops`` (self-speculative) and ``reference_flops`` (the
    full model's, same tokens). Column sums give :func:`self_speculative`'s row; ratios of resampled sums give
    intervals over prompts (:mod:`toolkit.analysis.llm.intervals`)."""
    tot, _ = _speculate(cache, family, np.array([int(layer)]), np.array([int(draft_length)]), per_prompt=True)
    ref = np.bincount(cache.example_index, weights=full_token_flops(cache.positions, cache.dims),
                      minlength=cache.n_examples)
    return pd.DataFrame({"example_id": cache.example_ids, "tokens": cache.lengths,
                         **{k: tot[k][0, 0].astype(np.int64) for k in ("blocks", "drafted", "accepted", "emitted")},
                         "flops": tot["flops"][0, 0], "reads": tot["reads"][0, 0], "reference_flops": ref})
