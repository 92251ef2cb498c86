import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import toolkit.nn.encoder.collect as tc
from conftest import REPO
from toolkit.caches.classification import CacheError, load_cache
from toolkit.data.tasks import load_split
from toolkit.nn.encoder.models import MultiExitModel


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, tiny_encoder_dir):
    """Two tiny multi-exit models saved with tokenizers: a 2-layer 'swift' and a 3-layer 'super'."""
    out = {}
    for name, layers in (("swift", 2), ("super", 3)):
        d = tmp_path_factory.mktemp(name)
        m = MultiExitModel.from_backbone(tiny_encoder_dir, num_labels=2, num_hidden_layers=layers,
                                         exit_layers=None if name == "super" else [2], seed=1)
        m.save_pretrained(d)
        AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(d)
        out[name] = d
    return out


@pytest.mark.slow
def test_cache_equals_one_at_a_time(saved_models, glue_dir, tmp_path):
    c = tc.collect([str(saved_models["super"])], "sst2", "test", tmp_path / "c.parquet", data_dir=glue_dir,
                   batch_size=8, chunk_size=50, progress=False)
    frame = load_split("sst2", "test", glue_dir).frame
    model = MultiExitModel.from_pretrained(saved_models["super"]).eval()
    tok = AutoTokenizer.from_pretrained(saved_models["super"])
    with torch.inference_mode():
        for i, text in enumerate(frame["text_a"]):
            one = model(**tok([text], return_tensors="pt")).logits[0].numpy()
            np.testing.assert_allclose(c.logits[i], one, atol=1e-5)
    assert (c.labels == frame["label"].to_numpy()).all() and c.stages == ["L1", "L2", "L3"]
    assert c.meta["data_verified"] is True and c.meta["task"] == "sst2"
    assert (c.n_tokens == [len(tok(t)["input_ids"]) for t in frame["text_a"]]).all()
    assert not (tmp_path / "c.parquet.parts").exists()


def test_cascade_of_two_models_and_flops(saved_models, glue_dir, tmp_path):
    c = tc.collect([str(saved_models["swift"]), str(saved_models["super"])], "sst2", "test", tmp_path / "c.parquet",
                   data_dir=glue_dir, limit=20, progress=False, names=["swift", "super"])
    assert c.stages == ["swift:L2", "super:L1", "super:L2", "super:L3"]
    swift_cost = c.flops[:, 0]
    alone = tc.collect([str(saved_models["super"])], "sst2", "test", tmp_path / "d.parquet", data_dir=glue_dir,
                       limit=20, progress=False)
    np.testing.assert_allclose(c.flops[:, 1:], alone.flops + swift_cost[:, None])
    np.testing.assert_allclose(c.logits[:, 1:], alone.logits, atol=1e-6)


def test_interrupted_collection_resumes_identically(saved_models, glue_dir, tmp_path, monkeypatch):
    ref = tc.collect([str(saved_models["super"])], "sst2", "test", tmp_path / "ref.parquet", data_dir=glue_dir,
                     chunk_size=32, progress=False)
    real = tc.predict_logits
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed half-way")
        return real(*a, **k)

    monkeypatch.setattr(tc, "predict_logits", dying)
    out = tmp_path / "c.parquet"
    with pytest.raises(KeyboardInterrupt):
        tc.collect([str(saved_models["super"])], "sst2", "test", out, data_dir=glue_dir, chunk_size=32,
                   progress=False)
    assert not out.exists() and len(list((tmp_path / "c.parquet.parts").glob("chunk-*.npz"))) == 2
    monkeypatch.setattr(tc, "predict_logits", real)
    done = tc.collect([str(saved_models["super"])], "sst2", "test", out, data_dir=glue_dir, chunk_size=32,
                      progress=False)
    assert np.array_equal(done.logits, ref.logits) and np.array_equal(done.flops, ref.flops)
    assert list(done.example_ids) == list(ref.example_ids)


def test_parts_of_another_run_are_refused(saved_models, glue_dir, tmp_path):
    out = tmp_path / "c.parquet"
    parts = tmp_path / "c.parquet.parts"
    parts.mkdir()
    (parts / "signature.json").write_text('{"signature": "something-else"}')
    with pytest.raises(CacheError, match="different collection"):
        tc.collect([str(saved_models["super"])], "sst2", "test", out, data_dir=glue_dir, progress=False)


def test_wrong_label_count_refused(saved_models, glue_dir, tmp_path, tiny_encoder_dir):
    m = MultiExitModel.from_backbone(tiny_encoder_dir, num_labels=4)
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    with pytest.raises(ValueError, match="4 labels"):
        tc.collect([(m, tok)], "sst2", "test", tmp_path / "c.parquet", data_dir=glue_dir, progress=False,
                   names=["m"])


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.slow
def test_cli_collect_info_sweep_and_errors(saved_models, glue_dir, tmp_path):
    out = tmp_path / "cli.parquet"
    r = _cli("collect", "--model", str(saved_models["super"]), "--task", "sst2", "--split", "test", "--data-dir",
             str(glue_dir), "--out", str(out), "--limit", "30", "--quiet")
    assert r.returncode == 0, r.stderr
    c = load_cache(out)
    assert c.n_examples == 30 and c.meta["command"].startswith("toolkit collect")
    r = _cli("info", str(out))
    assert r.returncode == 0 and "L3" in r.stdout
    r = _cli("sweep", str(out))
    assert r.returncode == 0 and "largest speed-up within" in r.stdout and "last exit (L3)" in r.stdout
    r = _cli("collect", "--model", str(saved_models["super"]), "--task", "nope", "--split", "test", "--out", "x")
    assert r.returncode == 2 and "unknown task" in r.stderr
    assert "cascade" in _cli("collect", "--help").stdout


@pytest.mark.slow
def test_two_process_collection_equals_one_process(saved_models, glue_dir, tmp_path):
    single = tc.collect([str(saved_models["super"])], "sst2", "test", tmp_path / "one.parquet", data_dir=glue_dir,
                        chunk_size=16, progress=False)
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "-m", "toolkit", "collect", "--model", str(saved_models["super"]), "--task", "sst2",
                        "--split", "test", "--data-dir", str(glue_dir), "--out", str(tmp_path / "two.parquet"),
                        "--chunk-size", "16", "--quiet"],
                       capture_output=True, text=True, cwd=REPO, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    two = load_cache(tmp_path / "two.parquet")
    assert list(two.example_ids) == list(single.example_ids)
    np.testing.assert_allclose(two.logits, single.logits, atol=1e-6)
    assert np.array_equal(two.flops, single.flops)
