"""Small frictions a newcomer hit (issue 28, item 5): units, wording, reprs, stage numbering, plot axes, packaging."""

from __future__ import annotations

import numpy as np

from toolkit.caches.classification import from_arrays


def test_from_arrays_default_stage_names_count_from_one():
    c = from_arrays(np.zeros((4, 3, 2)) + [2.0, -1.0], [0, 0, 1, 1], [1.0, 2.0, 3.0])
    assert c.stages == ["stage1", "stage2", "stage3"]


def _dollar_cache(tmp_path, unit="parameters x tokens"):
    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_classification_cache

    c = random_classification_cache(120, 3, 2, seed=0)
    c = from_arrays(c.logits, c.labels, [1.2e6, 3.0e6, 8.5e6], meta={"task": "toy", "split": "test",
                                                                     "cost_unit": unit})
    save_cache(c, tmp_path / "c.parquet")
    return tmp_path / "c.parquet"


def _keys(obj):
    if isinstance(obj, dict):
        return {k for k in obj} | {x for v in obj.values() for x in _keys(v)}
    return {x for v in obj for x in _keys(v)} if isinstance(obj, list) else set()


def test_sweep_json_is_unit_neutral(tmp_path, capsys):
    import json

    from toolkit.cli import main

    assert main(["sweep", str(_dollar_cache(tmp_path)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost_unit"] == "parameters x tokens" and out["reference_cost"] == 8.5e6  # not 0.0085 "GFLOPs"
    assert not any("gflops" in k.lower() for k in _keys(out))
    assert out["frontier"][0]["flops"] == 1.2e6  # every cost in the cache's own unit
    assert main(["sweep", str(_dollar_cache(tmp_path)), "--rows", "3"]) == 0
    text = capsys.readouterr().out
    assert "8.5e+06 parameters x tokens per example" in text and "GFLOPs" not in text
