"""Early-exit decoding for causal LMs on tiny Llamas built from configs: self-speculative decoding equals greedy
decoding token for token with the offline acceptance counts; CALM-style decoding equals a plain re-implementation
with explicit per-layer key/value lists; batches equal single rows; FLOPs equal the cost model; policies validate."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from support.torch_models import M, V, prompts_of, tiny_llama  # noqa: E402
from toolkit.analysis.cost.causal import (  # noqa: E402
    CausalLMDims,
    Pass,
    calm_token_flops,
    full_token_flops,
    passes_reads,
    self_speculative_block_flops,
    self_speculative_passes,
)
from toolkit.nn.causal.decode import (  # noqa: E402
    CalmDecoder,
    LogitLens,
    SelfSpeculativeDecoder,
    greedy_decode,
    token_confidence,
)
from toolkit.nn.causal.reference import offline_acceptance, teacher_forced_exits  # noqa: E402
from toolkit.policy import Policy, PolicyError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def prompts():
    return prompts_of((5, 9, 1, 13))


@pytest.fixture(scope="module")
def reference(model, prompts):
    """The full model's greedy outputs (Hugging Face generate, one prompt at a time)."""
    out = []
    for p in prompts:
        ids = model.generate(torch.tensor([p]), max_new_tokens=M, min_new_tokens=M, do_sample=False)
        out.append(ids[0, len(p):].numpy())
    return out


def offline(model, prompts, outputs, k, d, max_new=M):
    return [offline_acceptance(teacher_forced_exits(model, p, t)[0][:, k - 1], t, d, max_new)
            for p, t in zip(prompts, outputs)]


def assert_rows_equal(got, want):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(np.asarray(a), np.asarray(b)), f"row {i}: {np.asarray(a)} != {np.asarray(b)}"


def test_plain_greedy_equals_generate(model, prompts, reference):
    assert_rows_equal(greedy_decode(model, prompts, M).tokens, reference)


@pytest.mark.parametrize("k,d", [(1, 1), (1, 4), (3, 1), (3, 3), (3, 7), (5, 2), (5, 6)])
def test_self_speculative_equals_greedy_and_offline_acceptance(model, prompts, reference, k, d):
    want_acc = offline(model, prompts, reference, k, d)
    for p, ref, acc in zip(prompts, reference, want_acc):  # batch size 1
        res = SelfSpeculativeDecoder(model, k, d).generate([p], M)
        assert_rows_equal(res.tokens, [ref])
        assert_rows_equal(res.accepted, [acc])
        assert (res.accepted[0] + 1).sum() >= M  # every block emits accepted + 1 tokens (the last may be cut)
    res = SelfSpeculativeDecoder(model, k, d).generate(prompts, M)  # one batch: rows advance by different amounts
    assert_rows_equal(res.tokens, reference)
    assert_rows_equal(res.accepted, want_acc)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), k=st.integers(1, 5), d=st.integers(1, 7),
       max_new=st.integers(1, 14), eos=st.one_of(st.none(), st.integers(0, V - 1)),
       slack=st.sampled_from([0.0, 0.5, math.inf]), seed=st.integers(0, 10**6))
def test_self_speculative_property(model, lengths, k, d, max_new, eos, slack, seed):
    """Any batch of prompts, draft layer, draft length, budget and end-of-sequence token: the rows equal greedy
    decoding one prompt at a time, and the accepted counts equal the offline prediction."""
    batch = prompts_of(lengths, seed)
    eos_ids = None if eos is None else [eos]
    ref = [greedy_decode(model, [p], max_new, eos_token_ids=eos_ids).tokens[0] for p in batch]
    res = SelfSpeculativeDecoder(model, k, d, eos_token_ids=eos_ids, compact_slack=slack).generate(batch, max_new)
    assert_rows_equal(res.tokens, ref)
    assert_rows_equal(res.accepted, offline(model, batch, ref, k, d, max_new))
    for t in ref:
        assert len(t) == max_new or (eos is not None and t[-1] == eos and (t[:-1] != eos).all())


def test_acceptance_covers_all_counts(model, prompts, reference):
    """The fidelity cases above exercise rejection at every draft position and full acceptance."""
    acc = np.concatenate(offline(model, prompts, reference, 3, 3))
    assert set(acc.tolist()) == {0, 1, 2, 3}


def test_self_speculative_compaction_keeps_output(model, prompts, reference):
    """Re-packing the cache after every block (slack 0) and never (inf) gives the same tokens and counts."""
    a = SelfSpeculativeDecoder(model, 3, 4, compact_slack=0.0).generate(prompts, M)
    b = SelfSpeculativeDecoder(model, 3, 4, compact_slack=math.inf).generate(prompts, M)
    assert_rows_equal(a.tokens, reference)
    assert_rows_equal(b.tokens, reference)
    assert_rows_equal(a.accepted, b.accepted)


def test_self_speculative_end_of_sequence(model, prompts, reference):
    """With an end-of-sequence token that the full model emits mid-way, outputs stop there, as generate's do."""
    eos = int(reference[0][6])
    want = []
    for p in prompts:
        ids = model.generate(torch.tensor([p]), max_new_tokens=M, do_sample=False, eos_token_id=eos,
                             pad_token_id=0)
        t = ids[0, len(p):].numpy()
        want.append(t[:np.flatnonzero(t == eos)[0] + 1] if (t == eos).any() else t)
    assert len(want[0]) == 7
    for k, d in ((3, 3), (5, 6), (1, 2)):
        res = SelfSpeculativeDecoder(model, k, d, eos_token_ids=[eos]).generate(prompts, M)
        assert_rows_equal(res.tokens, want)
        assert_rows_equal(res.accepted, offline(model, prompts, want, k, d))


def test_exit_callable_is_used(model, prompts):
    """Any exit(layer, hidden) works; a constant exit drafts one token, so acceptance follows it."""
    calls = []

    def const_exit(layer, hidden):
        calls.append(layer)
        z = torch.zeros((*hidden.shape[:-1], V), dtype=hidden.dtype)
        z[..., 7] = 1.0
        return z

    ref = greedy_decode(model, prompts[:1], M).tokens[0]
    res = SelfSpeculativeDecoder(model, 2, 3, const_exit).generate(prompts[:1], M)
    assert set(calls) == {2}
    assert_rows_equal(res.tokens, [ref])
    assert_rows_equal(res.accepted, [offline_acceptance(np.full(len(ref), 7), ref, 3, M)])


def test_float32_eager_attention(prompts):
    model = tiny_llama(dtype=torch.float32, attn="eager", seed=3)
    ref = greedy_decode(model, prompts, M).tokens
    hf = [model.generate(torch.tensor([p]), max_new_tokens=M, min_new_tokens=M, do_sample=False)[0, len(p):]
          for p in prompts]
    assert_rows_equal(ref, [h.numpy() for h in hf])
    assert_rows_equal(SelfSpeculativeDecoder(model, 2, 3).generate(prompts, M).tokens, ref)


# ---------------------------------------------------------------------------------------------------------------
# CALM: a plain re-implementation (explicit per-layer key/value lists, own RoPE, norm and attention)


def plain_calm(model, prompt, max_new, checked, thresholds, score="max_prob", temperature=1.0):
    """CALM decoding of one prompt, written plainly: tokens and exit layers (L = no early exit)."""
    W, cfg = model.model, model.config
    L, nh, nkv = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    hd = cfg.hidden_size // nh
    theta = cfg.rope_parameters["rope_theta"]
    inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    K, Vs = [[] for _ in range(L)], [[] for _ in range(L)]
    thr = dict(zip(checked, np.broadcast_to(thresholds, (len(checked),))))

    def rms(norm, x):
        return norm.weight * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + norm.variance_epsilon))

    def rope(x, pos):  # x [heads, hd]
        f = pos * inv_freq
        cos, sin = torch.cat([f, f]).cos().to(x.dtype), torch.cat([f, f]).sin().to(x.dtype)
        rot = torch.cat([-x[:, hd // 2:], x[:, :hd // 2]], -1)
        return x * cos + rot * sin

    def store_kv(i, h, pos):
        a = W.layers[i].self_attn
        x = rms(W.layers[i].input_layernorm, h)
        K[i].append(rope(a.k_proj(x).view(nkv, hd), pos))
        Vs[i].append(a.v_proj(x).view(nkv, hd))
        return x

    def layer(i, h, pos):
        lay, a = W.layers[i], W.layers[i].self_attn
        x = store_kv(i, h, pos)
        q = rope(a.q_proj(x).view(nh, hd), pos)
        keys = torch.stack(K[i]).repeat_interleave(nh // nkv, 1)  # [t, nh, hd]
        vals = torch.stack(Vs[i]).repeat_interleave(nh // nkv, 1)
        w = torch.softmax(torch.einsum("hd,thd->ht", q, keys) / math.sqrt(hd), -1)
        h = h + a.o_proj(torch.einsum("ht,thd->hd", w, vals).reshape(-1))
        return h + lay.mlp(rms(lay.post_attention_layernorm, h))

    def head(h):
        return model.lm_head(rms(W.norm, h))

    with torch.inference_mode():
        for pos, t in enumerate(prompt[:-1]):
            h = W.embed_tokens.weight[t]
            for i in range(L):
                h = layer(i, h, pos)
        tokens, exits, x = [], [], prompt[-1]
        for pos in range(len(prompt) - 1, len(prompt) - 1 + max_new):
            h, out = W.embed_tokens.weight[x], None
            for i in range(L):
                if out is not None:
                    store_kv(i, h, pos)  # state propagation from the exited hidden state
                    continue
                h = layer(i, h, pos)
                if i + 1 in thr:
                    p = torch.softmax(head(h) / temperature, -1)
                    top = p.topk(2).values
                    conf = {"max_prob": top[0], "margin": top[0] - top[1], "entropy": (p * p.log()).sum()}[score]
                    if conf >= thr[i + 1]:
                        out = (int(p.argmax()), i + 1)
            out = out or (int(head(h).argmax()), L)
            tokens.append(out[0])
            exits.append(out[1])
            x = out[0]
    return np.asarray(tokens), np.asarray(exits)


def test_calm_never_exiting_equals_greedy(model, prompts, reference):
    res = CalmDecoder(model, [1, 2, 4], 1.5).generate(prompts, M)  # max_prob never reaches 1.5
    assert_rows_equal(res.tokens, reference)
    assert all((e == 6).all() for e in res.exit_layers)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_calm_always_exiting_equals_plain_state_propagation(model, prompts, k):
    res = CalmDecoder(model, [k], 0.0).generate(prompts, M)  # max_prob >= 0: every token exits at layer k
    for p, tok, ex in zip(prompts, res.tokens, res.exit_layers):
        want_tok, want_ex = plain_calm(model, p, M, [k], 0.0)
        assert np.array_equal(tok, want_tok) and np.array_equal(ex, want_ex)
        assert (ex == k).all()


@pytest.mark.parametrize("score,thresholds,temperature", [
    ("max_prob", [0.0158, 0.0156, 0.0154], 1.0), ("margin", 0.0012, 1.0), ("entropy", [-4.547, -4.548, -4.549], 0.7)])
def test_calm_mixed_exits_equal_plain_batch_and_single(model, prompts, score, thresholds, temperature):
    checked = [2, 3, 5]
    dec = CalmDecoder(model, checked, thresholds, score=score, temperature=temperature)
    batch = dec.generate(prompts, M)
    exits = np.concatenate(batch.exit_layers)
    assert len(set(exits.tolist())) >= 3, f"thresholds should mix exits, got {np.unique(exits)}"
    for i, p in enumerate(prompts):
        want_tok, want_ex = plain_calm(model, p, M, checked, thresholds, score, temperature)
        single = dec.generate([p], M)
        assert np.array_equal(single.tokens[0], want_tok) and np.array_equal(single.exit_layers[0], want_ex)
        assert np.array_equal(batch.tokens[i], want_tok) and np.array_equal(batch.exit_layers[i], want_ex)


def test_calm_offline_estimate_is_exact_until_the_first_early_exit(model, prompts, reference):
    """Teacher-forced exit decisions equal the real decode's up to and including the first early exit (after it,
    propagated states replace the full model's keys/values and the two can part)."""
    checked, thr = [2, 3, 5], [0.0158, 0.0156, 0.0154]
    res = CalmDecoder(model, checked, thr).generate(prompts, M)
    for p, ref, tok, ex in zip(prompts, reference, res.tokens, res.exit_layers):
        top1, conf = teacher_forced_exits(model, p, ref)
        conf = conf["max_prob"]
        cols = np.asarray(checked) - 1
        hit = conf[:, cols] >= np.asarray(thr)
        sim_exit = np.where(hit.any(1), np.asarray(checked)[hit.argmax(1)], 6)
        first = int(np.argmax(sim_exit < 6)) if (sim_exit < 6).any() else len(ref) - 1
        assert np.array_equal(ex[:first + 1], sim_exit[:first + 1])
        assert np.array_equal(tok[:first + 1], top1[np.arange(first + 1), sim_exit[:first + 1] - 1])


def test_token_confidence_matches_analysis_scores():
    from toolkit.analysis.scores.classification import confidence

    z = torch.randn(5, 11, dtype=torch.float64)
    for s in ("max_prob", "margin", "entropy"):
        np.testing.assert_allclose(token_confidence(z, s, 0.7).numpy(), confidence(z.numpy(), score=s, temperature=0.7), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# FLOPs of the real decoders equal the cost model (eager attention counts every column of a multi-query pass)


def counted(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        out = fn()
    return fc.get_total_flops(), out


def test_self_speculative_flops_equal_cost_model():
    model = tiny_llama(attn="eager")
    dims = CausalLMDims.from_config(model.config.to_dict())
    k, d = 3, 4
    got, res = counted(lambda: SelfSpeculativeDecoder(model, k, d).generate([[11]], M))  # one-token prompt: no prefill
    want, p = 0.0, 0
    for a in res.accepted[0]:
        D = min(d, M - 1 - p)
        if D:  # eager attention scores the block's D+1 queries against every column: D(D+1)/2 more per layer
            want += self_speculative_block_flops(p, k, D, dims) + (6 - k) * 4 * dims.q_dim * D * (D + 1) / 2
        else:
            want += full_token_flops(p + 1, dims)
        p += a + 1
    assert got == want
    # the decoder's own count (its recorded passes in the shared cost model) equals torch's, less eager's extras
    extra = sum((6 - k) * 4 * dims.q_dim * b[-1].positions * (b[-1].positions - 1) / 2 for b in res.passes)
    assert res.block_flops.sum() + extra == got


def test_decoder_records_the_passes_it_runs(model, prompts):
    """Block by block, the passes the decoder ran (recorded layer by layer, offsets read from its attention masks)
    are the shared definition's; weight reads follow from them: the verify pass reads every layer."""
    k, d, L = 3, 2, model.config.num_hidden_layers
    res = SelfSpeculativeDecoder(model, k, d).generate(prompts, M)
    caps = [min(d, M - 1 - p) for p in range(M)]
    assert all(b in {self_speculative_passes(k, c, L) for c in caps} for b in res.passes)
    assert res.passes[0] == (Pass(1, 3, 1, 0, exits=1), Pass(1, 3, 1, 1, exits=1), Pass(1, 3, 1, 2),
                             Pass(4, 6, 3, 0, heads=3))
    dims = CausalLMDims.from_config(model.config.to_dict())
    w = 2.0 * sum(p.numel() for p in model.model.layers[0].parameters() if p.dim() == 2)
    h = 2.0 * dims.hidden * dims.vocab
    assert res.block_reads[0] == pytest.approx(d * (k * w + h) + L * w + h, rel=1e-12)
    assert passes_reads(greedy_decode(model, prompts[:1], 2).passes[0], dims) == pytest.approx(L * w + h, rel=1e-12)
    frame = res.to_frame()
    assert len(frame) == sum(len(a) for a in res.accepted)
    assert frame.flops.sum() == pytest.approx(res.block_flops.sum(), rel=1e-12)


def test_decoder_refuses_a_drifted_cost_model(model, prompts, monkeypatch):
    """Had the cost model left out the verify pass's layers 1..k for the last draft token (the estimate once did),
    the decoder would refuse: it checks every block it runs against the shared definition."""
    import toolkit.nn.causal.decode as rt

    def omitted(k, d, L):
        return tuple(p for p in self_speculative_passes(k, d, L) if not (d and p.last == k and not p.exits))

    monkeypatch.setattr(rt, "self_speculative_passes", omitted)
    with pytest.raises(RuntimeError, match="cost model defines"):
        SelfSpeculativeDecoder(model, 3, 2).generate(prompts[:1], M)


def test_calm_flops_equal_cost_model():
    model = tiny_llama(attn="eager")
    dims = CausalLMDims.from_config(model.config.to_dict())
    checked, thr = [2, 3, 5], [0.0158, 0.0156, 0.0154]
    got, res = counted(lambda: CalmDecoder(model, checked, thr).generate([[11]], M))
    ex = res.exit_layers[0]
    assert len(set(ex.tolist())) >= 3
    want = calm_token_flops(np.arange(1, M + 1), ex, dims, checked_layers=checked).sum()
    assert got == want


# ---------------------------------------------------------------------------------------------------------------
# Policies


def test_policy_roundtrip_and_validation(tmp_path):
    p = Policy.self_speculative("m", draft_layer=3, draft_length=4)
    path = p.save(tmp_path / "p.json")
    assert Policy.load(path) == p
    c = Policy.calm("m", checked_layers=[2, 4], thresholds=[0.9, 0.8], temperature=0.5)
    assert Policy.load(c.save(tmp_path / "c.json")) == c
    bad = [
        ("beam", {}, "method"),
        ("self_speculative", dict(draft_layer=0, draft_length=2), "draft_layer"),
        ("self_speculative", dict(draft_layer=2, draft_length=0), "draft_length"),
        ("self_speculative", dict(draft_layer=2.5, draft_length=2), "draft_layer"),
        ("calm", dict(checked_layers=[4, 2], thresholds=0.5), "checked_layers"),
        ("calm", dict(checked_layers=[2, 4], thresholds=[0.5, 0.6, 0.7]), "thresholds"),
        ("calm", dict(checked_layers=[2, 4], thresholds=float("nan")), "thresholds"),
        ("calm", dict(checked_layers=[2], thresholds=0.5, temperature=0), "temperature"),
        ("calm", dict(checked_layers=[2], thresholds=0.5, score="energy"), "score"),
        ("calm", dict(checked_layers=[2], thresholds=0.5, exit={"kind": "tuned"}), "exit"),
        ("calm", dict(checked_layers=[2], thresholds=0.5, max_new_tokens=0), "max_new_tokens"),
    ]
    for method, params, key in bad:
        with pytest.raises(PolicyError, match=f"'{key}'"):
            Policy(method, ("m",), params)
    with pytest.raises(PolicyError, match="draft_layer"):
        Policy.self_speculative("m", draft_layer=6, draft_length=2).check_layers(6)
    # the earlier LLMPolicy format still loads, and its errors name the file and the key
    (tmp_path / "old.json").write_text(json.dumps({"model": "m", "method": "calm", "checked_layers": [2, 4],
                                                   "thresholds": 0.9, "temperature": 0.5}))
    assert Policy.load(tmp_path / "old.json").params["thresholds"] == (0.9,)
    (tmp_path / "u.json").write_text(json.dumps({"model": "m", "method": "calm", "treshold": 1}))
    with pytest.raises(PolicyError, match="unknown key.*treshold"):
        Policy.load(tmp_path / "u.json")
    (tmp_path / "j.json").write_text('{"model": "m",\n "method": }')
    with pytest.raises(PolicyError, match="j.json:2"):
        Policy.load(tmp_path / "j.json")


def test_decoders_refuse_bad_arguments(model):
    with pytest.raises(ValueError, match="draft_layer"):
        SelfSpeculativeDecoder(model, 6, 2)
    with pytest.raises(ValueError, match="checked_layers"):
        CalmDecoder(model, [3, 2], 0.5)
    with pytest.raises(ValueError, match="one per checked layer"):
        CalmDecoder(model, [2, 3], [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="empty"):
        greedy_decode(model, [[1, 2], []], 4)
    assert isinstance(LogitLens(model)(2, torch.zeros(3, 64, dtype=torch.float64)), torch.Tensor)


# ---------------------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory):
    """A tiny Llama with a word-level tokenizer and a chat template, saved as an ordinary folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<unk>", "<eos>", "<user>", "<assistant>", *[f"w{i}" for i in range(V - 5)]]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>",
                                               eos_token="<eos>")
    tok.chat_template = ("{% for m in messages %}<user> {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    d = tmp_path_factory.mktemp("llm")
    tiny_llama(dtype=torch.float32).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_cli_llm_generate(llm_folder, tmp_path):
    from toolkit.cli import main
    from toolkit.nn.causal.decode import encode_prompts

    prompts = ["w1 w2 w3", "w7", "w10 w11 w12 w13 w14 w15"]
    (tmp_path / "in.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    policy = Policy.self_speculative(str(llm_folder), draft_layer=3, draft_length=3,
                                     max_new_tokens=10).save(tmp_path / "p.json")
    assert main(["llm-generate", "--policy", str(policy), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "out.tsv"), "--batch-size", "2"]) == 0
    lines = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line\ttokens\tmean_accepted\ttext" and len(lines) == 1 + len(prompts)
    model = transformers.AutoModelForCausalLM.from_pretrained(llm_folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(llm_folder)
    ids = encode_prompts(tok, prompts)
    assert ids[1] == tok("<user> w7 <assistant>", add_special_tokens=False)["input_ids"]
    for i, (line, t) in enumerate(zip(lines[1:], greedy_decode(model, ids, 10).tokens)):
        n, count, _, text = line.split("\t")
        assert int(n) == i + 1 and int(count) == len(t) and text == tok.decode(t, skip_special_tokens=True)
    calm = Policy.calm(str(llm_folder), checked_layers=[2, 4], thresholds=0.0,
                       max_new_tokens=5).save(tmp_path / "c.json")
    assert main(["llm-generate", "--policy", str(calm), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "c.tsv")]) == 0
    rows = [r.split("\t") for r in (tmp_path / "c.tsv").read_text().splitlines()[1:]]
    assert [float(r[2]) for r in rows] == [2.0, 2.0, 2.0]  # threshold 0 exits every token at the first check
    # bad input: one error naming the file and line, nothing written
    (tmp_path / "bad.txt").write_text("w1\n\nw2\n", encoding="utf-8")
    assert main(["llm-generate", "--policy", str(policy), "--input", str(tmp_path / "bad.txt"),
                 "--out", str(tmp_path / "bad.tsv")]) == 2
    assert not (tmp_path / "bad.tsv").exists()
    (tmp_path / "latin.txt").write_bytes("w1\ncaf\xe9\n".encode("latin-1"))
    assert main(["llm-generate", "--policy", str(policy), "--input", str(tmp_path / "latin.txt")]) == 2
    (tmp_path / "deep.json").write_text(json.dumps({"model": str(llm_folder), "method": "self_speculative",
                                                    "draft_layer": 6, "draft_length": 2}))
    assert main(["llm-generate", "--policy", str(tmp_path / "deep.json"), "--input", str(tmp_path / "in.txt")]) == 2


def test_cli_read_prompts_errors(tmp_path):
    from toolkit.cli.llm_generate import escape, read_prompts

    (tmp_path / "a.txt").write_text("one\r\ntwo\n", encoding="utf-8")
    assert read_prompts(tmp_path / "a.txt") == ["one", "two"]
    (tmp_path / "b.txt").write_text("one\n \nthree", encoding="utf-8")
    with pytest.raises(ValueError, match="b.txt:2: empty line"):
        read_prompts(tmp_path / "b.txt")
    (tmp_path / "c.txt").write_bytes(b"ok\nok\n\xff\n")
    with pytest.raises(ValueError, match="c.txt:3: invalid UTF-8"):
        read_prompts(tmp_path / "c.txt")
    (tmp_path / "d.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="no prompts"):
        read_prompts(tmp_path / "d.txt")
    assert escape("a\tb\nc\\") == "a\\tb\\nc\\\\"
