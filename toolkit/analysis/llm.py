"""Offline analyses of a decoder-only LLM's per-token exits (numpy only), from an :class:`LLMTokenCache`.

Everything is measured on the full model's own greedy trajectory (teacher forced).

- **Reliability of intermediate layers** (:func:`layer_reliability`, :func:`layer_reliability_curve`): per layer,
  how often its exit's top-1 equals the full model's token (agreement), and whether its confidence predicts that
  (ECE with the toolkit's binning convention, AUROC; one layer's reliability diagram).
- **CALM-style per-token early exit** (:func:`token_staged`, :func:`calm_sweep`, :func:`calm_threshold`,
  :func:`calm_layer_thresholds`, :func:`calm_evaluate`, :func:`calm_oracle`): a token stops at the first checked layer whose confidence clears the
  threshold (global, or one per layer); its cost is :func:`~toolkit.analysis.llm_cost.calm_token_flops` (layers
  run, every exit head evaluated on the way, K/V projections of the skipped layers); its outcome is agreement with
  the full model's token. On the full model's trajectory this *estimates* CALM: once an exited token differs, a real
  decode continues from another context (a real runtime measures the gap).
- **Self-speculative decoding** (:func:`acceptance_counts`, :func:`self_speculative`,
  :func:`self_speculative_by_prompt`): exact, see below.

Intervals over prompts for all three: :mod:`toolkit.analysis.llm_intervals`.

Self-speculative blocks (INTERFACES section 2; LayerSkip). Draft with layer ``k``'s exit, ``d`` tokens per block. A
block starting at generated position ``p`` drafts ``d' = min(d, max_new_tokens - 1 - p)`` tokens, leaving room for the
verifier's token (a drafted end-of-sequence does not stop the draft; with one token of budget left, ``d' = 0`` and the
block is one plain full step); ``a`` = the number of leading positions ``p .. p+d'-1`` whose layer-k top-1 equals the
full model's token (while the draft agrees, its context is the true prefix, so its layer-<=k states are the full
pass's); the verifier emits the correction (or the bonus token when all ``d'`` agree), unless the accepted tokens
already end the continuation; the next block starts at ``p + a + 1``. This is what the real decoder
(:class:`toolkit.nn.llm_runtime.SelfSpeculativeDecoder`) does, block for block. Its FLOPs are
:func:`~toolkit.analysis.llm_cost.passes_flops` of :func:`~toolkit.analysis.llm_cost.self_speculative_passes` (the
block's passes, one definition shared with the decoder) with ``n_prompt - 1 + p`` cached positions; the
reference is :func:`~toolkit.analysis.llm_cost.full_token_flops` per token at ``n_prompt + t`` attended positions
(the prompt's prefill, common to both, is left out). The output equals the full model's greedy output.

The CALM arrays come as a :class:`TokenStaged` whose fields are those of the sweep engine's ``Staged``
(INTERFACES section 1): one "example" per generated token, stages = checked layers, outcome = agreement (K = 1).
:func:`from_llm_tokens` (registered: ``engine.staged(token_cache, family=...)``) is the engine's
view of it, so :func:`calm_sweep` is the engine's exact sweep (every distinct threshold, no grid) and every engine
function (choose on cal, evaluate on test, bands, the explorer) applies to per-token exits.

>>> from toolkit.analysis.llm import _run_lengths
>>> _run_lengths(np.array([[1], [1], [0], [1], [1]], bool), np.array([0, 3, 5]))[:, 0].tolist()
[2, 1, 0, 2, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calibration import confidence_ece, confidence_reliability_curve
from .engine import MeanMetrics, Staged, staged
from .engine.results import _Table
from .engine.curves import sweep
from .identity import cache_identity
from .llm_cache import LLMTokenCache
from .llm_cost import (
    calm_token_flops,
    full_token_flops,
    head_flops,
    layer_weight_flops,
    passes_flops,
    passes_reads,
    self_speculative_passes,
    translator_flops,
)
from .token_scores import TOKEN_SCORES, token_scores


# ------------------------------------------------------------------------------------------------- confidence
def confidence(cache: LLMTokenCache, family: str, score: str = "max_prob", temperature: float = 1.0) -> np.ndarray:
    """``[S, L]`` confidence of every layer's exit at every generated token, higher = more confident.

    Scores as in :mod:`toolkit.analysis.token_scores` (``max_prob``, ``margin``, ``energy``, ``entropy``; the last
    two negated); ``temperature`` must be one of the cache's.
    """
    if score not in TOKEN_SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {TOKEN_SCORES}")
    _, st = cache.family(family)
    S, L, F = st.shape

    class _Flat:  # token_scores reads ``.stats`` [steps, F]: every (token, layer) pair is one step
        stats = st.reshape(S * L, F)

    s = token_scores(_Flat, cache.temperatures, score, temperature).reshape(S, L)
    return -s if score in ("energy", "entropy") else s


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
    equal-width bins, :mod:`toolkit.analysis.calibration`'s convention) and AUROC of confidence for agreement.

    ECE needs a probability: ``score`` must be ``max_prob`` or ``margin`` for it (NaN otherwise).
    """
    agree = cache.agreement(family)[:, :-1]
    conf = confidence(cache, family, score, temperature)[:, :-1]
    prob = score in ("max_prob", "margin")
    rows = [{"family": family, "layer": e + 1, "agreement": float(agree[:, e].mean()),
             "confidence": float(conf[:, e].mean()),
             "ece": confidence_ece(np.clip(conf[:, e], 0, 1), agree[:, e], n_bins) if prob else float("nan"),
             "auroc": _auroc(conf[:, e], agree[:, e])} for e in range(agree.shape[1])]
    return pd.DataFrame(rows)


def layer_reliability_curve(cache: LLMTokenCache, family: str, layer: int, *, score: str = "max_prob",
                            temperature: float = 1.0, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin data of one layer's reliability diagram (confidence against agreement with the full model's token),
    in :func:`toolkit.analysis.calibration.reliability_curve`'s columns (``accuracy`` = agreement in the bin), so
    :func:`toolkit.analysis.plots.plot_reliability` draws it with its bin counts."""
    if score not in ("max_prob", "margin"):
        raise ValueError(f"a reliability diagram needs a probability: score 'max_prob' or 'margin', got {score!r}")
    if not 1 <= int(layer) <= cache.n_layers:
        raise ValueError(f"layer must lie in 1..{cache.n_layers}, got {layer}")
    conf = np.clip(confidence(cache, family, score, temperature)[:, int(layer) - 1], 0, 1)
    return confidence_reliability_curve(conf, cache.agreement(family)[:, int(layer) - 1], n_bins)


def full_model_reads(cache: LLMTokenCache) -> float:
    """Weights read by one greedy decoding step (all layers and the LM head), in FLOPs at one position without
    attention (2 x their parameters): the unit of ``reads_per_token`` in :func:`self_speculative`."""
    return cache.n_layers * layer_weight_flops(cache.dims) + float(head_flops(cache.dims))


def memory_bound_ceiling(cache: LLMTokenCache, family: str, layer: int, draft_length: int) -> float:
    """The memory-bound speed-up of self-speculative decoding were every draft accepted: ``d + 1`` tokens per block
    for the block's weight reads (:func:`~toolkit.analysis.llm_cost.passes_reads` of its passes) against ``d + 1``
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
@dataclass(frozen=True)
class TokenStaged:
    """The sweep engine's ``Staged`` fields for per-token early exit (one row per generated token)."""

    confidence: np.ndarray  # [S, E] higher = more confident; the last stage's column is ignored
    cost: np.ndarray  # [S, E] FLOPs of the token if it exits at stage e (calm_token_flops)
    stats: np.ndarray  # [S, E, 1] agreement with the full model's token
    reference_cost: np.ndarray  # [S] full_token_flops
    reference: str
    loss: np.ndarray  # [S, E] 1 - agreement (final right by definition, stage wrong)
    stage_names: tuple[str, ...]
    layers: np.ndarray  # [E]
    model_index: np.ndarray  # [E] zeros: one model
    example_ids: np.ndarray  # [S] "<example_id>#<t>"
    prompts: np.ndarray  # [S] index of each token's prompt (intervals resample prompts, not tokens)

    @staticmethod
    def metrics(summed, n) -> dict:
        return {"agreement": np.asarray(summed, dtype=np.float64)[..., 0] / n}


def token_staged(cache: LLMTokenCache, family: str, *, score: str = "max_prob", temperature: float = 1.0,
                 checked_layers=None, propagate: bool = True) -> TokenStaged:
    """The engine's staged arrays for CALM-style exit of ``family`` at ``checked_layers`` (default 1..L; the last
    layer is always a stage). Cost counts layers run at each token's attended positions, every checked exit's head
    up to the exit, and (``propagate``) the skipped layers' K/V projections."""
    L = cache.n_layers
    layers = np.arange(1, L + 1) if checked_layers is None else np.unique(np.append(checked_layers, L)).astype(int)
    if layers.min() < 1 or layers.max() > L:
        raise ValueError(f"checked_layers must lie in 1..{L}")
    idx = layers - 1
    conf = confidence(cache, family, score, temperature)[:, idx]
    agree = cache.agreement(family)[:, idx]
    pos = cache.positions[:, None]
    cost = calm_token_flops(pos, layers[None, :], cache.dims, checked_layers=layers[:-1], propagate=propagate)
    # a tuned exit's translator runs before each intermediate exit evaluated (the last layer has none)
    cost = cost + exit_overhead_flops(cache, family) * np.minimum(np.arange(1, len(layers) + 1), len(layers) - 1)
    tok_ids = np.char.add(np.char.add(np.repeat(cache.example_ids, cache.lengths), "#"), cache.steps.astype(str))
    return TokenStaged(confidence=conf.astype(np.float64), cost=np.asarray(cost, dtype=np.float64),
                       stats=agree[:, :, None].astype(np.float64),
                       reference_cost=np.asarray(full_token_flops(cache.positions, cache.dims), dtype=np.float64),
                       reference=f"full model (L{L})", loss=1.0 - agree.astype(np.float64),
                       stage_names=tuple(f"{family}:L{k}" for k in layers), layers=layers.astype(np.float64),
                       model_index=np.zeros(len(layers), dtype=int), example_ids=tok_ids,
                       prompts=cache.example_index)


def from_llm_tokens(cache: LLMTokenCache, *, family: str | None = None, score: str = "max_prob",
                    temperature: float = 1.0, checked_layers=None, propagate: bool = True) -> Staged:
    """The sweep engine's view of an LLM token cache (``engine.staged(cache, family=...)``): CALM-style per-token
    exit of ``family`` (default: the cache's first family) at ``checked_layers`` (default: every layer), one
    "example" per generated token (id ``<example_id>#<step>``), stages ``L<layer>``, metric ``agreement`` with the full model's token,
    cost :func:`~toolkit.analysis.llm_cost.calm_token_flops` (see :func:`token_staged`), reference the full model.

    Every engine function then applies (``sweep``, ``choose`` on cal / ``evaluate`` on test, ``bootstrap_bands``,
    the explorer). Bootstrap resamples treat tokens as independent; tokens of one prompt are not, so intervals are
    narrower than a resampling of prompts would give.
    """
    family = cache.family_names[0] if family is None else family
    if family not in cache.family_names:
        raise KeyError(f"exit family {family!r} is not in the cache; it holds {cache.family_names}")
    t = token_staged(cache, family, score=score, temperature=temperature, checked_layers=checked_layers,
                     propagate=propagate)
    meta = {"kind": "llm_tokens", "task": cache.meta.get("task"), "split": cache.meta.get("split"),
            "identity": cache_identity(cache),
            "family": family, "score": score, "temperature": float(temperature), "cost_unit": "FLOPs"}
    return _as_engine(t, meta=meta, stage_names=tuple(f"L{k}" for k in t.layers.astype(int)))


staged.register(LLMTokenCache, from_llm_tokens)


def calm_sweep(staged: TokenStaged | Staged) -> pd.DataFrame:
    """Every distinct global threshold, exactly: ``threshold``, ``agreement``, ``flops`` (mean per token),
    ``speedup`` (reference / policy mean FLOPs), ``mean_layers``, ``final_share``; from +inf (all tokens run the
    full model) down. The engine's :func:`~toolkit.analysis.engine.sweep` on the token view."""
    view = staged if isinstance(staged, Staged) else _as_engine(staged)
    frame = sweep(view).to_frame()
    return frame[["threshold", "agreement", "flops", "speedup", "mean_layers", "final_share"]]


def _as_engine(t: TokenStaged, **fields) -> Staged:
    """The engine's ``Staged`` of a token view (``fields`` override, e.g. ``meta``), built and validated once."""
    base = dict(confidence=t.confidence, cost=t.cost, stats=t.stats, metrics=MeanMetrics(("agreement",)),
                reference_cost=t.reference_cost, reference=t.reference, loss=t.loss, stage_names=t.stage_names,
                layers=t.layers, model_index=t.model_index, example_ids=t.example_ids, metric="agreement")
    return Staged(**{**base, **fields})


def calm_layer_thresholds(cal: TokenStaged, targets) -> np.ndarray:
    """Per-layer thresholds ``[A, E]`` (last column +inf, unused): for each target ``alpha``, stage e's threshold
    is the lowest confidence at which the cal tokens clearing it at that stage agree with the full model at rate
    ``>= alpha`` (+inf where no threshold reaches it): each layer is made as reliable as asked, on cal."""
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
        k = np.searchsorted(-rc, -targets, side="right")
        ok = k > 0
        out[ok, e] = c[ends[k[ok] - 1]]
    return out


def calm_stops(staged: TokenStaged, thresholds) -> np.ndarray:
    """Stage where each token stops, ``[A, S]``: ``thresholds`` a scalar or ``[A]`` global thresholds, or ``[A, E]``
    per-layer ones (2-D only: a 1-D list is always global, whatever its length; as :func:`calm_evaluate`)."""
    th = np.asarray(thresholds, dtype=np.float64)
    S, E = staged.confidence.shape
    if th.ndim <= 1:
        th = np.atleast_1d(th)[:, None] * np.ones(E)
    if th.ndim != 2 or th.shape[1] != E:
        raise ValueError(f"thresholds must be global ([A] or a scalar) or per layer ([A, E] with E = {E} stages), "
                         f"got shape {np.shape(thresholds)}")
    clears = staged.confidence[None, :, :-1] >= th[:, None, :-1]  # [A, S, E-1]
    return np.where(clears.any(-1), clears.argmax(-1), E - 1)


def calm_evaluate(staged: TokenStaged, thresholds) -> pd.DataFrame:
    """Agreement and cost at given thresholds: a scalar or ``[A]`` global thresholds, or ``[A, E]`` per-layer ones
    (one row per threshold set; a 1-D list is always global)."""
    stage = calm_stops(staged, thresholds)  # [A, S]
    S, E = staged.confidence.shape
    rows = np.arange(S)[None, :]
    cost = staged.cost[rows, stage].sum(1)
    return pd.DataFrame({"agreement": staged.stats[rows, stage, 0].mean(1), "flops": cost / S,
                         "speedup": staged.reference_cost.sum() / cost, "mean_layers": staged.layers[stage].mean(1),
                         "final_share": (stage == E - 1).mean(1)})


def calm_threshold(cal: TokenStaged, target: float) -> float:
    """The global threshold with the fewest FLOPs whose agreement on ``cal`` is at least ``target`` (exact: every
    distinct threshold of :func:`calm_sweep`; ``inf``, every token through the full model, always qualifies).

    >>> s = TokenStaged(confidence=np.array([[0.9, 0.0], [0.6, 0.0]]), cost=np.array([[1.0, 2.0], [1.0, 2.0]]),
    ...                 stats=np.array([[[1.0], [1.0]], [[0.0], [1.0]]]), reference_cost=np.array([2.0, 2.0]),
    ...                 reference="full", loss=np.zeros((2, 2)), stage_names=("L1", "L2"), layers=np.array([1.0, 2.0]),
    ...                 model_index=np.zeros(2, int), example_ids=np.array(["a#0", "b#0"]), prompts=np.array([0, 1]))
    >>> calm_threshold(s, 0.9), calm_threshold(s, 0.5)
    (0.9, 0.6)
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target agreement must be in [0, 1], got {target}")
    curve = calm_sweep(cal)
    ok = curve[curve.agreement >= target - 1e-12]
    return float(ok.threshold.iloc[int(np.argmin(ok.flops.to_numpy()))])


def calm_oracle(staged: TokenStaged) -> dict:
    """The earliest stage that agrees with the full model, per token: the bound on every CALM policy here."""
    agree = staged.stats[:, :, 0] > 0
    stage = agree.argmax(1)  # the last stage always agrees
    cost = staged.cost[np.arange(len(stage)), stage]
    return {"agreement": 1.0, "flops": float(cost.mean()), "speedup": float(staged.reference_cost.sum() / cost.sum()),
            "mean_layers": float(staged.layers[stage].mean())}


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
    :func:`~toolkit.analysis.llm_cost.passes_reads`). The decoder's result counts the same per block
    (:class:`toolkit.nn.llm_runtime.SpecResult`)."""

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


def self_speculative(cache: LLMTokenCache, family: str, layers=None, draft_lengths=range(1, 9)) -> pd.DataFrame:
    """Exact self-speculative decoding for every (draft layer, draft length): one row each with ``blocks``,
    ``full_passes_per_token`` (verification passes through all layers per emitted token; greedy decoding needs 1),
    ``acceptance`` (accepted / drafted tokens), ``accepted_per_block``, ``tokens_per_block`` (emitted / blocks),
    ``flops_per_token``, ``speedup`` (full model's FLOPs / self-speculative FLOPs, same tokens),
    ``reads_per_token`` (model weights read per emitted token, in full-model reads: a block reads layers 1..k, the
    exit and its head once per draft step, then all L layers (the last draft token has not been through 1..k) and
    the head once; greedy decoding reads the whole model once per token: the passes of
    :func:`~toolkit.analysis.llm_cost.self_speculative_passes`, which the decoder shares) and
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


def self_speculative_by_prompt(cache: LLMTokenCache, family: str, layer: int, draft_length: int) -> pd.DataFrame:
    """One (draft layer, draft length) per prompt: ``example_id``, ``tokens`` (its continuation's length),
    ``blocks``, ``drafted``, ``accepted``, ``emitted``, ``flops`` (self-speculative) and ``reference_flops`` (the
    full model's, same tokens). Column sums give :func:`self_speculative`'s row; ratios of resampled sums give
    intervals over prompts (:mod:`toolkit.analysis.llm_intervals`)."""
    tot, _ = _speculate(cache, family, np.array([int(layer)]), np.array([int(draft_length)]), per_prompt=True)
    ref = np.bincount(cache.example_index, weights=full_token_flops(cache.positions, cache.dims),
                      minlength=cache.n_examples)
    return pd.DataFrame({"example_id": cache.example_ids, "tokens": cache.lengths,
                         **{k: tot[k][0, 0].astype(np.int64) for k in ("blocks", "drafted", "accepted", "emitted")},
                         "flops": tot["flops"][0, 0], "reads": tot["reads"][0, 0], "reference_flops": ref})
