"""Temporaries of interrupted writes: toolkit.caches.io.remove_temporaries (what the atomic writers leave when a
process is killed outright) and train_seq2seq, which leaves no half-saved checkpoint to resume from and no
temporary after a failure, a kill or a finished run."""

from __future__ import annotations

import json
import os

import pytest

from toolkit.caches.io import remove_temporaries

DEAD = 4194305  # above any pid_max (2**22 at most): never a live process


def _folder(path, text="{}"):
    path.mkdir()
    (path / "config.json").write_text(text)
    return path


def test_remove_temporaries_takes_only_dead_writers_and_only_their_own_names(tmp_path):
    target = tmp_path / "final"
    dead = _folder(tmp_path / f".final.{DEAD}.k3j2.tmp")
    dead_file = tmp_path / f".final.{DEAD}.x9q1.tmp"
    dead_file.write_text("half")
    live = _folder(tmp_path / f".final.{os.getpid()}.a1b2.tmp")  # a write in progress (this process)
    others = [_folder(tmp_path / f".best.{DEAD}.k3j2.tmp"), _folder(tmp_path / f".final-2.{DEAD}.k3j2.tmp"),
              _folder(tmp_path / "final.tmp"), _folder(tmp_path / f".final.x{DEAD}.k3j2.tmp")]
    link = tmp_path / f".final.{DEAD}.link.tmp"
    link.symlink_to(others[0])
    assert sorted(remove_temporaries(target)) == sorted([dead, dead_file])
    assert live.exists() and link.is_symlink() and all(p.exists() for p in others)
    assert remove_temporaries(target, dead_only=False) == [live]  # once target is published: every one
    assert all(p.exists() for p in others) and (others[0] / "config.json").exists()


def test_remove_temporaries_keeps_an_old_folder_set_aside_while_its_target_is_missing(tmp_path):
    target = tmp_path / "final"
    aside = _folder(tmp_path / f".final.{DEAD}.k3j2.old.tmp", "the only copy")
    assert remove_temporaries(target) == [] and aside.exists()  # killed between the two renames
    _folder(target)
    assert remove_temporaries(target) == [aside]  # the new folder was published: the old one is stale


@pytest.mark.slow
def test_train_seq2seq_resumes_from_a_complete_checkpoint_and_keeps_no_temporary(tmp_path, tiny_encoder_dir,
                                                                                  glue_dir, monkeypatch):
    """A save that fails at step 4 (disk full while writing the optimizer: transformers writes checkpoint-4 in
    place) leaves only the complete checkpoint-2; a half checkpoint and a final-folder temporary of a run killed
    outright are removed when the next run starts, which resumes from checkpoint-2; the finished run keeps no
    checkpoint and no temporary. The old code kept checkpoint-4 and resumed from the half-saved checkpoint-3."""
    from transformers import Seq2SeqTrainer

    from toolkit.nn.seq2seq.train import Seq2SeqTrainConfig, train_seq2seq

    out = tmp_path / "run"
    cfg = Seq2SeqTrainConfig(task="sst2", output_dir=str(out), encoder=str(tiny_encoder_dir),
                             decoder=str(tiny_encoder_dir), decoder_layers=1, max_steps=4, save_steps=2,
                             batch_size=8, learning_rate=1e-3, data_dir=str(glue_dir), logging_steps=10)
    real, saves = Seq2SeqTrainer._save_optimizer_and_scheduler, []

    def disk_full_at_the_second_save(self, output_dir):
        saves.append(os.path.basename(output_dir))
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(Seq2SeqTrainer, "_save_optimizer_and_scheduler", disk_full_at_the_second_save)
    with pytest.raises(OSError, match="No space left"):
        train_seq2seq(cfg)
    monkeypatch.undo()
    assert saves == ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2"]
    # what a run killed outright (SIGKILL) mid-save leaves: a checkpoint without its trainer state, a final temporary
    _folder(out / "checkpoints" / "checkpoint-3")
    _folder(out / f".final.{DEAD}.k3j2.tmp")
    final = train_seq2seq(cfg)
    meta = json.loads((final / "train_meta.json").read_text())
    assert meta["resumed_from"] == str(out / "checkpoints" / "checkpoint-2") and meta["steps"] == 4
    assert not (out / "checkpoints").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert train_seq2seq(cfg) == final  # finished: not retrained
