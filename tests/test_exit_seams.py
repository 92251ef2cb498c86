"""Hostile tests: tuned LLM exits are tied to the model they were trained on, and every broken exit folder gives a
clear error naming the file (issue 26). Each test fails on 28afd11."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import tiny_causal_lm  # noqa: E402
from toolkit.nn.causal.exits import LogitLens, TunedExits, load_exits  # noqa: E402
from toolkit.nn.causal.models import load_causal_lm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two(tmp_path_factory, tokenizer_dir):
    """Models A and B of the same depth and width (other seeds) and tuned exits trained on A."""
    d = tmp_path_factory.mktemp("seams")
    a = load_causal_lm(tiny_causal_lm(d / "A", tokenizer_dir, seed=0))
    b = load_causal_lm(tiny_causal_lm(d / "B", tokenizer_dir, seed=1))
    torch.manual_seed(2)
    ex = TunedExits(a.model, info={"model": a.info()})
    with torch.no_grad():
        for t in ex.translators:
            t.weight.normal_(0, 0.3)
    ex.save_pretrained(d / "exits_A")
    return {"dir": d, "a": a, "b": b, "exits": d / "exits_A"}


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_tuned_exits_refuse_another_model_of_the_same_shape(two):
    assert isinstance(TunedExits.from_pretrained(two["exits"], two["a"].model), TunedExits)
    with pytest.raises(ValueError, match=r"exits_A.*trained on other weights"):
        TunedExits.from_pretrained(two["exits"], two["b"].model)
    with pytest.raises(ValueError, match="trained on other weights"):
        load_exits(str(two["exits"]), two["b"].model)


def test_llm_generate_refuses_exits_of_another_model(two, tmp_path, capsys):
    from toolkit.cli import main

    (tmp_path / "in.txt").write_text("good movie\n", encoding="utf-8")
    policy = {"model": str(two["dir"] / "B"), "method": "calm", "checked_layers": [1, 2], "thresholds": 0.5,
              "exit": {"kind": "tuned", "folder": str(two["exits"])}, "max_new_tokens": 3}
    (tmp_path / "p.json").write_text(json.dumps(policy))
    assert main(["llm-generate", "--policy", str(tmp_path / "p.json"), "--input", str(tmp_path / "in.txt")]) == 2
    assert "trained on other weights" in capsys.readouterr().err


def test_tuned_folder_named_lens_is_not_the_logit_lens(two, tmp_path, monkeypatch):
    from toolkit.nn.causal.decode import load_exit
    from toolkit.policy import Policy

    _copy(two["exits"], tmp_path / "lens")
    monkeypatch.chdir(tmp_path)
    policy = Policy.calm("m", checked_layers=[1], thresholds=0.5, exit={"kind": "tuned", "folder": "lens"})
    assert isinstance(load_exit(policy, two["a"].model), TunedExits)
    assert isinstance(load_exit(Policy.calm("m", checked_layers=[1], thresholds=0.5), two["a"].model), LogitLens)
    with pytest.raises(ValueError, match="ambiguous"):
        load_exits("lens", two["a"].model)  # a folder named lens beside the lens: say which


def test_nan_translator_weights_refused(two, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy(two["exits"], tmp_path / "nan")
    w = load_file(str(d / "translators.safetensors"))
    next(iter(w.values())).view(-1)[0] = float("nan")
    save_file(w, str(d / "translators.safetensors"))
    with pytest.raises(ValueError, match=r"translators.safetensors.*(NaN|finite)"):
        TunedExits.from_pretrained(d, two["a"].model)


def test_wrong_shapes_and_truncated_weights_name_the_file(two, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy(two["exits"], tmp_path / "shape")
    w = load_file(str(d / "translators.safetensors"))
    k = next(iter(w))
    w[k] = torch.zeros(3, 5)
    save_file(w, str(d / "translators.safetensors"))
    with pytest.raises(ValueError, match=rf"translators.safetensors.*{k}"):
        TunedExits.from_pretrained(d, two["a"].model)
    d = _copy(two["exits"], tmp_path / "trunc")
    raw = (d / "translators.safetensors").read_bytes()
    (d / "translators.safetensors").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="translators.safetensors"):
        TunedExits.from_pretrained(d, two["a"].model)


@pytest.mark.parametrize("text", ['{"kind": "tuned_exits", "layers": ', "[1, 2]", '{"kind": "tuned_exits"}'])
def test_exits_json_errors_name_the_file(two, tmp_path, text):
    d = _copy(two["exits"], tmp_path / "json")
    (d / "exits.json").write_text(text)
    with pytest.raises(ValueError, match=r"json[/\\]exits.json"):
        TunedExits.from_pretrained(d, two["a"].model)


def test_llm_generate_on_gpt2_is_a_clear_error(tmp_path, tokenizer_dir, capsys):
    from toolkit.cli import main

    folder = tiny_causal_lm(tmp_path / "gpt2", tokenizer_dir, arch="gpt2", layers=3)
    (tmp_path / "in.txt").write_text("good movie\n", encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps({"model": str(folder), "method": "self_speculative",
                                                 "draft_layer": 1, "draft_length": 2, "max_new_tokens": 3}))
    assert main(["llm-generate", "--policy", str(tmp_path / "p.json"), "--input", str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err
    assert "GPT2LMHeadModel" in err and "Llama" in err
