"""What the run-folder clean-ups may remove (review of issue 29's temporaries and checkpoint code): a checkpoint is
complete only when its trainer_state.json is whole, only transformers' own checkpoint-<step> folders are touched,
a neighbour target's temporaries are never taken for this one's, and no run removes what another process training in
the same folder is writing (the folder's training lock)."""

from __future__ import annotations

import json
import os

import pytest

from toolkit.caches.io import remove_temporaries

DEAD = 4194305  # above any pid_max (2**22 at most): never a live process


def _checkpoint(folder, name, state: str | None):
    p = folder / name
    p.mkdir(parents=True)
    (p / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (p / "trainer_state.json").write_text(state)
    return p


def test_a_checkpoint_whose_trainer_state_was_cut_short_is_dropped_and_only_step_folders_are_touched(tmp_path):
    from transformers.trainer_utils import get_last_checkpoint

    from toolkit.nn.encoder.train import drop_incomplete_checkpoints

    whole = _checkpoint(tmp_path, "checkpoint-2", json.dumps({"global_step": 2}))
    cut = _checkpoint(tmp_path, "checkpoint-4", '{"global_step": 4, "log_hist')  # killed inside save_to_json
    empty = _checkpoint(tmp_path, "checkpoint-6", "")  # created, nothing written yet
    mine = [_checkpoint(tmp_path, "checkpoint-best", None), _checkpoint(tmp_path, "checkpoint-6.bak", None)]
    assert sorted(drop_incomplete_checkpoints(tmp_path)) == sorted([cut, empty])
    assert whole.exists() and all(p.exists() for p in mine)  # not transformers' checkpoint-<step>: not ours
    assert get_last_checkpoint(str(tmp_path)) == str(whole)  # what a rerun resumes from


def test_remove_temporaries_never_takes_a_neighbour_targets_temporary(tmp_path):
    # the live temporary of target "model.<n>" reads, to a loose pattern, as one of "model" by a dead pid <n>
    neighbour = tmp_path / f".model.{DEAD}.{os.getpid()}.a1b2c3d4.tmp"
    neighbour.mkdir()
    own = tmp_path / f".model.{DEAD}.a1b2c3d4.tmp"
    own.mkdir()
    assert remove_temporaries(tmp_path / "model") == [own]
    assert neighbour.exists()
    assert remove_temporaries(tmp_path / "model", dead_only=False) == []
    assert neighbour.exists()


def _hold(lock, pid: int = 4242):
    """Hold the run folder's training lock as another process training there would (flock on its own open file)."""
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, str(pid).encode())
    return fd


@pytest.mark.slow  # a few seconds of tiny training on the old code
def test_train_refuses_a_folder_another_process_trains_in_and_leaves_its_save_alone(tmp_path, tiny_encoder_dir,
                                                                                    glue_dir):
    from toolkit.nn.encoder.train import TrainConfig, train

    out = tmp_path / "run"
    cfg = TrainConfig(task="sst2", model=str(tiny_encoder_dir), output_dir=str(out), max_steps=2, batch_size=16,
                      save_steps=1, learning_rate=1e-3, data_dir=str(glue_dir), seed=0)
    saving = _checkpoint(out / "checkpoints", "checkpoint-6", None)  # the other process is writing it now
    fd = _hold(out / "train.lock")
    try:
        with pytest.raises(RuntimeError, match=rf"{out}: another process \(pid 4242\) is training in this folder"):
            train(cfg)
        assert saving.exists() and not (out / "final").exists()
    finally:
        os.close(fd)  # the other process ends: the folder is free
    assert (train(cfg) / "config.json").exists() and not (out / "checkpoints").exists()


@pytest.mark.slow
def test_train_seq2seq_refuses_a_folder_another_process_trains_in(tmp_path, tiny_encoder_dir, glue_dir):
    from toolkit.nn.seq2seq.train import Seq2SeqTrainConfig, train_seq2seq

    out = tmp_path / "run"
    cfg = Seq2SeqTrainConfig(task="sst2", output_dir=str(out), encoder=str(tiny_encoder_dir),
                             decoder=str(tiny_encoder_dir), decoder_layers=1, max_steps=2, save_steps=1,
                             batch_size=8, learning_rate=1e-3, data_dir=str(glue_dir))
    live = out / f".final.{os.getpid()}.a1b2c3d4.tmp"  # the other process's final folder, being written
    live.mkdir(parents=True)
    fd = _hold(out / "train.lock")
    try:
        with pytest.raises(RuntimeError, match="another process .pid 4242. is training in this folder"):
            train_seq2seq(cfg)
        assert live.exists()
    finally:
        os.close(fd)
