"""Seq2seq Swift/Super routing: cost model, quality metrics, token scores, aggregation, sweeps, cache, collection
and training, on tiny T5 / Marian / warm-started encoder-decoders built from configs (no download)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import toy_sentences
from toolkit.analysis import engine as en
from toolkit.analysis.cost.seq2seq import generation_flops, seq2seq_dims
from toolkit.analysis.metrics.generation import bleu_stats, chrf_stats, corpus_bleu, corpus_chrf, exact_match
from toolkit.analysis.routing import area_gain, compare_routers, references
from toolkit.analysis.scores.classification import energy, entropy, margin, max_prob
from toolkit.analysis.scores.tokens import aggregate, sequence_confidence, token_scores
from toolkit.caches.classification import CacheError, load_cache
from toolkit.caches.generation import (
    GenCache,
    Generation,
    load_generation_cache,
    save_generation_cache,
    stat_names,
)

torch = pytest.importorskip("torch")
from toolkit.nn.seq2seq import generate as gc  # noqa: E402

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "hat", "ran", "fast", "big", "small", "red"]
TEMPS = (0.5, 1.0, 2.0)


# ------------------------------------------------------------------------------------------ tiny models
def tiny_t5(vocab=120):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    return T5ForConditionalGeneration(T5Config(
        vocab_size=vocab, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0, eos_token_id=3,
        dropout_rate=0.0, attn_implementation="eager"))


def tiny_marian(vocab=120):
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(1)
    return MarianMTModel(MarianConfig(
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=48, pad_token_id=0, eos_token_id=3,
        decoder_start_token_id=0, forced_eos_token_id=None, max_position_embeddings=128, dropout=0.0,
        attn_implementation="eager"))


def tiny_encoder_decoder(enc_hidden=48):
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel, MPNetConfig

    torch.manual_seed(2)
    enc = MPNetConfig(vocab_size=120, hidden_size=enc_hidden, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=80)
    dec = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     is_decoder=True, add_cross_attention=True, max_position_embeddings=64)
    cfg = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 2, 0, 3
    model = EncoderDecoderModel(cfg)
    model.encoder.pooler = None
    for c in (model.config, model.encoder.config, model.decoder.config):
        c._attn_implementation = "eager"
    model.generation_config.decoder_start_token_id, model.generation_config.eos_token_id = 2, 3
    model.generation_config.pad_token_id = 0
    return model


@pytest.fixture(scope="module")
def seq_models(tmp_path_factory, tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    out = {}
    for name, model in (("t5", tiny_t5()), ("marian", tiny_marian())):
        d = tmp_path_factory.mktemp(name)
        model.save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    return out


@pytest.fixture(scope="module")
def wmt_dir(tmp_path_factory, glue_dir):
    """A data folder with a synthetic wmt21_en_de/test.tsv (toy text, not the shared data) beside sst2."""
    import shutil

    root = tmp_path_factory.mktemp("wmt")
    shutil.copytree(glue_dir / "sst2", root / "sst2")
    (root / "wmt21_en_de").mkdir()
    src, _ = toy_sentences(40, 7)
    ref = [" ".join(reversed(s.split())) for s in src]
    (root / "wmt21_en_de" / "test.tsv").write_text(
        "source\treference\n" + "".join(f"{a}\t{b}\n" for a, b in zip(src, ref)), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ cost model
def _counted_flops(model, n, m):
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.randint(5, 100, (1, n), generator=torch.Generator().manual_seed(n))
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        out = model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=m,
                                    min_new_tokens=m, do_sample=False, num_beams=1)
    return fc.get_total_flops(), out.shape[1] - 1


@pytest.mark.parametrize("make", [tiny_t5, tiny_marian, tiny_encoder_decoder])
@pytest.mark.parametrize("n,m", [(7, 5), (12, 1)])
def test_generation_flops_equal_torch_flop_counter(make, n, m):
    model = make()
    counted, steps = _counted_flops(model, n, m)
    assert steps == m
    assert float(generation_flops(n, m, seq2seq_dims(model.config))) == counted


def test_cost_dims_and_errors():
    d = seq2seq_dims(tiny_t5().config)
    assert (d.enc_ffn_mats, d.enc_attn, d.vocab) == (3, 32, 120)
    e = seq2seq_dims(tiny_encoder_decoder().config)
    assert e.enc_to_dec_proj and e.lm_transform and (e.enc_hidden, e.dec_hidden) == (48, 32)
    with pytest.raises(ValueError, match="no generation cost model"):
        seq2seq_dims({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="n_src"):
        generation_flops(0, 3, d)
    # more steps and longer sources cost more
    f = generation_flops(np.array([5, 5, 9]), np.array([1, 4, 4]), d)
    assert f[0] < f[1] < f[2]


# ------------------------------------------------------------------------------------------ quality
def test_exact_match_reference_values():
    assert exact_match([" Positive", "negative ", "pos"], ["positive", "negative", "positive"]).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="hypotheses"):
        exact_match(["a"], ["a", "b"])


def _corpus(seed, n):
    rng = np.random.default_rng(seed)
    hyp = [" ".join(rng.choice(WORDS, rng.integers(1, 10))) for _ in range(n)]
    ref = [" ".join(rng.choice(WORDS, rng.integers(1, 10))) for _ in range(n)]
    return hyp, ref


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 25))
def test_corpus_metrics_from_summed_statistics_equal_sacrebleu(seed, n):
    hyp, ref = _corpus(seed, n)
    assert float(corpus_bleu(bleu_stats(hyp, ref).sum(0))) == pytest.approx(
        sacrebleu.corpus_bleu(hyp, [ref]).score, abs=1e-9)
    assert float(corpus_chrf(chrf_stats(hyp, ref).sum(0))) == pytest.approx(
        sacrebleu.corpus_chrf(hyp, [ref]).score, abs=1e-9)


def test_corpus_bleu_reference_value_and_zero_cases():
    # one sentence, 6 tokens, matches 5/6, 3/5, 1/4, 0/3, ref 6 tokens: exp smoothing on the 4-gram
    hyp, ref = ["the cat sat on the mat"], ["the cat is on the mat"]
    s = bleu_stats(hyp, ref)[0]
    assert s.tolist() == [6, 6, 5, 3, 1, 0, 6, 5, 4, 3]
    expect = np.exp(np.mean(np.log([500 / 6, 300 / 5, 100 / 4, 100 / (2 * 3)])))
    assert float(corpus_bleu(s)) == pytest.approx(expect) == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
    assert float(corpus_bleu(bleu_stats(["x y"], ["a b"])[0])) == 0.0
    assert float(corpus_chrf(chrf_stats([""], ["abc"])[0])) == 0.0


# ------------------------------------------------------------------------------------------ scores
def test_step_statistics_give_the_classification_scores():
    z = torch.randn(7, 50, generator=torch.Generator().manual_seed(0)) * 3
    stats = gc.step_statistics(z, TEMPS).numpy()
    gen = Generation(tokens=np.zeros(7, np.int32), offsets=np.arange(8), stats=stats, text=np.array(["x"] * 7),
                     n_src=np.ones(7, np.int32), flops=np.ones(7), quality={"exact_match": np.ones(7)})
    zn = z.double().numpy()
    for t in TEMPS:
        np.testing.assert_allclose(token_scores(gen, TEMPS, score="max_prob", temperature=t), max_prob(zn, temperature=t), rtol=1e-5)
        np.testing.assert_allclose(token_scores(gen, TEMPS, score="margin", temperature=t), margin(zn, temperature=t), atol=1e-6)
        np.testing.assert_allclose(token_scores(gen, TEMPS, score="energy", temperature=t), energy(zn, temperature=t), rtol=1e-5)
        np.testing.assert_allclose(token_scores(gen, TEMPS, score="entropy", temperature=t), entropy(zn, temperature=t), atol=1e-5)
    with pytest.raises(ValueError, match=r"temperature 3.0 was not cached.*\[0.5, 1.0, 2.0\]"):
        token_scores(gen, TEMPS, score="energy", temperature=3.0)
    with pytest.raises(ValueError, match="unknown token score"):
        token_scores(gen, TEMPS, score="elang")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-50, 50), min_size=1, max_size=6), min_size=1, max_size=12))
def test_aggregate_equals_a_loop(seqs):
    flat = np.concatenate([np.array(s, dtype=np.float64) for s in seqs])
    off = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    ref = {"mean": np.mean, "max": np.max, "min": np.min, "sum": np.sum, "first": lambda s: s[0]}
    for how, fn in ref.items():
        np.testing.assert_allclose(aggregate(flat, off, how=how), [fn(np.array(s)) for s in seqs], rtol=1e-12,
                                   atol=1e-9)


def test_aggregate_reference_values_and_errors():
    v, off = np.array([1.0, 3.0, 2.0, -1.0]), np.array([0, 2, 4])
    assert aggregate(v, off, how="mean").tolist() == [2.0, 0.5]
    assert aggregate(v, off, how="max").tolist() == [3.0, 2.0]
    assert aggregate(v, off, how="sum").tolist() == [4.0, 1.0]
    assert aggregate(v, off, how="first").tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="at least one step"):
        aggregate(v, np.array([0, 0, 4]), how="mean")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(v, off, how="median")


# ------------------------------------------------------------------------------------------ routing
def synthetic_cache(N=60, seed=0, translation=False) -> GenCache:
    rng = np.random.default_rng(seed)
    gens = {}
    refs = _corpus(seed + 100, N)[1]
    for k, name in enumerate(("swift", "super")):
        steps = rng.integers(1, 5, N)
        off = np.concatenate([[0], np.cumsum(steps)])
        S = off[-1]
        logits = torch.tensor(rng.normal(size=(S, 30)) * 2)
        stats = gc.step_statistics(logits, TEMPS).numpy()
        text = np.array([" ".join(rng.choice(WORDS, rng.integers(1, 8))) for _ in range(N)], dtype=object)
        if translation:
            quality = {"bleu": np.array([sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(text, refs)])}
            qstats = {"bleu": bleu_stats(text, refs)}
        else:
            quality, qstats = {"exact_match": (rng.random(N) < 0.6 + 0.25 * k).astype(float)}, {}
        gens[name] = Generation(tokens=rng.integers(0, 30, S).astype(np.int32), offsets=off, stats=stats,
                                text=text, n_src=rng.integers(3, 20, N).astype(np.int32),
                                flops=rng.uniform(1, 2, N) * (1 + 5 * k), quality=quality, qstats=qstats)
    return GenCache(np.array([f"x:{i}" for i in range(N)]), np.zeros(N, np.int64), gens, TEMPS,
                    {"task": "toy", "split": "test", "refs": refs})


@pytest.mark.parametrize("translation", [False, True])
@pytest.mark.parametrize("score,how", [("energy", "mean"), ("max_prob", "min"), ("entropy", "first")])
def test_route_sweep_equals_brute_force(translation, score, how):
    c = synthetic_cache(translation=translation)
    metric = "bleu" if translation else "exact_match"
    view = en.staged(c, score=score, how=how, metric=metric)
    conf = sequence_confidence(c, "swift", score=score, how=how, temperature=1.0)
    np.testing.assert_array_equal(view.confidence[:, 0], conf)
    conf = np.round(conf, 1)  # force ties: a threshold moves whole groups
    curve = en.sweep(dataclasses.replace(view, confidence=np.stack([conf, conf], 1))).frame
    assert np.isinf(curve["threshold"].iloc[0]) and curve["escalated"].iloc[0] == 1.0
    assert curve["escalated"].iloc[-1] == 0.0 and len(curve) == len(np.unique(conf)) + 1
    a, b = c.models["swift"], c.models["super"]
    for _, row in curve.iterrows():
        route = conf < row["threshold"]
        if translation:  # the routed corpus scored by sacrebleu itself
            hyp = np.where(route, b.text, a.text).tolist()
            want = sacrebleu.corpus_bleu(hyp, [c.meta["refs"]]).score
        else:
            want = np.where(route, b.quality[metric], a.quality[metric]).mean()
        assert row[metric] == pytest.approx(want, abs=1e-9)
        assert row["flops"] == pytest.approx((a.flops + route * b.flops).mean())
        assert row["tokens"] == pytest.approx((a.n_steps + route * b.n_steps).mean())
        assert row["escalated"] == pytest.approx(route.mean())
        assert row["speedup"] == pytest.approx(b.flops.mean() / row["flops"])
        ev = en.evaluation_at_stages(view, route.astype(int))
        assert ev[metric] == pytest.approx(row[metric], abs=1e-9)
    assert en.sweep(view).frame["escalated"].is_monotonic_decreasing


def test_references_oracle_and_router_comparison():
    c = synthetic_cache()
    view = en.staged(c)
    refs = references(view)
    a, b = c.models["swift"].quality["exact_match"], c.models["super"].quality["exact_match"]
    assert refs.loc["swift alone", "exact_match"] == pytest.approx(a.mean())
    assert refs.loc["super alone", "exact_match"] == pytest.approx(b.mean())
    assert refs.loc["super alone", "speedup"] == 1.0
    assert refs.loc["super alone", "flops"] == pytest.approx(c.models["super"].flops.mean())
    assert refs.loc["super alone", "tokens"] == pytest.approx(c.models["super"].n_steps.mean())
    assert refs.loc["oracle", "exact_match"] == pytest.approx(np.maximum(a, b).mean())
    assert refs.loc["oracle", "escalated"] == pytest.approx(((b > a)).mean())
    table = compare_routers(c, scores=("energy", "max_prob"), hows=("mean", "first"))
    assert len(table) == 4 and table["area_gain"].between(-5, 1 + 1e-9).all()
    # a router that knows the answer recovers everything the oracle does
    perfect = en.sweep(dataclasses.replace(view, confidence=np.stack([a - b, a - b], 1)))
    assert area_gain(view, perfect) == pytest.approx(1.0)
    with pytest.raises(KeyError, match="holds"):
        en.staged(c, models=("swift", "giant"))
    with pytest.raises(ValueError, match="metric 'bleu' not in the cache"):
        en.staged(c, metric="bleu")


# ------------------------------------------------------------------------------------------ cache
def test_generation_cache_round_trip_and_errors(tmp_path):
    c = synthetic_cache(translation=True)
    p = save_generation_cache(c, tmp_path / "g.parquet")
    back = load_generation_cache(p)
    for name in c.models:
        g, h = c.models[name], back.models[name]
        assert np.array_equal(g.tokens, h.tokens) and np.array_equal(g.offsets, h.offsets)
        np.testing.assert_array_equal(g.stats, h.stats)
        assert list(g.text) == list(h.text) and np.array_equal(g.flops, h.flops)
        np.testing.assert_array_equal(g.qstats["bleu"], h.qstats["bleu"])
        np.testing.assert_array_equal(g.quality["bleu"], h.quality["bleu"])
    assert back.temperatures == TEMPS and back.metrics == ["bleu"]
    with pytest.raises(CacheError, match="generation cache.*load_generation_cache"):
        load_cache(p)
    bad = synthetic_cache()
    bad.models["swift"].stats[0, 2] = np.nan
    with pytest.raises(CacheError, match="NaN"):
        GenCache(bad.example_ids, bad.labels, bad.models, TEMPS)
    ok = synthetic_cache()
    g = ok.models["swift"]
    with pytest.raises(CacheError, match="offsets"):
        GenCache(ok.example_ids, ok.labels, {"swift": Generation(g.tokens, g.offsets[:-1], g.stats, g.text[:-1],
                                                               g.n_src, g.flops, g.quality)}, TEMPS)
    with pytest.raises(CacheError, match="statistics"):
        GenCache(ok.example_ids, ok.labels, ok.models, (1.0,))
    (tmp_path / "trunc.parquet").write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CacheError, match="truncated or corrupt"):
        load_generation_cache(tmp_path / "trunc.parquet")
    assert stat_names((1.0,)) == ["max_logit", "second_logit", "lse@1", "entropy@1"]


# ------------------------------------------------------------------------------------------ collection
@pytest.mark.slow
def test_collect_translation_with_tiny_t5_and_marian(seq_models, wmt_dir, tmp_path):
    from toolkit.nn.seq2seq.models import load_seq2seq

    out = tmp_path / "wmt.parquet"
    c = gc.collect_generation({"swift": str(seq_models["marian"]), "super": str(seq_models["t5"])}, "wmt21_en_de",
                              "test", out, data_dir=wmt_dir, temperatures=TEMPS, batch_size=8, max_new_tokens=6,
                              progress=False)
    assert c.n_examples == 40 and c.metrics == ["bleu", "chrf"] and c.meta["data_verified"]
    frame = __import__("toolkit.data.text2text", fromlist=["x"]).load_seq2seq_split("wmt21_en_de", "test",
                                                                                   wmt_dir).frame
    for name in ("swift", "super"):
        model, src, tgt = load_seq2seq(seq_models["marian" if name == "swift" else "t5"])
        g = c.models[name]
        # batched generation equals one example at a time (tokens), statistics equal the teacher-forced logits
        for i in (0, 17, 39):
            enc = src(frame["text_a"][i], return_tensors="pt", truncation=True, max_length=128)
            enc = {k: enc[k] for k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                ids = model.generate(**enc, max_new_tokens=6, do_sample=False, num_beams=1)[0, 1:].numpy()
            steps = g.tokens[g.offsets[i]:g.offsets[i + 1]]
            assert np.array_equal(ids[:len(steps)], steps)
            dec_in = torch.tensor([[model.config.decoder_start_token_id, *steps[:-1]]])
            with torch.inference_mode():
                logits = model(**enc, decoder_input_ids=dec_in).logits[0]
            np.testing.assert_allclose(g.stats[g.offsets[i]:g.offsets[i + 1]],
                                       gc.step_statistics(logits, TEMPS).numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(g.flops, generation_flops(g.n_src, g.n_steps, seq2seq_dims(model.config)))
        hyp = list(g.text)
        assert float(corpus_bleu(g.qstats["bleu"].sum(0))) == pytest.approx(
            sacrebleu.corpus_bleu(hyp, [frame["target"].tolist()]).score)
    sweep = en.sweep(en.staged(c, score="energy", how="mean", metric="chrf")).frame.rename(columns={"chrf": "metric"})
    assert sweep["metric"].iloc[-1] == pytest.approx(c.summary().loc["swift", "chrf"])
    assert sweep["metric"].iloc[0] == pytest.approx(c.summary().loc["super", "chrf"])


@pytest.mark.slow
def test_interrupted_generation_resumes_identically(seq_models, wmt_dir, tmp_path, monkeypatch):
    models = {"swift": str(seq_models["marian"]), "super": str(seq_models["t5"])}
    kw = dict(data_dir=wmt_dir, temperatures=TEMPS, batch_size=8, max_new_tokens=4, chunk_size=16, progress=False)
    ref = gc.collect_generation(models, "wmt21_en_de", "test", tmp_path / "ref.parquet", **kw)
    real, calls = gc.generate_steps, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed half-way")
        return real(*a, **k)

    monkeypatch.setattr(gc, "generate_steps", dying)
    out = tmp_path / "g.parquet"
    with pytest.raises(KeyboardInterrupt):
        gc.collect_generation(models, "wmt21_en_de", "test", out, **kw)
    assert not out.exists() and len(list((tmp_path / "g.parquet.parts").glob("*.npz"))) == 3
    monkeypatch.setattr(gc, "generate_steps", real)
    done = gc.collect_generation(models, "wmt21_en_de", "test", out, **kw)
    for name in models:
        np.testing.assert_array_equal(done.models[name].stats, ref.models[name].stats)
        assert list(done.models[name].text) == list(ref.models[name].text)
    with pytest.raises(CacheError, match="different collection"):
        (tmp_path / "h.parquet.parts").mkdir()
        (tmp_path / "h.parquet.parts" / "signature.json").write_text('{"signature": "other"}')
        gc.collect_generation(models, "wmt21_en_de", "test", tmp_path / "h.parquet", **kw)


def test_translation_data_errors(tmp_path):
    from toolkit.data.tasks import DataError
    from toolkit.data.text2text import load_seq2seq_split

    (tmp_path / "wmt21_en_de").mkdir()
    (tmp_path / "wmt21_en_de" / "test.tsv").write_text("source\treference\nhello\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.tsv:2: expected a non-empty source and reference"):
        load_seq2seq_split("wmt21_en_de", "test", tmp_path)
    with pytest.raises(ValueError, match="only its test set"):
        load_seq2seq_split("wmt21_en_de", "train", tmp_path)


# ------------------------------------------------------------------------------------------ training
@pytest.mark.slow
def test_warm_started_encoder_decoder_learns_text_to_text(tiny_encoder_dir, glue_dir, tmp_path):
    from toolkit.nn.seq2seq.train import Seq2SeqTrainConfig, train_seq2seq

    cfg = Seq2SeqTrainConfig(task="sst2", output_dir=str(tmp_path / "run"), encoder=str(tiny_encoder_dir),
                             decoder=str(tiny_encoder_dir), decoder_layers=1, epochs=4, learning_rate=3e-3,
                             batch_size=16, data_dir=str(glue_dir), save_steps=1000, logging_steps=10)
    final = train_seq2seq(cfg)
    assert (final / "decoder_tokenizer").is_dir() and (final / "train_meta.json").exists()
    c = gc.collect_generation({"swift": str(final)}, "sst2", "test", tmp_path / "t2t.parquet", data_dir=glue_dir,
                              progress=False)
    g = c.models["swift"]
    assert c.meta["label_words"] == ["negative", "positive"]
    # the toy task is learnable: the label word is generated and mostly right (chance is 0.5)
    assert g.quality["exact_match"].mean() > 0.85
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(final / "decoder_tokenizer")
    want = np.array([len(tok(w, add_special_tokens=False)["input_ids"]) + 1 for w in c.meta["label_words"]])
    assert (g.n_steps == want[c.labels]).mean() > 0.85  # the label word's pieces, then [SEP]
    assert g.info["truncated"] < 0.1 * c.n_examples
    assert train_seq2seq(cfg) == final  # a finished run is not retrained
    with pytest.raises(ValueError, match=r"different configuration \(learning_rate: 0.003 there, 0.001 now\)"):
        train_seq2seq(dataclasses.replace(cfg, learning_rate=1e-3))


def test_cli_generate_and_route(seq_models, wmt_dir, tmp_path, capsys):
    from toolkit.cli import main

    out = tmp_path / "g.parquet"
    assert main(["generate", "--model", f"swift={seq_models['marian']}", "--model", f"super={seq_models['t5']}",
                 "--task", "wmt21_en_de", "--split", "test", "--out", str(out), "--data-dir", str(wmt_dir),
                 "--max-new-tokens", "4", "--temperatures", "1", "2", "--quiet"]) == 0
    assert "bleu" in capsys.readouterr().out
    assert main(["route", str(out), "--metric", "chrf", "--how", "max", "--csv", str(tmp_path / "r.csv"),
                 "--compare"]) == 0
    text = capsys.readouterr().out
    assert "oracle" in text and "speed-ups against super alone" in text and "area_gain" in text
    assert (tmp_path / "r.csv").exists()
    assert main(["route", str(out), "--temperature", "0.5"]) == 2
    assert "temperature 0.5 was not cached" in capsys.readouterr().err
    assert main(["generate", "--model", "nameless", "--task", "sst2", "--split", "test", "--out", "x.parquet"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
