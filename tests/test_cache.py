import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import random_cache
from toolkit.caches.classification import META_KEY, CacheError, from_arrays, load_cache, save_cache
from toolkit.caches.io import write_cache_table


def test_roundtrip_exact(tmp_path):
    c = random_cache(N=50, E=3, C=2, ties=False)
    p = save_cache(c, tmp_path / "c.parquet")
    d = load_cache(p)
    assert np.array_equal(c.logits, d.logits) and np.array_equal(c.flops, d.flops)
    assert np.array_equal(c.labels, d.labels) and list(c.example_ids) == list(d.example_ids)
    assert d.stages == c.stages and d.meta["metric"] == "accuracy" and d.logits.dtype == np.float32
    # readable by pandas without the toolkit
    import pandas as pd

    df = pd.read_parquet(p)
    assert list(df.columns) == ["example_id", "label", "n_tokens", "logits", "flops"] and len(df) == 50


def test_from_arrays_broadcasts_stage_costs():
    c = from_arrays(np.zeros((4, 3, 2)), [0, 1, 0, 1], [1.0, 2.0, 5.0], stages=["a", "b", "c"])
    assert c.flops.shape == (4, 3) and (c.flops[:, 2] == 5).all() and c.stages == ["a", "b", "c"]


@pytest.mark.parametrize("mutate,needle", [
    (lambda a: a.update(logits=np.full((3, 2, 2), np.nan)), "NaN or inf"),
    (lambda a: a.update(labels=[0, 1]), "labels has shape"),
    (lambda a: a.update(labels=[0, 1, 5]), "labels must be integers in 0..1"),
    (lambda a: a.update(flops=[3.0, 2.0]), "cumulative"),
    (lambda a: a.update(example_ids=["x", "x", "y"]), "not unique"),
    (lambda a: a.update(stages=["a", "a"]), "unique"),
])
def test_bad_arrays_refused(mutate, needle):
    args = dict(logits=np.zeros((3, 2, 2)), labels=[0, 1, 0], flops=[1.0, 2.0])
    mutate(args)
    with pytest.raises(CacheError, match=needle):
        from_arrays(**args)


def _rewrite_meta(path, fn):
    """A crafted file: the header edited and the content hash recomputed (the hash is no signature), so only the
    structural checks stand between it and the analysis."""
    t = pq.read_table(path)
    meta = json.loads(t.schema.metadata[META_KEY])
    fn(meta)
    write_cache_table(t.replace_schema_metadata(None), path, meta)


def test_unknown_schema_version(tmp_path):
    p = save_cache(random_cache(N=5), tmp_path / "c.parquet")
    _rewrite_meta(p, lambda m: m.update(schema_version=99))
    with pytest.raises(CacheError, match="schema version 99 is not supported"):
        load_cache(p)


def test_shape_mismatch_in_header(tmp_path):
    p = save_cache(random_cache(N=5, E=4, C=3), tmp_path / "c.parquet")
    _rewrite_meta(p, lambda m: m.update(shape=[5, 3, 3]))
    with pytest.raises(CacheError, match="to match header key 'shape'"):
        load_cache(p)


def test_truncated_and_corrupt_files(tmp_path):
    p = save_cache(random_cache(N=300), tmp_path / "c.parquet")
    raw = p.read_bytes()
    (tmp_path / "t.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CacheError, match="truncated or corrupt"):
        load_cache(tmp_path / "t.parquet")
    bad = bytearray(raw)
    bad[len(bad) // 3: len(bad) // 3 + 64] = b"\x00" * 64
    (tmp_path / "x.parquet").write_bytes(bytes(bad))
    with pytest.raises(CacheError):
        load_cache(tmp_path / "x.parquet")
    with pytest.raises(CacheError, match="no such cache"):
        load_cache(tmp_path / "missing.parquet")


def test_plain_parquet_without_metadata(tmp_path):
    import pandas as pd

    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(CacheError, match="without toolkit metadata"):
        load_cache(tmp_path / "p.parquet")


def test_fingerprint_mismatch_detected(tmp_path, glue_dir):
    import shutil

    from toolkit.data.tasks import load_split

    data = tmp_path / "data"
    shutil.copytree(glue_dir, data)
    d = load_split("sst2", "test", data)
    N = len(d)
    c = from_arrays(np.zeros((N, 1, 2)), d.frame.label, [1.0], example_ids=d.frame.example_id,
                    meta={"data": {"source": "local", "files": d.files, "data_dir": str(data)}})
    p = save_cache(c, tmp_path / "c.parquet")
    assert load_cache(p).meta["data_verified"] is True
    f = data / "sst2" / "dev.tsv"
    f.write_text(f.read_text().replace("good", "goood", 1))
    with pytest.raises(CacheError, match="data changed since collection"):
        load_cache(p)
    assert load_cache(p, verify_data=False).n_examples == N
    shutil.rmtree(data)  # data absent: loads, marked unverified
    assert load_cache(p, data_dir=tmp_path / "nowhere").meta["data_verified"] is False


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    import toolkit.caches.classification as tc

    p = tmp_path / "c.parquet"
    save_cache(random_cache(N=5), p)
    before = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("pyarrow.parquet.write_table", boom)
    with pytest.raises(RuntimeError):
        tc.save_cache(random_cache(N=7), p)
    assert p.read_bytes() == before and [x.name for x in tmp_path.iterdir()] == ["c.parquet"]


def test_select_stages_rederives_flops():
    info = [{"name": f"a{i}", "model_index": 0} for i in range(3)] + [{"name": "b0", "model_index": 1}]
    flops = np.array([[1.0, 2.0, 3.0, 13.0]])
    c = from_arrays(np.zeros((1, 4, 2)), [0], flops, stage_info=info)
    assert c.select_stages(["a1", "b0"]).flops.tolist() == [[2.0, 12.0]]  # a2's layers never run
    assert c.select_stages([0, 2]).flops.tolist() == [[1.0, 3.0]]
    assert c.select_stages(["b0"]).flops.tolist() == [[10.0]]  # Super alone
    with pytest.raises(ValueError):
        c.select_stages([2, 1])


def test_analysis_imports_no_torch():
    code = ("import sys, toolkit, toolkit.analysis.engine, toolkit.analysis.metrics.calibration, toolkit.analysis.reliability, "
            "toolkit.analysis.routing, toolkit.analysis.plots.curves, toolkit.analysis.operating, toolkit.analysis.policies; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
