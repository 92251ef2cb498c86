"""lm-eval logs to cascade caches: real lm-eval runs of tiny Llamas, the file format, and hostile logs.

Fast tests write logs in lm-eval 0.4's ``--log_samples`` format (the slow test checks that format against the real
harness); errors must name the file and the line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.lmeval_logs import write_run
from toolkit.analysis.engine import staged, sweep
from toolkit.caches.classification import load_cache
from toolkit.caches.inputs import cost_unit
from toolkit.imports import RecordError, import_lm_eval, read_lm_eval


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 12)
    a = write_run(tmp_path / "a", -rng.uniform(0.1, 9, (12, 2)), targets, run=0, params=100, model="small")
    b = write_run(tmp_path / "b", -rng.uniform(0.1, 9, (12, 2)), targets, run=1, params=400, model="large")
    return a, b


def logged(path) -> np.ndarray:
    return np.array([[float(r[0]) for r in json.loads(x)["filtered_resps"]] for x in Path(path).read_text().split("\n")
                     if x.strip()])


def test_logits_are_the_logged_log_likelihoods_and_costs_cumulate(two_runs, tmp_path):
    a, b = two_runs
    c = import_lm_eval([a, b], out=tmp_path / "c.parquet", split="test")
    d = load_cache(tmp_path / "c.parquet")
    np.testing.assert_array_equal(d.logits, np.stack([logged(a), logged(b)], 1).astype(np.float32))
    assert d.labels.tolist() == [int(json.loads(x)["target"]) for x in a.read_text().split("\n") if x]
    assert d.stages == ["small", "large"] and d.example_ids[0] == "toy:0" and d.split == "test"
    # no tokenizer at hand: parameters per example, cumulative
    assert cost_unit(d) == "parameters" and (d.flops == [100.0, 500.0]).all()
    assert d.meta["label_names"] == ["bad", "good"] and d.meta["models"][1]["num_parameters"] == 400
    assert "sentence" not in json.dumps(d.meta)  # no document text in the header
    cv = sweep(staged(d))
    assert cv.to_frame()["accuracy"].between(0, 1).all()
    np.testing.assert_array_equal(c.logits, d.logits)


def test_costs_override_and_tokens(two_runs, tmp_path):
    a, b = two_runs
    c = import_lm_eval([a, b], costs=[0.5, np.arange(12.0)], cost_unit="dollars")
    assert cost_unit(c) == "dollars"
    np.testing.assert_allclose(c.flops[:, 1], 0.5 + np.arange(12.0))
    with pytest.raises(RecordError, match="cost_unit"):
        import_lm_eval([a, b], costs=[1, 2])
    # a tokenizer at hand: parameters x the tokens of every request
    tok = tmp_path / "tok"
    folder = bpe_tokenizer(tok)
    c = import_lm_eval([a, b], tokenizers=[folder, folder])
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(folder / "tokenizer.json"))
    n = sum(len(t.encode(f"sentence 3 Answer: {w}", add_special_tokens=False).ids) for w in ("bad", "good"))
    assert cost_unit(c) == "parameters x tokens" and c.flops[3].tolist() == [100.0 * n, 500.0 * n]


def test_example_ids_from_a_document_column(two_runs):
    c = import_lm_eval(list(two_runs), id_field="idx", task="sst2")
    assert c.example_ids[:2].tolist() == ["ex0", "ex1"] and c.task == "sst2" and c.meta["lm_eval_task"] == "toy"
    with pytest.raises(RecordError, match=r"samples_toy.*:1: the document has no column 'nope'"):
        read_lm_eval(two_runs[0], id_field="nope")


# ------------------------------------------------------------------------------------------------ hostile logs
def test_runs_over_other_documents_tasks_choices_targets_are_refused(tmp_path):
    y = np.array([0, 1, 1, 0])
    ll = -np.ones((4, 2))
    a = write_run(tmp_path / "a", ll, y, run=0)
    other_doc = write_run(tmp_path / "d", ll, y, run=1, docs={2: {"sentence": "changed", "label": 1}})
    with pytest.raises(RecordError, match=r"samples_toy_.*\.jsonl:3: doc_id 2 has another document"):
        import_lm_eval([a, other_doc])
    other_choices = write_run(tmp_path / "c", ll, y, run=1, choices=("no", "yes"))
    with pytest.raises(RecordError, match=r":1: doc_id 0 has another choices"):
        import_lm_eval([a, other_choices])
    same_docs = {i: {"sentence": f"sentence {i}", "label": int(y[i]), "idx": f"ex{i}"} for i in range(4)}
    other_targets = write_run(tmp_path / "t", ll, [0, 1, 0, 0], run=1, docs=same_docs)
    with pytest.raises(RecordError, match=r":3: doc_id 2 has another target"):
        import_lm_eval([a, other_targets])
    other_task = write_run(tmp_path / "k", ll, y, run=1, task="other")
    with pytest.raises(RecordError, match=r"samples_other.*task 'other'.*task 'toy'"):
        import_lm_eval([a, other_task])
    assert import_lm_eval([a, other_task], allow_different_tasks=True, names=["x", "y"]).n_stages == 2
    fewer = write_run(tmp_path / "f", ll[:3], y[:3], run=1)
    with pytest.raises(RecordError, match=r"3 documents, .* has 4: doc_id 3 .* is missing"):
        import_lm_eval([a, fewer])
    with pytest.raises(RecordError, match="stage names must differ"):
        import_lm_eval([a, write_run(tmp_path / "s", ll, y, run=1)])


def on_line1(change):
    """An edit of the first line's JSON object."""
    def edit(text):
        lines = text.split("\n")
        obj = json.loads(lines[0])
        change(obj)
        return "\n".join([json.dumps(obj), *lines[1:]])
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda s: s[:-40], r":4: not valid JSON"),
    (on_line1(lambda o: o["filtered_resps"][0].__setitem__(0, "abc")),
     r":1: filtered_resps\[0\] log-likelihood must be a number, got 'abc'"),
    (on_line1(lambda o: o["filtered_resps"].__setitem__(1, None)), r":1: filtered_resps\[1\] log-likelihood must be"),
    (lambda s: s.replace('"doc_id": 2', '"doc_id": 1'), r":3: doc_id 1 again \(first on line 2\)"),
    (on_line1(lambda o: o.pop("filtered_resps")), r":1: no key 'filtered_resps'"),
    (on_line1(lambda o: o.__setitem__("doc_id", "0")), r":1: key 'doc_id' must be int"),
    (on_line1(lambda o: o.__setitem__("target", "7")), r":1: target 7 is out of range for 2 choices"),
    (on_line1(lambda o: o.__setitem__("target", "maybe")), r":1: target 'maybe' is neither"),
    (on_line1(lambda o: o["filtered_resps"].pop()), r":1: 1 responses for 2 choices"),
    (on_line1(lambda o: o.__setitem__("arguments", {"gen_args_0": {"arg_0": "x"}})), r":1: key 'arguments' must hold"),
    (lambda s: "", r"no samples"),
    (lambda s: "[1, 2]\n", r":1: expected a JSON object"),
])
def test_malformed_lines_are_named(tmp_path, edit, message):
    p = write_run(tmp_path, -np.ones((4, 2)), [0, 1, 1, 0])
    p.write_text(edit(p.read_text()))
    with pytest.raises(RecordError, match=message) as e:
        read_lm_eval(p)
    assert str(p) in str(e.value)


def test_missing_files_and_parameters(tmp_path):
    with pytest.raises(RecordError, match=r"nope\.jsonl: no such file"):
        read_lm_eval(tmp_path / "nope.jsonl")
    with pytest.raises(RecordError, match="a folder"):
        read_lm_eval(tmp_path)
    a = write_run(tmp_path / "a", -np.ones((3, 2)), [0, 1, 0], results=False)
    with pytest.raises(RecordError, match=r"samples_toy.*: no parameter count .*--cost"):
        import_lm_eval([a])
    assert import_lm_eval([a], costs=[3.0], cost_unit="seconds").flops.tolist() == [[3.0]] * 3


def test_varying_choice_counts_are_refused(tmp_path):
    p = write_run(tmp_path, -np.ones((2, 3)), [0, 2], choices=("a", "b", "c"))
    lines = p.read_text().split("\n")
    two = write_run(tmp_path / "two", -np.ones((2, 2)), [0, 1]).read_text().split("\n")
    p.write_text("\n".join([lines[0], two[1]]) + "\n")
    with pytest.raises(RecordError, match=r":2: 2 choices, but line 1 has 3"):
        read_lm_eval(p)


def test_cli_import_writes_a_cache(two_runs, tmp_path, capsys):
    from toolkit.cli import main

    out = tmp_path / "c.parquet"
    assert main(["import", "lm-eval", *map(str, two_runs), "--out", str(out), "--split", "cal",
                 "--cost", "1", "--cost", "2.5", "--cost-unit", "seconds"]) == 0
    assert "cumulative cost per example (seconds) 3.5" in capsys.readouterr().out
    assert load_cache(out).flops[0].tolist() == [1.0, 3.5]
    assert main(["import", "lm-eval", str(two_runs[0]), "--out", str(out), "--cost", "1"]) == 2
    assert "cost_unit" in capsys.readouterr().err


def test_a_thousand_examples_three_runs(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1000)
    runs = [write_run(tmp_path / str(k), -rng.uniform(0, 5, (1000, 4)), y, run=k, params=10 ** (k + 6),
                      model=f"m{k}", choices="abcd") for k in range(3)]
    c = import_lm_eval(runs)
    assert c.logits.shape == (1000, 3, 4) and (np.diff(c.flops, axis=1) > 0).all()


# ------------------------------------------------------------------------------------------- the real harness
def bpe_tokenizer(folder: Path) -> Path:
    """A byte-level BPE tokenizer trained on toy sentences (no download), saved as a transformers folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from conftest import toy_sentences

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(toy_sentences(300, 0)[0] + ["Question: is it good or bad? Answer:"],
                            trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            pad_token="<|endoftext|>").save_pretrained(folder)
    return folder


def tiny_llama(folder: Path, tok: Path, layers: int, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    t = AutoTokenizer.from_pretrained(tok)
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=layers, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=len(t), max_position_embeddings=128,
                                 initializer_range=0.3, tie_word_embeddings=True)).save_pretrained(folder)
    t.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_real_lm_eval_runs_of_two_tiny_llamas(tmp_path, glue_dir):
    pytest.importorskip("lm_eval")
    pytest.importorskip("transformers")
    tok = bpe_tokenizer(tmp_path / "tok")
    small, large = tiny_llama(tmp_path / "small", tok, 1, 0), tiny_llama(tmp_path / "large", tok, 3, 1)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(f"""task: toy_sst2
dataset_path: csv
dataset_kwargs:
  data_files:
    validation: {glue_dir / "sst2" / "dev.tsv"}
  delimiter: "\\t"
validation_split: validation
output_type: multiple_choice
doc_to_text: "{{{{sentence}}}} Question: is it good or bad? Answer:"
doc_to_target: label
doc_to_choice: ["bad", "good"]
metric_list:
  - metric: acc
""")
    samples = []
    for m in (small, large):
        out = tmp_path / f"out-{m.name}"
        subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                        f"pretrained={m},dtype=float32", "--include_path", str(tmp_path / "tasks"), "--tasks",
                        "toy_sst2", "--device", "cpu", "--batch_size", "8", "--limit", "24", "--log_samples",
                        "--output_path", str(out)], check=True, capture_output=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                            "HF_DATASETS_CACHE": str(tmp_path / "hf")})
        samples.append(next(out.rglob("samples_toy_sst2_*.jsonl")))
    c = import_lm_eval(samples, out=tmp_path / "c.parquet", split="test")
    d = load_cache(tmp_path / "c.parquet")
    assert d.stages == ["small", "large"] and cost_unit(d) == "parameters x tokens"
    np.testing.assert_array_equal(d.logits, np.stack([logged(s) for s in samples], 1).astype(np.float32))
    assert d.labels.tolist() == [int(json.loads(x)["target"]) for x in samples[0].read_text().split("\n") if x]
    dev = (glue_dir / "sst2" / "dev.tsv").read_text().split("\n")[1:25]
    assert d.labels.tolist() == [int(r.split("\t")[1]) for r in dev]
    params = [m["num_parameters"] for m in d.meta["models"]]
    assert params[0] < params[1] and (d.flops[:, 1] > d.flops[:, 0]).all()
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(small / "tokenizer.json"))
    first = json.loads(samples[0].read_text().split("\n")[0])["arguments"]
    n = sum(len(t.encode(r["arg_0"] + r["arg_1"], add_special_tokens=False).ids) for r in first.values())
    assert d.flops[0].tolist() == [params[0] * n, (params[0] + params[1]) * n]
    assert not (d.logits[:, 0] == d.logits[:, 1]).all()  # two different models
    assert sweep(staged(c)).to_frame().shape[0] >= 2
    raw = (tmp_path / "c.parquet").read_bytes()
    assert b"movie" not in raw and b"Answer" not in raw  # no document or prompt text stored
    shutil.rmtree(tmp_path / "out-small")
