"""toolkit.testing: every random cache is a valid cache of its kind (its writer and loader round-trip it, the engine
sweeps it), seeds reproduce, and the stated structure holds (cascade costs, BLEU statistics, profile pieces)."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.analysis import engine
from toolkit.caches import kinds
from toolkit.testing import (
    PROFILE_BATCH,
    PROFILE_POSITIONS,
    random_cascade_cache,
    random_classification_cache,
    random_generation_cache,
    random_token_cache,
    small_token_cache,
    synthetic_latency_profile,
)

MAKERS = {
    "classification": lambda seed: random_classification_cache(60, 3, 2, seed=seed),
    "cascade": lambda seed: random_cascade_cache(50, exits=(2, 3), seed=seed),
    "generation-exact": lambda seed: random_generation_cache(40, seed=seed),
    "generation-bleu": lambda seed: random_generation_cache(40, seed=seed, metric="bleu"),
    "tokens-small": lambda seed: small_token_cache(N=5, seed=seed),
    "tokens": lambda seed: random_token_cache(300, layers=4, families=("lens",), seed=seed),
}


def arrays(c) -> list[np.ndarray]:
    """The numbers a cache of any kind holds."""
    if hasattr(c, "logits"):
        return [c.logits, c.labels, c.flops, np.asarray(c.example_ids, str)]
    if hasattr(c, "models"):
        out = [np.asarray(c.example_ids, str), c.labels]
        for g in c.models.values():
            out += [g.tokens, g.offsets, g.stats, g.flops, *g.quality.values(), *g.qstats.values()]
        return out
    return [np.asarray(c.example_ids, str), c.tokens, c.offsets, c.n_prompt,
            *[c.top1[f] for f in sorted(c.top1)], *[c.stats[f] for f in sorted(c.stats)]]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b), strict=True))


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_each_random_cache_round_trips_and_sweeps(kind, tmp_path):
    c = MAKERS[kind](0)
    back = kinds.load(kinds.save(c, tmp_path / "c.parquet"), verify_data=False)
    assert same(c, back)
    curve = engine.sweep(engine.staged(back))
    assert len(curve.to_frame()) > 1


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_seed_reproduces_its_cache_and_another_seed_differs(kind):
    assert same(MAKERS[kind](3), MAKERS[kind](3))
    assert not same(MAKERS[kind](3), MAKERS[kind](4))


def test_cascade_costs_add_up_and_later_stages_are_more_accurate():
    c = random_cascade_cache(2000, exits=(2, 3), seed=1)
    assert c.stages == ["m0:stage1", "m0:stage2", "m1:stage1", "m1:stage2", "m1:stage3"]
    np.testing.assert_array_equal(c.flops, np.broadcast_to(np.cumsum([1, 1, 4, 4, 4]) * 1e9, (2000, 5)))
    acc = (c.logits.argmax(-1) == c.labels[:, None]).mean(0)
    assert acc[0] < 0.7 < 0.95 < acc[-1]


def test_bleu_statistics_are_counts_sacrebleu_can_score():
    g = random_generation_cache(200, seed=2, metric="bleu").models["super"]
    qs = g.qstats["bleu"]
    correct, total = qs[:, 2:6], qs[:, 6:]
    assert qs.shape == (200, 10) and np.array_equal(qs, qs.round()) and (qs >= 0).all()
    assert (correct <= total).all() and (qs[:, 0] == total[:, 0] + 3).all()
    with pytest.raises(ValueError, match="exact_match' or 'bleu"):
        random_generation_cache(5, metric="chrf")


def test_latency_profile_pieces_are_their_stated_formulas_at_the_grid():
    p = synthetic_latency_profile(exit_layers=(2, 4))
    b, q = np.meshgrid(PROFILE_BATCH, PROFILE_POSITIONS, indexing="ij")
    np.testing.assert_allclose(p.model("enc")["layer"](b, q), 1.0 + 0.05 * b * q)
    np.testing.assert_allclose(p.model("enc")["forward"](b, q), 0.1 + 2 * (1.0 + 0.05 * b * q))
    assert p.model("enc").info["exit_layers"] == [2, 4] and p.model("enc").layers == 4 and p.model("lm").layers == 4
