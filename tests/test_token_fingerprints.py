"""LLM token caches record their model's weight fingerprint, so a CALM policy chosen on one runs only on those
weights; caches collected before (the shipped SmolLM2 ones) can get it added, honestly marked as added later, once
the model is shown to reproduce them (before: the collector recorded none, so a policy chosen on a token cache
could not be tied to its weights without typing a sha256)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import numpy as np
import pytest

from toolkit.caches.io import CacheError, read_cache_table, read_header, write_cache_table
from toolkit.caches.tokens import load_llm_cache, save_llm_cache
from toolkit.caches.upgrade import add_weights_fingerprint
from toolkit.testing import random_token_cache

SHA_A, SHA_B = "a" * 64, "b" * 64


# ------------------------------------------------------------------------------------------ torch-free
def test_adding_a_fingerprint_keeps_the_data_and_says_it_was_added_later(tmp_path):
    path = save_llm_cache(random_token_cache(300, layers=4), tmp_path / "t.parquet")
    os.chmod(path, 0o640)
    before, head0 = read_cache_table(path, kind="llm_tokens", schema_version=2)
    hash0 = read_header(path)["integrity"]
    assert add_weights_fingerprint(path, SHA_A, how="measured on the packaged weights") is True
    after, head = read_cache_table(path, kind="llm_tokens", schema_version=2)  # integrity verified
    assert after.replace_schema_metadata(None).equals(before.replace_schema_metadata(None))
    assert head["model"]["weights_sha256"] == SHA_A
    assert head["model"]["weights_sha256_added"] == {"added_after_collection": True,
                                                     "how": "measured on the packaged weights"}
    assert {k: v for k, v in head.items() if k != "model"} == {k: v for k, v in head0.items() if k != "model"}
    assert read_header(path)["integrity"] != hash0  # the content hash covers the new header
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert load_llm_cache(path).model["weights_sha256"] == SHA_A
    assert add_weights_fingerprint(path, SHA_A, how="again") is False  # already recorded: untouched
    with pytest.raises(CacheError, match=f"^{path}: header key 'model.weights_sha256' already records aaaaaaaaaaaa"):
        add_weights_fingerprint(path, SHA_B, how="other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_adding_a_fingerprint_refuses_what_it_cannot_do_honestly(tmp_path):
    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_classification_cache

    path = save_llm_cache(random_token_cache(100, layers=4), tmp_path / "t.parquet")
    with pytest.raises(CacheError, match="64 lowercase hex"):
        add_weights_fingerprint(path, "ABC", how="x")
    with pytest.raises(CacheError, match="say how the fingerprint was established"):
        add_weights_fingerprint(path, SHA_A, how=" ")
    link = tmp_path / "l.parquet"
    link.symlink_to(path)
    with pytest.raises(CacheError, match="a symbolic link"):
        add_weights_fingerprint(link, SHA_A, how="x")
    cls = save_cache(random_classification_cache(20, 2, 2), tmp_path / "c.parquet")
    with pytest.raises(CacheError, match="not an LLM token cache"):
        add_weights_fingerprint(cls, SHA_A, how="x")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError):
        add_weights_fingerprint(path, SHA_A, how="x")


def test_a_malformed_fingerprint_in_a_header_is_refused_on_load(tmp_path):
    table, head = read_cache_table(save_llm_cache(random_token_cache(50, layers=3), tmp_path / "t.parquet"),
                                   kind="llm_tokens", schema_version=2)
    head["model"]["weights_sha256"] = "not-a-sha"
    write_cache_table(table, tmp_path / "bad.parquet", head)
    with pytest.raises(CacheError, match=r"bad.parquet: header key 'model.weights_sha256' must be null or 64"):
        load_llm_cache(tmp_path / "bad.parquet")


def test_a_policy_takes_the_token_caches_fingerprint_and_refuses_other_weights_given(tmp_path):
    from toolkit.analysis.engine import choose, staged
    from toolkit.policy import Policy, PolicyError

    c = random_token_cache(2000, layers=4, families=("lens",), split="cal")
    c = dataclasses.replace(c, model={**c.model, "weights_sha256": SHA_A}, families={"lens": {"kind": "logit_lens"}})
    path = save_llm_cache(c, tmp_path / "c.parquet")
    op = choose(staged(load_llm_cache(path), family="lens"), metric="agreement", max_drop=0.1)
    p = Policy.from_operating_point(op, models="m", exit="lens")
    assert p.models[0].weights_sha256 == SHA_A
    with pytest.raises(PolicyError, match=r"chosen on weights aaaaaaaaaaaa.*weights= gives bbbbbbbbbbbb"):
        Policy.from_operating_point(op, models="m", exit="lens", weights=SHA_B)
    assert Policy.from_operating_point(op, models="m", exit="lens", weights=SHA_A).models[0].weights_sha256 == SHA_A


def test_the_shipped_token_caches_record_their_fingerprint_as_added_later():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "data" / "llm").glob("smollm2_*.parquet"))
    assert files
    for f in files:
        model = read_header(f)["model"]
        assert model["weights_sha256"] == "b0549490b5a4497b648218b73abebfa92a382e380c3314a3746752c562b24c42", f
        added = model["weights_sha256_added"]
        assert added["added_after_collection"] is True and "reproduced the cache's prompt lengths" in added["how"]


# ------------------------------------------------------------------------------------------ collector and runtime
@pytest.fixture(scope="module")
def two(tmp_path_factory, tokenizer_dir, glue_dir):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from conftest import tiny_causal_lm
    from toolkit.nn.causal.collect import collect_llm_tokens
    from toolkit.nn.causal.models import load_causal_lm

    d = tmp_path_factory.mktemp("fp")
    a = load_causal_lm(tiny_causal_lm(d / "A", tokenizer_dir, seed=0))
    b = load_causal_lm(tiny_causal_lm(d / "B", tokenizer_dir, seed=1))
    cache = collect_llm_tokens(str(d / "A"), "sst2_sentiment", "cal", d / "cal.parquet", limit=6, max_new_tokens=8,
                               data_dir=glue_dir, progress=False, lm=a)
    return {"dir": d, "a": a, "b": b, "cache": cache, "glue": glue_dir}


@pytest.mark.usefixtures("one_torch_thread")
def test_the_collector_records_the_fingerprint_and_a_chosen_policy_refuses_other_weights(two):
    from toolkit.analysis.engine import choose, staged
    from toolkit.nn.causal.decode import decoder_from_policy
    from toolkit.nn.common.parts import weights_sha256
    from toolkit.policy import Policy, PolicyError

    sha = weights_sha256(two["a"].model)
    assert two["cache"].model["weights_sha256"] == sha
    assert "weights_sha256_added" not in two["cache"].model  # measured by the collector, not added
    op = choose(staged(two["cache"], family="lens", checked_layers=[1]), rule="target", target=0.0,
                metric="agreement")
    policy = Policy.from_operating_point(op, models=str(two["dir"] / "A"))  # no weights= to type
    assert policy.models[0].weights_sha256 == sha
    assert decoder_from_policy(policy, two["a"].model) is not None
    with pytest.raises(PolicyError, match="has other weights"):
        decoder_from_policy(policy, two["b"].model)


def _without_fingerprint(src, dst):
    table, head = read_cache_table(src, kind="llm_tokens", schema_version=2)
    head["model"] = {k: v for k, v in head["model"].items() if k != "weights_sha256"}
    return write_cache_table(table, dst, {k: v for k, v in head.items() if k != "integrity"})


@pytest.mark.usefixtures("one_torch_thread")
def test_an_older_cache_gets_the_fingerprint_only_from_the_model_that_reproduces_it(two, tmp_path):
    from toolkit.nn.causal.collect import fingerprint_token_cache
    from toolkit.nn.common.parts import weights_sha256

    old = _without_fingerprint(two["cache"].meta["path"], tmp_path / "old.parquet")
    assert "weights_sha256" not in read_header(old)["model"]
    with pytest.raises(CacheError, match=r"header key 'model' differs from the model given in "
                                         r"\['folder', 'origin', 'path'\]"):
        fingerprint_token_cache(old, two["b"], data_dir=two["glue"])
    # the same model record, other weights
    b_as_a = dataclasses.replace(two["b"], path=two["a"].path, folder=two["a"].folder, origin=two["a"].origin)
    with pytest.raises(CacheError, match="does not reproduce the cache's tokens"):
        fingerprint_token_cache(old, b_as_a, data_dir=two["glue"])
    assert "weights_sha256" not in read_header(old)["model"]  # nothing written
    sha = fingerprint_token_cache(old, two["a"], check_prompts=3, data_dir=two["glue"])
    assert sha == weights_sha256(two["a"].model)
    model = load_llm_cache(old).model
    assert model["weights_sha256"] == sha and model["weights_sha256_added"]["added_after_collection"] is True
    assert "reproduced the cache's prompt lengths and" in model["weights_sha256_added"]["how"]
    new, orig = load_llm_cache(old), two["cache"]
    assert np.array_equal(new.tokens, orig.tokens) and all(np.array_equal(new.stats[f], orig.stats[f])
                                                           for f in orig.family_names)
    json.dumps(model)  # the header stays plain JSON


@pytest.mark.usefixtures("one_torch_thread")
def test_llm_classifier_caches_record_the_fingerprint_and_refuse_states_of_other_weights(two, tmp_path):
    from toolkit.nn.causal.collect import llm_classifier_caches, prompt_states
    from toolkit.nn.common.parts import weights_sha256

    st = prompt_states(two["a"], "sst2_label", "test", tmp_path / "a.npz", limit=6, data_dir=two["glue"],
                       progress=False)
    assert str(st["weights_sha256"]) == weights_sha256(two["a"].model)
    caches = llm_classifier_caches(two["a"], "sst2_label", st, layers=[1, 2])
    assert caches["zs_lens"].meta["models"][0]["weights_sha256"] == weights_sha256(two["a"].model)
    with pytest.raises(CacheError, match="prompt states were computed with other weights"):
        llm_classifier_caches(two["b"], "sst2_label", st, layers=[1, 2])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.usefixtures("one_torch_thread")
def test_upgrade_cache_adds_the_fingerprint_from_the_command_line(two, tmp_path, capsys):
    from toolkit.cli import main
    from toolkit.nn.common.parts import weights_sha256

    old = _without_fingerprint(two["cache"].meta["path"], tmp_path / "old.parquet")
    assert main(["upgrade-cache", str(old), "--add-weights-fingerprint", "--check-prompts", "2",
                 "--data-dir", str(two["glue"])]) == 0
    out = capsys.readouterr().out
    assert "already current (verified)" in out and "added (the model reproduced its first 2 prompts" in out
    assert read_header(old)["model"]["weights_sha256"] == weights_sha256(two["a"].model)
    assert main(["upgrade-cache", str(old), "--add-weights-fingerprint", "--data-dir", str(two["glue"])]) == 0
    assert "already recorded" in capsys.readouterr().out
    cls = tmp_path / "c.parquet"
    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_classification_cache
    save_cache(random_classification_cache(10, 2, 2), cls)
    assert main(["upgrade-cache", str(cls), "--add-weights-fingerprint"]) == 2
    assert "LLM token caches only" in capsys.readouterr().err
