"""Token caches at scale: written one chunk of prompts at a time (the same file as saving them at once), loaded
column by column, and the engine's prompt-clustered intervals on them."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.caches.classification import CacheError
from toolkit.caches.io import INTEGRITY_KEY, read_header
from toolkit.caches.tokens import (
    LLMCacheWriter,
    LLMTokenCache,
    load_llm_cache,
    prompt_range,
    save_llm_cache,
)
from toolkit.testing import random_token_cache


def _chunks(c: LLMTokenCache, cuts) -> list[LLMTokenCache]:
    return [prompt_range(c, a, b) for a, b in zip([0, *cuts], [*cuts, c.n_examples])]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_writer_in_chunks_is_the_cache_saved_at_once(tmp_path, dtype):
    c = random_token_cache(400, layers=5, seed=3, mean_length=10)
    c.stats_dtype = dtype
    c.quality = {"exact_match": np.linspace(0, 1, c.n_examples)}
    whole = save_llm_cache(c, tmp_path / "whole.parquet")
    with LLMCacheWriter(tmp_path / "chunks.parquet") as w:
        for part in _chunks(c, [7, 8, 30]):
            w.write(part)
    assert w.n_prompts == c.n_examples and w.n_tokens == c.n_tokens and w.n_chunks == 4
    assert read_header(whole)[INTEGRITY_KEY] == read_header(tmp_path / "chunks.parquet")[INTEGRITY_KEY]
    got = load_llm_cache(tmp_path / "chunks.parquet", verify_data=False)
    ref = load_llm_cache(whole, verify_data=False)  # float16 statistics: the stored (rounded) values
    for name in ("example_ids", "labels", "n_prompt", "tokens", "offsets"):
        np.testing.assert_array_equal(getattr(got, name), getattr(c, name))
    for f in c.top1:
        np.testing.assert_array_equal(got.top1[f], c.top1[f])
        np.testing.assert_array_equal(got.stats[f], ref.stats[f])
        if dtype == "float32":
            np.testing.assert_array_equal(got.stats[f], c.stats[f])
        assert got.stats[f].flags.writeable and got.stats[f].dtype == np.float32
    assert list(tmp_path.iterdir()) != [] and not list(tmp_path.glob(".*spool*"))


def test_writer_refuses_mismatched_or_repeated_chunks_and_leaves_nothing(tmp_path):
    c = random_token_cache(120, layers=4, seed=1, mean_length=10)
    a, b = _chunks(c, [6])
    out = tmp_path / "x.parquet"
    with pytest.raises(CacheError, match="two chunks"), LLMCacheWriter(out) as w:
        w.write(a)
        w.write(a)
    other = random_token_cache(120, layers=4, seed=1, mean_length=10)
    other.meta = {**other.meta, "split": "cal"}
    with pytest.raises(CacheError, match="differs from the first"), LLMCacheWriter(out) as w:
        w.write(a)
        w.write(_chunks(other, [6])[1])
    with pytest.raises(CacheError, match="no chunk"):
        LLMCacheWriter(out).close()
    assert list(tmp_path.iterdir()) == []  # neither a cache nor a spool


def test_token_view_intervals_resample_prompts():
    """The engine's intervals on a token view with its prompts as clusters equal explicit prompt resamples."""
    from dataclasses import replace

    from toolkit.analysis import engine as en

    c = random_token_cache(300, layers=5, seed=4, mean_length=10)
    v = en.staged(c, family="lens")
    v = v if v.clusters is not None else replace(v, clusters=c.example_index)
    np.testing.assert_array_equal(v.clusters, c.example_index)
    thr = float(np.median(v.confidence[:, 0]))
    ev = en.evaluation(v, thr, n_boot=50, seed=2)
    stop = v.stage_of(thr)
    draws = []
    for counts in en.cluster_weights(c.n_examples, n_boot=50, seed=2, data_row=False).astype(int):
        rows = np.concatenate([np.flatnonzero(c.example_index == k) for k in np.repeat(np.arange(c.n_examples), counts)])
        draws.append(en.evaluation_at_stages(v.subset(rows), stop[rows])["agreement"])
    assert ev.intervals["agreement"] == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])), abs=1e-12)
