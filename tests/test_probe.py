import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import tiny_config
from toolkit.data import load_split
from toolkit.nn.collect import collect
from toolkit.nn.models import MultiExitModel, load_model
from toolkit.nn.probe import fit_probe_exits, layer_features


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
