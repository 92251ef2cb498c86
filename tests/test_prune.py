import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoTokenizer

from toolkit.analysis.cost.encoder import exit_flops, layer_flops
from toolkit.nn.encoder.models import MultiExitModel, load_model
from toolkit.nn.encoder.prune import importance_scores, prune_layers, slenderize, train_batches


@pytest.fixture
def me(tiny_encoder_dir):
    return MultiExitModel.from_backbone(tiny_encoder_dir, num_labels=2, seed=0).eval()


def _logits(m, tok, texts=("the movie was good", "the plot was awful and very dull")):
    with torch.no_grad():
        return m(**tok(list(texts), padding=True, return_tensors="pt")).logits


def test_pruning_nothing_leaves_outputs_unchanged(me, tiny_encoder_dir, glue_dir):
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    before = _logits(me, tok)
    slenderize(me, train_batches(tok, "sst2", 2, 8, data_dir=glue_dir), width=1.0)
    assert torch.equal(_logits(me, tok), before)


def test_pruned_model_roundtrips_and_flops_match_cost_model(me, tiny_encoder_dir, glue_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    info = slenderize(me, train_batches(tok, "sst2", 3, 8, data_dir=glue_dir), width=0.5)
    assert me.config.backbone["layer_num_heads"] == [2, 2, 2]
    assert me.config.backbone["layer_intermediate_sizes"] == [32, 32, 32]
    assert all(len(k) == 2 for k in info["kept_heads"])
    out = _logits(me, tok)
    me.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    assert torch.equal(_logits(again, tok), out)
    # FLOPs: torch's counter on the pruned encoder (eager attention shows the score matmuls) == cost model
    again.backbone.config._attn_implementation = "eager"
    ids = torch.randint(5, 50, (1, 9))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        again.backbone(input_ids=ids, attention_mask=torch.ones_like(ids))
    H = 32
    pooler = 2 * H * H if getattr(again.backbone, "pooler", None) is not None else 0
    expect = sum(layer_flops(9, H, 32, 2 * 8) for _ in range(3)) + pooler
    assert fc.get_total_flops() == expect
    f = exit_flops([9], again.config.backbone, again.exit_layers, 2)
    assert f[0, -1] == pytest.approx(sum(layer_flops(9, H, 32, 16) for _ in range(3)) + 3 * (9 * H + 2 * H * 2))


def test_scores_reflect_exit_losses(me, tiny_encoder_dir, glue_dir):
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    heads, neurons = importance_scores(me, train_batches(tok, "sst2", 2, 8, data_dir=glue_dir))
    assert [h.shape for h in heads] == [(4,)] * 3 and [n.shape for n in neurons] == [(64,)] * 3
    assert all(np.isfinite(h).all() and (h >= 0).all() for h in heads)
    # zeroing a head's weights removes it: its importance becomes 0
    sa = me.backbone.encoder.layer[0].attention.self
    with torch.no_grad():
        for lin in (sa.query, sa.key, sa.value):
            lin.weight[:8] = 0
            lin.bias[:8] = 0
        me.backbone.encoder.layer[0].attention.output.dense.weight[:, :8] = 0
    heads, _ = importance_scores(me, train_batches(tok, "sst2", 1, 8, data_dir=glue_dir))
    assert heads[0][0] == 0 and heads[0][1] > 0


def test_bad_width_and_architecture(me, tiny_encoder_dir, glue_dir):
    with pytest.raises(ValueError, match="width"):
        slenderize(me, [], width=0)
    from transformers import AutoModel

    from conftest import tiny_config

    with pytest.raises(NotImplementedError, match="not supported for the mpnet family"):
        prune_layers(AutoModel.from_config(tiny_config("mpnet", 2)), [[0]], [[0]])
    from toolkit.nn.common.families import family_of

    assert [family_of(AutoModel.from_config(tiny_config(a, 2))).name for a in ("bert", "roberta", "mpnet")] == \
        ["bert-like", "bert-like", "mpnet"]
    with pytest.raises(NotImplementedError, match="no model family for Linear"):
        family_of(torch.nn.Linear(2, 2))
