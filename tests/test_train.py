import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerCallback

from toolkit.data.tasks import load_split
from toolkit.nn.encoder.difficulty import difficulty_labels
from toolkit.nn.encoder.losses import distill_loss, joint_loss, ranking_loss, weighted_loss
from toolkit.nn.encoder.models import load_model
from toolkit.nn.encoder.train import TrainConfig, train


def _cfg(tmp_path, enc, glue, **kw):
    base = dict(task="sst2", model=str(enc), output_dir=str(tmp_path / kw.pop("name", "run")), max_steps=60,
                learning_rate=5e-3, batch_size=16, save_steps=20, logging_steps=10, data_dir=str(glue), seed=0,
                warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)


def _loss_on_train(model_dir, glue, fn):
    model = load_model(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    frame = load_split("sst2", "train", glue).frame.iloc[:128]
    b = tok(list(frame.text_a), padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**b).logits
    return float(fn(logits, torch.tensor(frame.label.to_numpy())))


def _untrained(tmp_path, enc, glue, **kw):
    return train(_cfg(tmp_path, enc, glue, max_steps=1, learning_rate=1e-12, name="untrained", **kw))


@pytest.mark.slow
@pytest.mark.parametrize("objective,fn", [("joint", joint_loss), ("weighted", weighted_loss),
                                          ("distill", distill_loss), ("two_stage", joint_loss)])
def test_objective_lowers_its_loss(tmp_path, tiny_encoder_dir, glue_dir, objective, fn):
    before = _loss_on_train(_untrained(tmp_path, tiny_encoder_dir, glue_dir), glue_dir, fn)
    after = _loss_on_train(train(_cfg(tmp_path, tiny_encoder_dir, glue_dir, objective=objective)), glue_dir, fn)
    assert after < 0.5 * before, (objective, before, after)


@pytest.mark.slow
def test_two_stage_leaves_backbone_bit_identical(tmp_path, tiny_encoder_dir, glue_dir):
    class KeepStageEnds(TrainerCallback):  # the weights at the end of each stage (checkpoints are deleted after)
        ends = []

        def on_train_end(self, args, state, control, model=None, **kw):
            self.ends.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, objective="two_stage", max_steps=10, save_steps=10)
    keep = KeepStageEnds()
    final = train(cfg, callbacks=[keep])
    assert len(keep.ends) == 2 and not (tmp_path / "run" / "stage1").exists()
    stage1 = keep.ends[0]
    end = load_file(final / "model.safetensors")
    back = [k for k in end if k.startswith("backbone.")]
    assert back and all(torch.equal(stage1[k], end[k]) for k in back)
    assert torch.equal(stage1["heads.2.weight"], end["heads.2.weight"])  # final head frozen too
    assert not torch.equal(stage1["heads.0.weight"], end["heads.0.weight"])  # other heads learned


def test_ranking_loss_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1, 1, 1])
    hard = torch.tensor([0, 1, 1, 0])
    p = torch.softmax(logits, -1).max(-1).values.tolist()
    ce = float(torch.nn.functional.cross_entropy(logits, labels))
    pairs = [(i, j) for i in (0, 3) for j in (1, 2)]
    rank = sum(max(0.0, 0.5 - (p[i] - p[j])) for i, j in pairs) / len(pairs)
    got = float(ranking_loss(logits, labels, hard, margin=0.5, lam=0.5))
    assert got == pytest.approx(ce + 0.5 * rank, rel=1e-6)
    # no hard example in the batch: plain cross-entropy
    assert float(ranking_loss(logits, labels, torch.zeros(4, dtype=torch.long))) == pytest.approx(ce, rel=1e-6)


def test_joint_weighted_distill_reference():
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    y = torch.tensor([1])
    ce = [float(torch.nn.functional.cross_entropy(logits[:, e], y)) for e in range(2)]
    assert float(joint_loss(logits, y)) == pytest.approx(sum(ce))
    assert float(weighted_loss(logits, y)) == pytest.approx((ce[0] + 2 * ce[1]) / 3)
    # alpha = 1: pure cross-entropy
    assert float(distill_loss(logits, y, alpha=1.0)) == pytest.approx(sum(ce))


class _Die(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 7:
            raise KeyboardInterrupt("killed")


@pytest.mark.slow
def test_head_learning_rate_moves_heads_only(tmp_path, tiny_encoder_dir, glue_dir):
    # one Adam step at peak rate (no warm-up): every parameter moves by about its group's rate (sign of its gradient)
    init = load_file(_untrained(tmp_path, tiny_encoder_dir, glue_dir) / "model.safetensors")
    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, name="heads", max_steps=1, learning_rate=1e-9,
               head_learning_rate=1e-2, weight_decay=0.0)
    end = load_file(train(cfg) / "model.safetensors")
    step = {k: (end[k] - init[k]).abs().max().item() for k in end}
    heads = [v for k, v in step.items() if k.startswith("heads.")]
    back = [v for k, v in step.items() if k.startswith("backbone.")]
    assert heads and back
    assert all(5e-3 < v <= 1.01e-2 for v in heads), heads
    assert max(back) < 1e-8, max(back)


def test_run_folder_of_another_config_is_refused(tmp_path, tiny_encoder_dir, glue_dir):
    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, name="r", max_steps=2, save_steps=1)
    final = train(cfg)
    assert train(cfg) == final  # same configuration: reused
    assert train(_cfg(tmp_path, tiny_encoder_dir, glue_dir, name="r", max_steps=2, save_steps=5)) == final
    with pytest.raises(ValueError, match=r"learning_rate: 0.005 there, 0.001 now.*delete that folder"):
        train(_cfg(tmp_path, tiny_encoder_dir, glue_dir, name="r", max_steps=2, learning_rate=1e-3))
    # unfinished run (checkpoints only) of another configuration: not resumed
    import shutil

    shutil.rmtree(final)
    with pytest.raises(ValueError, match="seed: 0 there, 1 now"):
        train(_cfg(tmp_path, tiny_encoder_dir, glue_dir, name="r", max_steps=2, seed=1))


@pytest.mark.slow
def test_resume_gives_same_final_weights(tmp_path, tiny_encoder_dir, glue_dir):
    straight = train(_cfg(tmp_path, tiny_encoder_dir, glue_dir, name="a", max_steps=10, save_steps=5))
    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, name="b", max_steps=10, save_steps=5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_Die()])
    assert not (tmp_path / "b" / "final").exists()
    # what a save killed outright leaves (the zoo's runner at a session's end): transformers writes checkpoint-<step>
    # in place and trainer_state.json last; resuming from it would restart from half-saved states
    half = tmp_path / "b" / "checkpoints" / "checkpoint-8"
    half.mkdir()
    (half / "config.json").write_text("{}")
    resumed = train(cfg)
    meta = (resumed / "train_meta.json").read_text()
    assert "checkpoint-5" in meta and not half.exists()
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_difficulty_labels_and_ranking_objective(tmp_path, tiny_encoder_dir, glue_dir):
    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, name="diff", max_steps=15, num_hidden_layers=2)
    path = difficulty_labels(cfg, k=2)
    z = np.load(path)
    assert len(z["hard"]) == len(load_split("sst2", "train", glue_dir)) and set(np.unique(z["fold"])) == {0, 1}
    final = train(_cfg(tmp_path, tiny_encoder_dir, glue_dir, name="rank", objective="ranking", max_steps=15,
                       num_hidden_layers=2, difficulty_file=str(path)))
    m = load_model(final)
    assert m.exit_layers == [2]


def test_bad_config():
    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(task="sst2", model="x", output_dir="y", objective="magic")
    with pytest.raises(ValueError, match="difficulty_file"):
        TrainConfig(task="sst2", model="x", output_dir="y", objective="ranking")


@pytest.mark.slow
def test_cli_train(tmp_path, tiny_encoder_dir, glue_dir):
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, "-m", "toolkit", "train", "--task", "sst2", "--model", str(tiny_encoder_dir),
                        "--out", str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "8", "--layers", "2",
                        "--data-dir", str(glue_dir), "--objective", "weighted"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = load_model(tmp_path / "run" / "final")
    assert m.exit_layers == [1, 2] and m.config.train_config["objective"] == "weighted"
    r = subprocess.run([sys.executable, "-m", "toolkit", "train", "--task", "sst2"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode != 0 and "--config FILE, or --task, --model and --out" in r.stderr


@pytest.mark.slow
def test_select_on_cal_keeps_the_best_epoch_and_records_the_curve(tmp_path, tiny_encoder_dir, glue_dir):
    import json

    from toolkit.analysis.metrics.task import task_metric
    from toolkit.nn.common.inference import predict_logits

    class FlipLastEpoch(TrainerCallback):  # negate every head after the last epoch: its cal accuracy is the worst
        def on_epoch_end(self, args, state, control, model=None, **kw):
            if round(state.epoch) == 4:
                with torch.no_grad():
                    for h in model.heads:
                        h.weight.neg_()
                        h.bias.neg_()

    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, name="sel", max_steps=-1, epochs=4, select_on="cal",
               learning_rate=2e-3, token_cache=str(tmp_path / "tokens"))
    final = train(cfg, callbacks=[FlipLastEpoch()])
    meta = json.loads((final / "train_meta.json").read_text())
    curve = meta["logs"]["curve"]
    assert [r["epoch"] for r in curve] == [1, 2, 3, 4] and all(r["train_loss"] > 0 for r in curve)
    values = [r["selection"] for r in curve]
    assert values[-1] < 0.5 < max(values)
    assert meta["logs"]["best"]["epoch"] == 1 + int(np.argmax(values)) < 4  # first of the best
    # the final weights are the kept epoch's: they rescore on cal to its recorded metric
    cal = load_split("sst2", "cal", glue_dir).frame
    logits, _ = predict_logits(load_model(final), AutoTokenizer.from_pretrained(final), cal)
    assert task_metric(logits[:, -1].argmax(-1), cal["label"].to_numpy(), metric="accuracy") == pytest.approx(max(values))
    assert not (tmp_path / "sel" / "best").exists() and not (tmp_path / "sel" / "checkpoints").exists()
    assert list((tmp_path / "tokens").glob("sst2-train-*.npz")) and list((tmp_path / "tokens").glob("sst2-cal-*.npz"))


@pytest.mark.slow
def test_patience_stops_when_cal_stops_improving(tmp_path, tiny_encoder_dir, glue_dir):
    import json

    # a learning rate of ~0 leaves every epoch's cal metric equal to the first: no improvement after epoch 1
    cfg = _cfg(tmp_path, tiny_encoder_dir, glue_dir, name="pat", max_steps=-1, epochs=5, select_on="cal",
               patience=2, learning_rate=1e-12)
    meta = json.loads((train(cfg) / "train_meta.json").read_text())
    assert [r["epoch"] for r in meta["logs"]["curve"]] == [1, 2, 3] and meta["logs"]["best"]["epoch"] == 1


def test_token_cache_matches_direct_tokenisation(tmp_path, tokenizer_dir, glue_dir):
    from toolkit.nn.encoder.train import tokenize_frame

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    for task in ("sst2", "mrpc"):
        data = load_split(task, "train", glue_dir)
        sub = data.frame.sample(25, random_state=0)
        direct = tokenize_frame(sub, tok, 12)
        for _ in range(2):  # built, then read back
            cached = tokenize_frame(sub, tok, 12, cache_dir=tmp_path, data=data)
            assert sorted(cached.columns) == sorted(direct.columns)
            assert all(cached.columns[k] == direct.columns[k] for k in direct.columns)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    other = load_split("sst2", "test", glue_dir)
    with pytest.raises(ValueError, match="is not in the cached sst2/train"):
        tokenize_frame(other.frame, tok, 12, cache_dir=tmp_path, data=load_split("sst2", "train", glue_dir))


def test_selection_options_are_validated(tmp_path):
    base = dict(task="sst2", model="m", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="select_on must be None or 'cal'"):
        TrainConfig(**base, select_on="test")
    with pytest.raises(ValueError, match="patience needs select_on"):
        TrainConfig(**base, patience=2)
    with pytest.raises(ValueError, match="two_stage"):
        TrainConfig(**base, objective="two_stage", select_on="cal")
