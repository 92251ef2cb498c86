"""What the run-folder clean-ups may remove (review of issue 29's temporaries and checkpoint code): a checkpoint is
complete only when its trainer_state.json is whole, only transformers' own checkpoint-<step> folders are touched,
and a neighbour target's temporaries are never taken for this one's."""

from __future__ import annotations

import json
import os

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
