"""The torch side's batch-size options go through the one check (``toolkit._api.check_batch``), like the runtimes
and the latency pricing (tests/test_batch_option.py): ``probe.layer_features`` / ``probe_exits``,
``prune.train_batches``, the LLM collection's ``exit_statistics``, ``prompt_states``, ``last_prompt_states`` and
``training_sequences``, ``generate_steps``, the training configs and the zoo's ``Where.collect_batch_size``.
Before, ``batch_size=True`` ran as batch 1 (a bool is an int to Python), ``2.0`` failed deep inside ``range`` or
ran, and a config carried the bool into the Trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BAD = [True, np.bool_(True), 2.0, 0, "4"]
REFUSED = r"batch_size must be an integer >= 1 \(rows per batch\)"


@pytest.fixture(scope="module")
def backbone(tiny_encoder_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(tiny_encoder_dir).eval(), AutoTokenizer.from_pretrained(tiny_encoder_dir)


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    from toolkit.nn.causal.models import load_causal_lm

    return load_causal_lm(tiny_llama_dir)


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_layer_features_refuses_a_bad_batch_size(backbone, bad):
    """``layer_features(batch_size=True)`` ran as batch 1 and returned features."""
    import pandas as pd

    from toolkit.nn.encoder.probe import layer_features

    model, tok = backbone
    frame = pd.DataFrame({"text_a": ["the movie was good", "bad", "the plot was bad and long"], "text_b": None})
    with pytest.raises(ValueError, match=REFUSED):
        layer_features(model, tok, frame, batch_size=bad)
    a = layer_features(model, tok, frame, batch_size=np.int64(2))
    np.testing.assert_allclose(a, layer_features(model, tok, frame, batch_size=3), rtol=1e-4, atol=1e-5)


def test_probe_exits_refuses_a_bad_batch_size_before_loading(tiny_encoder_dir, glue_dir):
    from toolkit.nn.encoder.probe import probe_exits

    with pytest.raises(ValueError, match=REFUSED):
        probe_exits(tiny_encoder_dir, "sst2", data_dir=glue_dir, train_limit=8, batch_size=True)


def test_train_batches_refuses_a_bad_batch_size(tokenizer_dir, glue_dir):
    from toolkit.nn.encoder.prune import train_batches

    for bad in BAD:
        with pytest.raises(ValueError, match=REFUSED):
            next(train_batches(tokenizer_dir, "sst2", n_batches=2, batch_size=bad, data_dir=glue_dir))
    assert [len(b["labels"]) for b in train_batches(tokenizer_dir, "sst2", n_batches=2, batch_size=np.int64(3),
                                                     data_dir=glue_dir)] == [3, 3]


def test_exit_statistics_refuses_a_bad_batch(llama):
    """``exit_statistics(..., batch=True)`` ran one state at a time."""
    from toolkit.nn.causal.collect import exit_statistics
    from toolkit.nn.causal.exits import LogitLens

    lens = LogitLens(llama.model)
    states = np.random.default_rng(0).normal(size=(5, lens.layers, 32)).astype(np.float32)
    for bad in BAD:
        with pytest.raises(ValueError, match=r"batch must be an integer >= 1"):
            exit_statistics(lens, states, (1.0,), batch=bad)
    top_a, st_a = exit_statistics(lens, states, (1.0,), batch=np.int64(2))
    top_b, st_b = exit_statistics(lens, states, (1.0,), batch=5)
    assert (top_a == top_b).all() and np.allclose(st_a, st_b, atol=1e-5)


def test_llm_state_and_sequence_collection_refuse_a_bad_batch_size(llama, glue_dir, tmp_path):
    from toolkit.nn.causal.collect import prompt_states
    from toolkit.nn.causal.exits import training_sequences
    from toolkit.nn.causal.models import last_prompt_states

    prompts = [np.array([5, 6, 7, 8]), np.array([5, 6, 9])]
    for bad in BAD:
        with pytest.raises(ValueError, match=REFUSED):
            last_prompt_states(llama.model, prompts, batch_size=bad)
        with pytest.raises(ValueError, match=REFUSED):
            prompt_states(llama, "sst2_sentiment", "test", tmp_path / "s.npz", limit=2, data_dir=glue_dir,
                          batch_size=bad, progress=False)
        with pytest.raises(ValueError, match=REFUSED):
            training_sequences(llama, ["sst2_sentiment"], n_prompts=2, data_dir=glue_dir, batch_size=bad,
                               progress=False)
    assert not (tmp_path / "s.npz").exists()
    assert last_prompt_states(llama.model, prompts, batch_size=np.int64(1)).shape[0] == 2


def test_generate_steps_refuses_a_bad_batch_size(backbone):
    import pandas as pd

    from toolkit.nn.seq2seq.generate import generate_steps

    _, tok = backbone
    frame = pd.DataFrame({"text_a": ["good"], "text_b": None})
    for bad in BAD:
        with pytest.raises(ValueError, match=REFUSED):
            generate_steps(torch.nn.Linear(1, 1), tok, tok, frame, batch_size=bad, device="cpu")


def test_training_configs_and_the_zoo_refuse_a_bad_batch_size(tmp_path):
    from toolkit.nn.encoder.train import TrainConfig
    from toolkit.nn.seq2seq.train import Seq2SeqTrainConfig
    from toolkit.zoo.build import Where

    for bad in BAD:
        with pytest.raises(ValueError, match=REFUSED):
            TrainConfig(task="sst2", model="m", output_dir=str(tmp_path), batch_size=bad)
        with pytest.raises(ValueError, match=REFUSED):
            Seq2SeqTrainConfig(task="t2t", output_dir=str(tmp_path), batch_size=bad)
        with pytest.raises(ValueError, match=r"collect_batch_size must be an integer >= 1"):
            Where(out=tmp_path, runs=tmp_path, collect_batch_size=bad)
    assert type(TrainConfig(task="sst2", model="m", output_dir=str(tmp_path), batch_size=np.int64(8)).batch_size) \
        is int
    assert Seq2SeqTrainConfig(task="t2t", output_dir=str(tmp_path)).batch_size == 32
    assert Where(out=Path(tmp_path), runs=Path(tmp_path)).collect_batch_size == 64
