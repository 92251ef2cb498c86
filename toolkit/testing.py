"""Random caches of the shapes the zoo ships, for benchmarks and tests at any size (numpy only).

>>> c = random_classification_cache(100, 4, 3, seed=0)
>>> c.logits.shape, c.split
((100, 4, 3), 'test')
>>> t = random_token_cache(500, layers=6, families=("lens",), seed=0)
>>> t.n_tokens >= 500, t.n_layers, t.family_names
(True, 6, ['lens'])

One of each kind, small enough for a unit test, and a latency profile of known pieces:

>>> random_cascade_cache(50, exits=(2, 3), seed=0).stages
['m0:stage1', 'm0:stage2', 'm1:stage1', 'm1:stage2', 'm1:stage3']
>>> g = random_generation_cache(40, seed=0, metric="bleu")
>>> sorted(g.models), g.models["swift"].qstats["bleu"].shape
(['super', 'swift'], (40, 10))
>>> small_token_cache(N=4, layers=3, seed=0).n_layers
3
>>> float(synthetic_latency_profile().model("enc")["layer"](2, 8.0))  # 1 + 0.05 * batch * positions ms
1.8
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp

from toolkit.caches.classification import Cache, from_arrays
from toolkit.caches.compose import cascade_caches
from toolkit.caches.generation import GenCache, Generation, stat_names
from toolkit.caches.tokens import LLMTokenCache


def random_classification_cache(N: int, E: int, C: int, *, seed: int = 0, split: str = "test",
                                metric: str = "accuracy") -> Cache:
    """``N`` examples, ``E`` exits growing more accurate, ``C`` classes: float32 logits (standard normal, the gold
    class raised by 0.2..2.5 along the exits), cumulative FLOPs of 1e9 per exit."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    lg = rng.standard_normal((N, E, C), dtype=np.float32)
    lg[np.arange(N), :, y] += np.linspace(0.2, 2.5, E, dtype=np.float32)
    return from_arrays(lg, y, np.cumsum(np.ones((N, E)), 1) * 1e9,
                       meta={"split": split, "task": "synthetic", "metric": metric})


def random_token_cache(n_tokens: int, *, layers: int = 30, families=("lens", "tuned"), seed: int = 0,
                       mean_length: int = 50, split: str = "test", vocab: int = 49152) -> LLMTokenCache:
    """A valid LLM token cache of at least ``n_tokens`` generated tokens (prompts of 1..2*mean_length tokens;
    agreement with the full model rising from 0.2 to 0.97 with depth; max-logit statistics tracking agreement;
    SmolLM2-135M's dimensions with ``layers`` layers; float32 statistics at temperature 1)."""
    rng = np.random.default_rng(seed)
    N = max(1, -(-n_tokens // mean_length))
    lengths = rng.integers(1, 2 * mean_length, N)
    lengths[-1] += max(0, n_tokens - int(lengths.sum()))
    S = int(lengths.sum())
    tokens = rng.integers(0, vocab, S).astype(np.int32)
    p = np.linspace(0.2, 0.97, layers, dtype=np.float32)
    top1, stats = {}, {}
    for f in families:
        agree = rng.random((S, layers), dtype=np.float32) < p
        agree[:, -1] = True
        top1[f] = np.where(agree, tokens[:, None], (tokens[:, None] + 1) % vocab).astype(np.int32)
        mx = rng.standard_normal((S, layers), dtype=np.float32) * 2 + 5 + 2 * agree
        st = np.empty((S, layers, 4), dtype=np.float32)  # max logit, second logit, logsumexp, entropy
        st[..., 0] = mx
        st[..., 1] = mx - rng.exponential(1.0, (S, layers))
        st[..., 2] = mx + rng.exponential(0.7, (S, layers))
        st[..., 3] = rng.exponential(1.0, (S, layers))
        stats[f] = st
    dims = dict(layers=layers, hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536, vocab=vocab)
    return LLMTokenCache(example_ids=np.array([f"synthetic:{split}:{i}" for i in range(N)]),
                         labels=np.full(N, -1), n_prompt=rng.integers(20, 80, N).astype(np.int32), tokens=tokens,
                         offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), top1=top1,
                         stats=stats, temperatures=(1.0,), model={"path": "synthetic", "dims": dims},
                         stats_dtype="float32",
                         meta={"decoding": {"max_new_tokens": int(lengths.max())}, "split": split,
                               "task": "synthetic"})


def random_cascade_cache(N: int, *, exits=(2, 3), C: int = 2, seed: int = 0, split: str = "test") -> Cache:
    """A cascade of ``len(exits)`` models on one split (model ``m`` with ``exits[m]`` exits, composed by
    :func:`toolkit.caches.compose.cascade_caches`, stages named ``m<i>:stage<j>``): float32 logits, the gold class
    raised by 0.2..2.5 along all stages in cascade order; each exit of model ``m`` costs ``4**m`` GFLOPs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    lift = np.linspace(0.2, 2.5, sum(exits), dtype=np.float32)
    ids = np.array([f"synthetic:{split}:{i}" for i in range(N)])
    caches, start = [], 0
    for m, E in enumerate(exits):
        lg = rng.standard_normal((N, E, C), dtype=np.float32)
        lg[np.arange(N), :, y] += lift[start:start + E]
        start += E
        caches.append(from_arrays(lg, y, np.cumsum(np.full(E, 4.0 ** m * 1e9)), example_ids=ids,
                                  meta={"split": split, "task": "synthetic", "metric": "accuracy",
                                        "models": [{"name": f"m{m}"}]}))
    return cascade_caches(caches, names=[f"m{m}" for m in range(len(exits))])


GEN_TEMPERATURES = (1.0, 2.0)


def random_generation_cache(N: int, *, seed: int = 0, metric: str = "exact_match") -> GenCache:
    """A Swift/Super generation cache (``N`` examples of 1..4 steps each): step statistics of random 12-way logits
    at temperatures :data:`GEN_TEMPERATURES`; Super costs 6x Swift. ``metric="exact_match"``: 0/1 quality, Super
    right more often; ``"bleu"``: per-example BLEU with sacrebleu-style integer statistics (system and reference
    lengths, then 4 n-gram correct and 4 total counts) for corpus scores of routed subsets."""
    if metric not in ("exact_match", "bleu"):
        raise ValueError(f"metric must be 'exact_match' or 'bleu', got {metric!r}")
    rng = np.random.default_rng(seed)
    models = {}
    for k, name in enumerate(("swift", "super")):
        steps = rng.integers(1, 5, N)
        off = np.concatenate([[0], np.cumsum(steps)])
        z = rng.normal(size=(off[-1], 12)) * 2
        top = np.sort(z, 1)
        cols = [top[:, -1], top[:, -2]]
        cols += [logsumexp(z / t, 1) for t in GEN_TEMPERATURES]
        cols += [-(np.exp(log_softmax(z / t, 1)) * log_softmax(z / t, 1)).sum(1) for t in GEN_TEMPERATURES]
        stats = np.stack(cols, 1).astype(np.float32)
        if metric == "exact_match":
            quality, qstats = {"exact_match": (rng.random(N) < 0.6 + 0.25 * k).astype(float)}, {}
        else:
            total = rng.integers(4, 9, (N, 4)).astype(float)
            correct = np.minimum(total, rng.integers(0, 6, (N, 4)))
            qs = np.concatenate([total[:, :1] + 3, total[:, :1] + rng.integers(2, 5, (N, 1)), correct, total], 1)
            quality, qstats = {"bleu": rng.uniform(0, 100, N)}, {"bleu": qs}
        models[name] = Generation(tokens=np.zeros(off[-1], np.int32), offsets=off, stats=stats,
                                  text=np.array(["x"] * N, dtype=object), n_src=np.full(N, 5, np.int32),
                                  flops=rng.uniform(1, 2, N) * (1 + 5 * k), quality=quality, qstats=qstats)
    assert len(stat_names(GEN_TEMPERATURES)) == stats.shape[1]
    return GenCache(np.array([f"g:{i}" for i in range(N)]), np.zeros(N, np.int64), models, GEN_TEMPERATURES,
                    {"task": "toy", "split": "cal"})


def small_token_cache(*, N: int = 6, layers: int = 5, seed: int = 0, p_agree=(0.3, 0.5, 0.7, 0.9),
                      max_new: int = 9, stats_dtype: str = "float32") -> LLMTokenCache:
    """A tiny LLM token cache (``N`` prompts of 1..``max_new`` generated tokens, a 50-token vocabulary, one
    ``lens`` family, binary labels): exit ``l`` agrees with the last layer with probability ``p_agree[l]`` (cycled
    over the ``layers - 1`` exits), max logits 2 higher where it agrees."""
    rng = np.random.default_rng(seed)
    L = layers
    lengths = rng.integers(1, max_new + 1, N)
    S = int(lengths.sum())
    tokens = rng.integers(0, 50, S).astype(np.int32)
    agree = np.ones((S, L), bool)
    agree[:, :-1] = rng.random((S, L - 1)) < np.resize(np.asarray(p_agree), L - 1)
    top1 = np.where(agree, tokens[:, None], (tokens[:, None] + 1 + rng.integers(0, 40, (S, L))) % 50)
    mx = rng.normal(5, 2, (S, L)) + 2 * agree
    second = mx - rng.exponential(1.0, (S, L))
    lse = mx + rng.exponential(0.7, (S, L))
    ent = rng.exponential(1.0, (S, L))
    stats = np.stack([mx, second, lse, ent], -1).astype(np.float32)
    dims = dict(layers=L, hidden=8, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=50)
    return LLMTokenCache(example_ids=np.array([f"t:test:{i}" for i in range(N)]), labels=rng.integers(0, 2, N),
                         n_prompt=rng.integers(3, 12, N).astype(np.int32), tokens=tokens,
                         offsets=np.concatenate([[0], np.cumsum(lengths)]), top1={"lens": top1.astype(np.int32)},
                         stats={"lens": stats}, temperatures=(1.0,), model={"path": "toy", "dims": dims},
                         stats_dtype=stats_dtype, meta={"decoding": {"max_new_tokens": max_new}})


PROFILE_BATCH, PROFILE_POSITIONS = [1, 2, 4, 8], [4.0, 8.0, 16.0, 32.0]


def _grid(f, batch=PROFILE_BATCH, positions=PROFILE_POSITIONS) -> dict:
    return {"batch": batch, "positions": positions,
            "ms": [[float(f(b, p)) for p in positions] for b in batch]}


def synthetic_latency_profile(*, exit_layers=(1, 2, 3)):
    """A :class:`toolkit.analysis.cost.latency.LatencyProfile` whose pieces have distinct, known values in ms
    (e.g. an encoder layer takes ``1 + 0.05 * batch * positions``), measured at batches :data:`PROFILE_BATCH` and
    positions :data:`PROFILE_POSITIONS`: models ``enc`` (exits at ``exit_layers``), ``small`` (one layer, one
    exit) and ``lm`` (a 4-layer causal LM, context 16)."""
    from toolkit.analysis.cost import latency as lat  # the cache kinds above need no analysis

    grid = _grid
    enc = {"kind": "encoder", "layers": exit_layers[-1], "exit_layers": list(exit_layers), "pieces": {
        "inputs": grid(lambda b, p: 0.01 * b * p), "embed": grid(lambda b, p: 0.1 + 0.002 * b * p),
        "layer": grid(lambda b, p: 1.0 + 0.05 * b * p), "exit": grid(lambda b, p: 0.3 + 0.001 * b),
        "head": grid(lambda b, p: 0.2), "forward": grid(lambda b, p: 0.1 + len(exit_layers) * (1.0 + 0.05 * b * p))}}
    small = {**enc, "layers": 1, "exit_layers": [1],
             "pieces": {**enc["pieces"], "forward": grid(lambda b, p: 0.5 + 0.01 * b * p)}}
    q = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0]
    lm = {"kind": "causal_lm", "layers": 4, "context": 16, "pieces": {
        "setup": grid(lambda b, p: 0.05 * p + 0.01 * b, positions=q),
        "layer": grid(lambda b, p: 1 + 0.2 * b * p, positions=q),
        "head": grid(lambda b, p: 3 + b * p, positions=q), "exit": grid(lambda b, p: 2.5 + b, positions=[1.0]),
        "confidence": grid(lambda b, p: 0.4 * b, positions=[1.0]),
        "kv_propagation": grid(lambda b, p: 0.1 * b, positions=[1.0]),
        "step_overhead": grid(lambda b, p: 0.7, positions=[1.0])}}
    return lat.load_profile({"format": lat.PROFILE_FORMAT, "threads": 1, "dtype": "float32",
                             "machine": {"host": "test"}, "models": {"enc": enc, "small": small, "lm": lm}})
