"""Checkpoints and saved models go through the shared atomic writers (``toolkit.caches.io.write_atomic`` for a file,
``write_folder_atomic`` for a folder).

Before, each checkpoint had its own temporary-and-rename: a fixed temporary name (``best.tmp``, ``final.tmp``,
``.checkpoint.pt.tmp``) that a killed save left behind and the next save wrote into (stale files were published
with the new ones), nothing fsynced, the temporary left on a failure or interrupt, and a file where the folder goes
found only after the weights were written (by ``shutil.rmtree``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from toolkit.caches.io import CacheError, process_umask, write_folder_atomic

torch = pytest.importorskip("torch")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def fsynced(monkeypatch):
    """The paths of every file and folder fsynced while the test runs (read from the descriptor)."""
    seen, real = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    return seen


# ------------------------------------------------------------------------------------------------ the writer
def _fill(files: dict):
    def fill(tmp: Path) -> None:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return fill


def test_write_folder_atomic_replaces_a_folder_as_a_whole_and_fsyncs_it(tmp_path, fsynced):
    target = tmp_path / "model"
    write_folder_atomic(target, _fill({"a.json": "1", "sub/b.bin": "2"}))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~process_umask()  # as mkdir would make it
    os.chmod(target, 0o750)
    write_folder_atomic(target, _fill({"c.json": "3"}))
    assert _names(target) == ["c.json"] and (target / "c.json").read_text() == "3"  # no file of the old one
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o750 and _names(tmp_path) == ["model"]
    # every file and folder of the new one was fsynced under its temporary name, then the folder holding it
    tmp = {Path(p).name for p in fsynced if Path(p).name.startswith(f".model.{os.getpid()}.")}
    assert len(tmp) == 2 and all(n.endswith(".tmp") for n in tmp)
    assert any(p.endswith("/c.json") for p in fsynced) and any(p.endswith("/sub/b.bin") for p in fsynced)
    assert str(tmp_path) in fsynced


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError, OSError])
def test_write_folder_atomic_keeps_the_old_folder_on_an_interrupt(tmp_path, interrupt):
    target = tmp_path / "model"
    write_folder_atomic(target, _fill({"a.json": "old"}))

    def half(tmp: Path) -> None:
        (tmp / "a.json").write_text("new, half written")
        raise interrupt(28, "No space left on device") if interrupt is OSError else interrupt()

    with pytest.raises(interrupt) as err:
        write_folder_atomic(target, half)
    assert _names(tmp_path) == ["model"] and (target / "a.json").read_text() == "old"
    if interrupt is OSError:  # names the folder, never the temporary one
        assert str(err.value) == f"{target}: cannot be written (No space left on device); nothing was replaced"


def test_write_folder_atomic_puts_the_old_folder_back_when_the_last_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "model"
    write_folder_atomic(target, _fill({"a.json": "old"}))
    real = os.replace

    def fail_the_new(src, dst):
        if Path(dst) == target and not Path(src).name.endswith(".old.tmp"):
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_the_new)
    with pytest.raises(OSError, match="Input/output error"):
        write_folder_atomic(target, _fill({"a.json": "new"}))
    assert _names(tmp_path) == ["model"] and (target / "a.json").read_text() == "old"


def test_write_folder_atomic_refuses_before_writing(tmp_path):
    (tmp_path / "file").write_text("a file where the folder goes")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    called = []
    try:
        for name, why in [("file", "not a folder"), ("link", "a symbolic link"), ("ro", "is read-only"),
                          ("file/model", "Not a directory")]:
            with pytest.raises(CacheError, match=why) as err:
                write_folder_atomic(tmp_path / name, called.append, what="model folder", error=CacheError)
            assert str(err.value).startswith(f"{tmp_path / name}: ")
    finally:
        os.chmod(ro, 0o755)
    assert called == [] and _names(tmp_path) == ["file", "link", "real", "ro"]
    write_folder_atomic(tmp_path / "new" / "model", _fill({"a": "1"}))  # missing parents are made
    assert _names(tmp_path / "new") == ["model"]


# ------------------------------------------------------------------------------------------------ the checkpoints
@pytest.fixture()
def tiny_model(tiny_encoder_dir):
    from toolkit.nn.encoder.models import MultiExitModel

    return MultiExitModel.from_backbone(tiny_encoder_dir, num_labels=2)


class _State:
    def __init__(self, epoch: int):
        self.epoch, self.global_step = epoch, 10 * epoch


def _evaluate(keeper, model, epoch: int, value: float):
    from transformers import TrainerControl

    keeper.on_evaluate(None, _State(epoch), TrainerControl(), metrics={"eval_selection": value}, model=model)


def test_best_epoch_never_publishes_what_a_killed_save_left(tmp_path, tiny_model, fsynced):
    """A save killed under the old fixed name ``best.tmp`` left a partial folder; the next save wrote into it and
    published the stale file with the new weights."""
    from toolkit.nn.encoder.train import BestEpoch

    (tmp_path / "best.tmp").mkdir()
    (tmp_path / "best.tmp" / "pytorch_model.bin").write_bytes(b"stale weights of a killed save")
    keeper = BestEpoch(tmp_path / "best")
    _evaluate(keeper, tiny_model, 1, 0.6)
    assert "pytorch_model.bin" not in _names(tmp_path / "best")
    assert sorted(_names(tmp_path / "best")) == ["best.json", "config.json", "model.safetensors"]
    assert any(p.endswith("/model.safetensors") for p in fsynced)  # on disk before it counts as the best epoch
    assert keeper.restore(tiny_model) == {"epoch": 1, "step": 10, "value": 0.6}


def test_best_epoch_keeps_the_last_best_on_an_interrupted_save(tmp_path, tiny_model, monkeypatch):
    import json

    from toolkit.nn.encoder.train import BestEpoch

    keeper = BestEpoch(tmp_path / "best")
    _evaluate(keeper, tiny_model, 1, 0.6)
    saved = (tmp_path / "best" / "model.safetensors").read_bytes()
    real = type(tiny_model).save_pretrained

    def killed(self, folder, **kw):
        real(self, folder, **kw)
        raise KeyboardInterrupt  # after the weights, before best.json

    monkeypatch.setattr(type(tiny_model), "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(keeper, tiny_model, 2, 0.7)
    assert _names(tmp_path) == ["best"] and keeper.best["epoch"] == 1  # no temporary left behind
    assert json.loads((tmp_path / "best" / "best.json").read_text())["epoch"] == 1
    assert (tmp_path / "best" / "model.safetensors").read_bytes() == saved
    assert BestEpoch(tmp_path / "best").best["epoch"] == 1  # a resumed run reads the same


def test_best_epoch_refuses_a_file_where_its_folder_goes_before_saving(tmp_path, tiny_model):
    from toolkit.nn.encoder.train import BestEpoch

    keeper = BestEpoch(tmp_path / "best")
    (tmp_path / "best").write_text("a file where the folder goes")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'best'}: not a folder"):
        _evaluate(keeper, tiny_model, 1, 0.6)
    assert _names(tmp_path) == ["best"] and keeper.best is None


def _exits_and_optimizer():
    torch.manual_seed(0)
    exits = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 3))
    opt = torch.optim.Adam(exits.parameters())
    exits(torch.ones(2, 4)).sum().backward()
    opt.step()
    return exits, opt


def test_tuned_exit_checkpoints_are_fsynced_and_never_left_half_written(tmp_path, monkeypatch, fsynced):
    from safetensors.torch import load_file

    from toolkit.nn.causal.exits import _save_checkpoint, _save_state

    exits, opt = _exits_and_optimizer()
    ckpt, start = tmp_path / "checkpoint.pt", tmp_path / "start.safetensors"
    _save_checkpoint(ckpt, exits, opt, {"step": 1}, "sig")
    _save_state(start, exits)
    assert {Path(p).name.split(".")[1] for p in fsynced} >= {"checkpoint", "start"}  # each temporary fsynced
    assert torch.load(ckpt, weights_only=False)["record"] == {"step": 1}
    assert load_file(start)["0.weight"].equal(exits[0].weight)
    real = torch.save

    def killed(obj, f, **kw):
        real(obj, f, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        _save_checkpoint(ckpt, exits, opt, {"step": 2}, "sig")
    assert torch.load(ckpt, weights_only=False)["record"] == {"step": 1}
    assert _names(tmp_path) == ["checkpoint.pt", "start.safetensors"]


def test_token_cache_files_are_written_through_the_atomic_writer(tmp_path, tokenizer_dir, glue_dir, monkeypatch):
    import numpy as np
    from transformers import AutoTokenizer

    from toolkit.data.tasks import load_split
    from toolkit.nn.encoder.train import tokenize_frame

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    data = load_split("sst2", "train", glue_dir)
    sub = data.frame.iloc[:10]
    real = np.savez

    def killed(f, **arrays):
        real(f, **arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        tokenize_frame(sub, tok, 12, cache_dir=tmp_path, data=data)
    assert not [n for n in _names(tmp_path) if not n.endswith(".lock")]  # no temporary, no cache file
    monkeypatch.undo()
    cached = tokenize_frame(sub, tok, 12, cache_dir=tmp_path, data=data)
    assert cached.columns["input_ids"] == tokenize_frame(sub, tok, 12).columns["input_ids"]
    names = _names(tmp_path)
    assert len([n for n in names if n.endswith(".npz")]) == 1 and not [n for n in names if ".tmp" in n]


def test_the_zoo_manifest_is_written_through_the_atomic_writer(tmp_path, monkeypatch, fsynced):
    """Before: its own temporary and rename, not fsynced, the temporary left on a failed rename."""
    import json

    from toolkit.zoo.manifest import update_manifest

    update_manifest(tmp_path, "sst2/a-s42-test", {"n": 1})
    assert any(Path(p).name.startswith(f".MANIFEST.json.{os.getpid()}.") for p in fsynced)

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match=f"^{tmp_path / 'MANIFEST.json'}: cannot be written"):
        update_manifest(tmp_path, "sst2/b-s42-test", {"n": 2})
    monkeypatch.undo()
    assert json.loads((tmp_path / "MANIFEST.json").read_text()) == {"caches": {"sst2/a-s42-test": {"n": 1}}}
    assert _names(tmp_path) == [".MANIFEST.lock", "MANIFEST.json"]


# ------------------------------------------------------------------------------------------------ review (bf3de7f)
# Review of write_folder_atomic: this test failed on bf3de7f.
def test_review_write_folder_atomic_never_deletes_the_old_folder_it_could_not_put_back(tmp_path, monkeypatch):
    """When the new folder's rename fails and putting the old one back fails too, the old folder was removed by the
    cleanup (the only copy left) while the error said 'nothing was replaced'. It must be kept, and named."""
    target = tmp_path / "model"
    write_folder_atomic(target, _fill({"a.json": "old"}))
    real = os.replace

    def fail_onto_target(src, dst):
        if Path(dst) == target:
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", fail_onto_target)
    with pytest.raises(OSError) as err:
        write_folder_atomic(target, _fill({"a.json": "new"}))
    kept = [p for p in tmp_path.iterdir() if (p / "a.json").is_file() and (p / "a.json").read_text() == "old"]
    assert len(kept) == 1 and "nothing was replaced" not in str(err.value) and str(kept[0]) in str(err.value)
    assert not [p for p in tmp_path.iterdir() if p not in kept]  # the new temporary is removed


@pytest.mark.slow
def test_review_a_run_folder_of_the_old_writer_resumes_and_loses_every_stale_temporary(tmp_path, tiny_encoder_dir,
                                                                                        glue_dir):
    """A run folder as the old code left it when killed (checkpoints/checkpoint-5, and the fixed temporaries of a
    save killed midway: final.tmp holding a config.json, best.tmp) and as the new code leaves it after a SIGKILL
    mid-save (.best.<pid>.<random>.tmp, .final.<pid>.<random>.tmp: no Python cleanup runs) is not complete for the
    zoo, resumes from its checkpoint, and the finished run keeps no temporary (each a whole model on disk; before
    this fix they stayed forever: the new writer never reuses a name, and the old names were no longer touched)."""
    from transformers import TrainerCallback

    from toolkit.nn.encoder.train import TrainConfig, train

    class Die(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 7:
                raise KeyboardInterrupt("killed")

    out = tmp_path / "run"
    cfg = TrainConfig(task="sst2", model=str(tiny_encoder_dir), output_dir=str(out), max_steps=10, save_steps=5,
                      learning_rate=5e-3, batch_size=16, logging_steps=10, data_dir=str(glue_dir), seed=0,
                      warmup_ratio=0.0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Die()])
    for stale in ("final.tmp", "best.tmp", ".best.4194305.k3j2.tmp", ".final.4194305.x9q1.tmp",
                  ".best.4194305.k3j2.old.tmp"):
        (out / stale).mkdir()
        (out / stale / "config.json").write_text("{}")
    assert not (out / "final" / "config.json").exists() and any(out.glob("*/checkpoint-*"))  # zoo: resumable
    final = train(cfg)
    assert "checkpoint-5" in (final / "train_meta.json").read_text()  # resumed from the old checkpoint
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
