"""Chat-completion logprob records (OpenAI / vLLM format) to label-word caches, with the missing-label-word policy.

The real-model test writes records from a SmolLM2-135M-Instruct greedy decode (the project's own path:
``load_causal_lm``, ``encode_prompts``, ``greedy_trajectory``) and checks the import against the full distribution.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_smollm2, toy_sentences
from toolkit.analysis.engine import staged, sweep
from toolkit.caches.classification import load_cache
from toolkit.caches.inputs import cost_unit
from toolkit.imports import RecordError
from toolkit.imports.logprobs import import_chat_logprobs, read_chat_logprobs

WORDS = [("negative", "Negative"), ("positive", "Positive")]


def record(positions, *, model="m", custom_id=None, total_tokens=30) -> dict:
    """A chat completion with logprobs: ``positions`` is a list of {token: logprob} (top-k, best first)."""
    content = [{"token": max(p, key=p.get), "logprob": max(p.values()),
                "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in p.items()]}
               for p in positions]
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(c["token"] for c in content)},
                         "logprobs": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": total_tokens - len(positions), "completion_tokens": len(positions),
                      "total_tokens": total_tokens}}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}} if custom_id else body


def write(path: Path, records) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_label_words_position_and_missing_words(tmp_path):
    recs = [record([{"positive": -0.1, "Positive": -2.5, "neutral": -3.0}]),
            record([{"The": -0.2, "A": -1.9}, {" answer": -0.1, "x": -4.0}, {" negative": -0.3, " positive": -1.4}]),
            record([{"Sure": -0.05, "Well": -3.2}])]  # no label word anywhere: position 0, both floored
    c = import_chat_logprobs(write(tmp_path / "a.jsonl", recs), ["positive", "negative", 0], label_words=WORDS)
    np.testing.assert_allclose(c.logits[0, 0], [-3.0, np.logaddexp(-0.1, -2.5)], rtol=1e-6)  # negative floored
    np.testing.assert_allclose(c.logits[1, 0], [-0.3, -1.4], rtol=1e-6)  # read at position 2
    np.testing.assert_allclose(c.logits[2, 0], [-3.2, -3.2], rtol=1e-6)
    m = c.meta["models"][0]
    assert m["floored"] == 3 and m["floored_ids"] == ["0", "2"] and m["position_histogram"] == [2, 0, 1]
    assert c.labels.tolist() == [1, 0, 0] and cost_unit(c) == "tokens" and c.flops[:, 0].tolist() == [30.0] * 3


def test_two_models_joined_on_custom_id_and_costs(tmp_path):
    a = write(tmp_path / "a.jsonl", [record([{"positive": -0.5, "negative": -1.0}], custom_id=f"r{i}", model="small",
                                             total_tokens=10 + i) for i in range(3)])
    b = write(tmp_path / "b.jsonl", [record([{"negative": -0.2, "positive": -2.0}], custom_id=f"r{i}", model="large")
                                     for i in (2, 0, 1)])  # another order
    c = import_chat_logprobs([a, b], {"r0": 0, "r1": 1, "r2": "negative"}, label_words=WORDS, split="test")
    assert c.stages == ["small", "large"] and c.example_ids.tolist() == ["r0", "r1", "r2"]
    assert c.flops.tolist() == [[10, 40], [11, 41], [12, 42]] and c.labels.tolist() == [0, 1, 0]
    d = import_chat_logprobs([a, b], [0, 1, 0], label_words=WORDS, costs=[0.001, 0.01], cost_unit="dollars",
                             out=tmp_path / "c.parquet")
    assert cost_unit(load_cache(tmp_path / "c.parquet")) == "dollars" and d.flops[0, 1] == pytest.approx(0.011)
    other = write(tmp_path / "o.jsonl", [record([{"positive": -0.5}], custom_id=f"q{i}") for i in range(3)])
    with pytest.raises(RecordError, match=r"o\.jsonl: its record ids differ"):
        import_chat_logprobs([a, other], [0, 1, 0], label_words=WORDS)


@pytest.mark.parametrize("obj, message", [
    ({"choices": [{"logprobs": None}]}, r":1: choices\[0\] has no logprobs.content: request with logprobs=true"),
    ({"choices": []}, r":1: key 'choices' is empty"),
    ({"id": 3}, r":1: no key 'choices'"),
    ({"custom_id": "x", "response": {"status_code": 500}}, r":1: key 'response' has no 'body'"),
    ({"choices": [{"logprobs": {"content": [{"token": "a", "logprob": -1, "top_logprobs": [
        {"token": "positive", "logprob": "high"}]}]}}]}, r"top_logprobs\[0\].logprob must be a number"),
    ({"choices": [{"logprobs": {"content": [{"token": "a", "logprob": -1, "top_logprobs": [
        {"token": "positive", "logprob": 0.5}]}]}}]}, r"top_logprobs\[0\].logprob is 0.5 > 0"),
])
def test_malformed_records_are_named(tmp_path, obj, message):
    p = write(tmp_path / "r.jsonl", [obj])
    with pytest.raises(RecordError, match=message) as e:
        read_chat_logprobs(p, WORDS)
    assert str(p) in str(e.value)


def test_bad_labels_and_words(tmp_path):
    p = write(tmp_path / "r.jsonl", [record([{"positive": -0.1}])])
    with pytest.raises(RecordError, match="label 'maybe' is neither"):
        import_chat_logprobs(p, ["maybe"], label_words=WORDS)
    with pytest.raises(RecordError, match="at least two classes"):
        import_chat_logprobs(p, [0], label_words=["positive"])


@pytest.mark.slow
@requires_smollm2
def test_records_from_a_real_smollm2_decode(tmp_path):
    """SmolLM2 (4-bit weights dequantized) answers a chat prompt; its top-k logprobs, written as an OpenAI
    chat completion, import to exactly the full distribution's label-word log-probabilities where listed, and to
    the top-k floor (flagged) where truncated."""
    import pandas as pd
    import torch

    from toolkit.data.prompts import PROMPT_SETS
    from toolkit.nn.causal.models import encode_prompts, greedy_trajectory, load_causal_lm

    lm = load_causal_lm("SmolLM2-135M-Instruct")
    ps = PROMPT_SETS["sst2_sentiment"]
    text, y = toy_sentences(6, 5)
    prompts = encode_prompts(lm.tokenizer, ps, pd.DataFrame({"text_a": text}))
    forms = {f: c for c, fs in enumerate(ps.label_words) for f in fs}
    full_lp, recs = {}, {3: [], 20: []}
    for i, p in enumerate(prompts):
        traj = greedy_trajectory(lm.model, p, 3)
        lp = torch.log_softmax(torch.as_tensor(traj.final_logits, dtype=torch.float64), -1).numpy()
        full_lp[i] = lp
        for k in recs:
            top = np.argsort(-lp, -1)[:, :k]
            positions = [{lm.tokenizer.decode([int(t)]): float(lp[s, t]) for t in top[s]} for s in range(len(top))]
            recs[k].append(record(positions, model=f"SmolLM2-135M-Instruct top{k}", custom_id=f"toy:{i}",
                                  total_tokens=len(p) + len(top)))
    files = [write(tmp_path / f"top{k}.jsonl", r) for k, r in recs.items()]
    c = import_chat_logprobs(files, y.tolist(), label_words=ps.label_words)
    vocab = [lm.tokenizer.decode([t]).strip() for t in range(lm.model.config.vocab_size)]
    ids = {c_: [t for t, w in enumerate(vocab) if forms.get(w) == c_] for c_ in range(2)}
    for e, k in enumerate(recs):
        got = read_chat_logprobs(files[e], ps.label_words)
        for i in range(len(prompts)):
            s = got["positions"][i]
            top = np.argsort(-full_lp[i][s])[:k]
            for c_ in range(2):
                listed = [t for t in ids[c_] if t in top]
                want = (np.logaddexp.reduce(full_lp[i][s, listed]) if listed else full_lp[i][s, top[-1]])
                assert c.logits[i, e, c_] == pytest.approx(want, abs=1e-5)
                assert got["floored"][i, c_] == (not listed)
    assert c.meta["models"][0]["floored"] > 0  # top-3 truncates some label word
    assert (c.flops[:, 1] > c.flops[:, 0]).all() and sweep(staged(c)).to_frame().shape[0] >= 1


def test_cli(tmp_path, capsys):
    from toolkit.cli import main

    p = write(tmp_path / "r.jsonl", [record([{"positive": -0.1, "x": -5.0}]), record([{"negative": -0.2}])])
    (tmp_path / "y.txt").write_text("positive\n0\n")
    out = tmp_path / "c.parquet"
    assert main(["import", "chat-logprobs", str(p), "--labels", str(tmp_path / "y.txt"), "--label-word",
                 "negative,Negative", "--label-word", "positive,Positive", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy 1.0000, cumulative cost per example (tokens) 30" in text and "2 label-word" in text
    assert load_cache(out).labels.tolist() == [1, 0]
