"""Random caches of the shapes the zoo ships, for benchmarks and tests at any size (numpy only).

>>> c = random_classification_cache(100, 4, 3, seed=0)
>>> c.logits.shape, c.split
((100, 4, 3), 'test')
>>> t = random_token_cache(500, layers=6, families=("lens",), seed=0)
>>> t.n_tokens >= 500, t.n_layers, t.family_names
(True, 6, ['lens'])
"""

from __future__ import annotations

import numpy as np

from toolkit.caches.classification import Cache, from_arrays
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
