"""The shipped SmolLM2 caches: they load, hold ids and model outputs only, stay small, and their FLOPs are the
causal-LM cost model's."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from toolkit.analysis.cache import load_cache
from toolkit.analysis.llm_cache import load_llm_cache
from toolkit.analysis.llm_cost import CausalLMDims, prefill_exit_flops

DATA = Path(__file__).resolve().parents[1] / "data"
TOKEN_CACHES = sorted((DATA / "llm").glob("smollm2_*.parquet"))
CLASSIFIER_CACHES = sorted(p for p in DATA.glob("*/smollm2_*.parquet") if p.parent.name != "llm")
pytestmark = pytest.mark.skipif(not TOKEN_CACHES, reason="no shipped LLM caches")


def test_llm_files_stay_small():
    total = sum(p.stat().st_size for p in [*TOKEN_CACHES, *CLASSIFIER_CACHES])
    assert total < 6.3e6, f"LLM caches in data/ hold {total / 1e6:.2f} MB"


@pytest.mark.parametrize("path", TOKEN_CACHES, ids=lambda p: p.name)
def test_token_caches_load_and_hold_no_text(path):
    c = load_llm_cache(path)
    assert "Q4_1" in c.model["origin"] and "dequantized" in c.model["origin"]
    assert set(c.family_names) >= {"lens"} and c.n_layers == 30
    fixed = {"example_id", "label", "n_prompt", "tokens"}
    for n in pq.read_schema(path).names:  # ids, token ids, exit statistics and quality numbers: no text column
        assert n in fixed or n.startswith("q/") or n.split("/")[-1] in ("top1", "stats"), n
    assert all(i.startswith(f"{c.meta['task']}:") for i in c.example_ids)
    assert c.meta["split"] in ("cal", "test") and c.meta["data"]["fingerprint"]
    for f in c.family_names:
        assert c.agreement(f)[:, -1].all()


@pytest.mark.parametrize("path", CLASSIFIER_CACHES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_classifier_cache_flops_are_the_cost_model(path):
    c = load_cache(path)
    dims = CausalLMDims(**c.meta["llm"]["dims"])
    layers = [s["layer"] for s in c.stage_info]
    want = prefill_exit_flops(c.n_tokens, layers, dims, exit_head_flops=c.meta["exit_head_flops"])
    np.testing.assert_allclose(c.flops, want, rtol=1e-12)
    assert "Q4_1" in c.meta["llm"]["origin"] and c.split in ("cal", "test")


def test_readme_llm_numbers_are_current():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("llm_numbers", root / "scripts" / "llm_readme_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    current = mod.readme_sections.current(mod.SECTION)
    assert current is not None, "README has no SmolLM2 numbers section"
    assert current == mod.render(), "README's SmolLM2 numbers are stale: run `python scripts/llm_readme_numbers.py " \
        "--readme`"
