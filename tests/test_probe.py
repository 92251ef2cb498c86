import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from conftest import tiny_config
from toolkit.data.tasks import load_split
from toolkit.nn.encoder.collect import collect
from toolkit.nn.encoder.models import MultiExitModel, RandomHeadsError, load_model
from toolkit.nn.encoder.probe import ProbeExits, fit_probe_exits, layer_features, probe_exits


def test_probe_exits_on_a_frozen_classifier(tmp_path, tokenizer_dir, glue_dir):
    torch.manual_seed(0)
    clf = AutoModelForSequenceClassification.from_config(tiny_config("bert", 3))
    clf.save_pretrained(tmp_path / "clf")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp_path / "clf")
    out = fit_probe_exits(tmp_path / "clf", "sst2", tmp_path / "probe", data_dir=glue_dir, train_limit=None)
    me = load_model(out)
    assert isinstance(me, MultiExitModel) and me.exit_layers == [1, 2, 3]
    # the encoder is untouched
    orig = load_model(tmp_path / "clf").base_model.state_dict()
    for k, v in me.backbone.state_dict().items():
        assert torch.equal(v, orig[k]), k
    # heads reproduce sklearn's decision function on the same features
    frame = load_split("sst2", "train", glue_dir).frame
    tok = AutoTokenizer.from_pretrained(out)
    feats = layer_features(me.backbone, tok, frame.iloc[:20])
    with torch.no_grad():
        z = me.heads[2](torch.from_numpy(feats[:, 2])).numpy()
    cache = collect([str(out)], "sst2", "train", tmp_path / "c.parquet", data_dir=glue_dir, progress=False, limit=20)
    np.testing.assert_allclose(cache.logits[:, 2], z, atol=1e-4)
    # even on random features, a linear probe on a toy task beats chance on its training data
    assert cache.correct[:, -1].mean() > 0.6


def test_probe_exits_on_a_plain_encoder_in_memory(tmp_path, tokenizer_dir, glue_dir):
    """A sentence encoder has no classifier head (``load_model`` refuses it): its probes are fitted on the encoder
    alone, kept in memory, collected as a ``(model, tokenizer)`` pair, and saved identically on request."""
    torch.manual_seed(0)
    enc = AutoModel.from_config(tiny_config("bert", 2))
    enc.save_pretrained(tmp_path / "enc")
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp_path / "enc")
    with pytest.raises(RandomHeadsError):
        load_model(tmp_path / "enc")
    probe = probe_exits(tmp_path / "enc", "sst2", data_dir=glue_dir, train_limit=None)
    assert isinstance(probe, ProbeExits) and probe.model.exit_layers == [1, 2]
    assert probe.train_size == len(load_split("sst2", "train", glue_dir).frame)
    assert list(probe.to_frame()["layer"]) == [1, 2] and (probe.train_accuracy > 0.5).all()
    for k, v in probe.model.backbone.state_dict().items():  # the encoder is untouched
        assert torch.equal(v, enc.state_dict()[k]), k
    files = set((tmp_path / "enc").iterdir())
    cache = collect([(probe.model, probe.tokenizer)], "sst2", "test", tmp_path / "c.parquet", data_dir=glue_dir,
                    progress=False, names=["probe"])
    written = {p.name for p in tmp_path.iterdir()} - {"enc", "c.parquet.lock"}  # the lock: collect's, left as is
    assert set((tmp_path / "enc").iterdir()) == files and written == {"c.parquet"}  # no checkpoint written
    assert cache.meta["models"][0]["objective"] == "probe"
    saved = probe.save(tmp_path / "probe")
    assert json.loads((saved / "train_meta.json").read_text())["probes"][1]["layer"] == 2
    again = collect([str(saved)], "sst2", "test", tmp_path / "c2.parquet", data_dir=glue_dir, progress=False,
                    names=["probe"])
    np.testing.assert_array_equal(again.logits, cache.logits)
