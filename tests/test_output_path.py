"""An output path is checked up front with the atomic writer's own check (``toolkit.caches.io.check_writable``):
``toolkit.cli._common.output_file`` (``--csv``, and now the ``--out`` of ``collect``, ``llm-collect``, ``generate``
and ``profile``) refused only directories and FIFOs, so a symbolic link or a read-only file passed it and a long
collection ran to be refused at the save by ``write_atomic`` (``profile`` wrote with its own rename, which replaced
the link and the read-only file). Read-only means no write bit (checked on the mode, so it holds for root too, who
may write anything)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toolkit.caches.io import CacheError, check_writable, write_atomic
from toolkit.cli import main
from toolkit.cli._common import output_file


@pytest.fixture()
def bad_outs(tmp_path):
    """A symbolic link to a cache file and a read-only cache file (0444), with their contents."""
    target = tmp_path / "target.parquet"
    target.write_bytes(b"old cache")
    link = tmp_path / "link.parquet"
    link.symlink_to(target)
    ro = tmp_path / "ro.parquet"
    ro.write_bytes(b"read-only cache")
    os.chmod(ro, 0o444)
    yield {"a symbolic link": link, "is read-only": ro}
    os.chmod(ro, 0o644)


def test_output_file_refuses_what_write_atomic_refuses_in_the_same_words(bad_outs):
    for why, path in bad_outs.items():
        with pytest.raises(CacheError) as up_front:
            output_file(path, "--out cache")
        with pytest.raises(CacheError) as at_save:
            write_atomic(path, b"new", error=CacheError)
        assert why in str(up_front.value) and str(up_front.value) == str(at_save.value)
        assert str(up_front.value).startswith(f"{path}: ")
    folder = bad_outs["a symbolic link"].parent
    assert output_file(folder / "new.parquet") == folder / "new.parquet" and check_writable(folder / "new") is None
    os.chmod(folder / "target.parquet", 0o640)
    assert check_writable(folder / "target.parquet") == 0o640  # the mode write_atomic keeps


@pytest.mark.parametrize("command", [
    ["collect", "--model", "/nonexistent/model", "--task", "sst2", "--split", "test"],
    ["llm-collect", "--model", "/nonexistent/model", "--prompt-set", "sst2_sentiment", "--split", "test"],
    ["generate", "--model", "swift=/nonexistent/model", "--task", "sst2", "--split", "test"],
    ["profile", "--model", "/nonexistent/model", "--quick"],
], ids=lambda c: c[0])
def test_collection_clis_refuse_a_link_or_read_only_out_before_collecting(bad_outs, command, capsys, tmp_path):
    """The model does not exist: the refusal naming --out comes first (before, the run went on to the data and
    the model, and a real one ran to be refused at the save)."""
    for why, out in bad_outs.items():
        before = out.read_bytes()
        assert main([*command, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"toolkit {command[0]}: error: {out}: {why}" in err, err
        assert out.read_bytes() == before and not list(tmp_path.glob("*.parts"))
    assert bad_outs["a symbolic link"].is_symlink()


def _bad_files(folder, name: str) -> dict:
    """A symbolic link named ``name`` (to a file) and a read-only file, in ``folder``, keyed by the refusal."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"target-{name}"
    target.write_bytes(b"old output")
    link = folder / f"link-{name}"
    link.symlink_to(target)
    ro = folder / f"ro-{name}"
    ro.write_bytes(b"read-only output")
    os.chmod(ro, 0o444)
    return {"a symbolic link": link, "is read-only": ro}


def _tree(folder) -> dict:
    """Every entry under ``folder``: its kind and bytes (nothing may be added, removed or changed)."""
    return {str(p.relative_to(folder)): ("link", os.readlink(p)) if p.is_symlink() else
            ("dir", None) if p.is_dir() else ("file", p.read_bytes(), os.stat(p).st_mode) for p in folder.rglob("*")}


MISSING = "/nonexistent/input"


@pytest.mark.parametrize("command, name", [
    (["plot", f"{MISSING}-test.parquet", "--out"], "curve.png"),
    (["plot", f"{MISSING}-test.parquet", "--out"], "curve.pdf"),
    (["import", "lm-eval", f"{MISSING}/samples_sst2.jsonl", "--out"], "cache.parquet"),
    (["import", "chat-logprobs", f"{MISSING}.jsonl", "--labels", f"{MISSING}.txt", "--label-word", "negative",
      "--label-word", "positive", "--out"], "cache.parquet"),
    (["route", f"{MISSING}.parquet", "--csv"], "curve.csv"),
    (["sweep", f"{MISSING}.parquet", "--csv"], "curve.csv"),
    (["predict", "--policy", f"{MISSING}.json", "--input", f"{MISSING}.txt", "--out"], "out.tsv"),
    (["llm-generate", "--policy", f"{MISSING}.json", "--input", f"{MISSING}.txt", "--out"], "out.tsv"),
], ids=lambda c: c if isinstance(c, str) else "-".join(c[:2]) if c[0] == "import" else c[0])
def test_file_output_clis_refuse_a_link_or_read_only_output_first(command, name, capsys, tmp_path):
    """The inputs do not exist: the refusal naming the output comes first (before, plot and import read their
    inputs first and a real run was refused at the end, or, for plot, wrote through the link and the read-only
    file with savefig; route and predict/llm-generate checked nothing before the run)."""
    for why, out in _bad_files(tmp_path, name).items():
        before = _tree(tmp_path)
        assert main([*command, str(out)]) == 2
        err = capsys.readouterr().err
        assert f"error: {out}: {why}" in err, err
        assert _tree(tmp_path) == before


def test_difficulty_refuses_a_link_or_read_only_labels_file_before_training(capsys, tmp_path):
    """``toolkit difficulty --out RUN`` writes RUN/difficulty.npz: a link or read-only one is refused before the k
    fold trainings (before, it was replaced by the rename at the end of them)."""
    run = tmp_path / "run"
    for why, bad in _bad_files(run, "x").items():
        (run / "difficulty.npz").unlink(missing_ok=True)
        os.rename(bad, run / "difficulty.npz")
        before = _tree(tmp_path)
        assert main(["difficulty", "--task", "sst2", "--model", MISSING, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"toolkit difficulty: error: {run / 'difficulty.npz'}: {why}" in err, err
        assert _tree(tmp_path) == before


def test_probe_refuses_a_linked_or_read_only_model_folder_before_fitting(capsys, tmp_path):
    """``toolkit probe --out FOLDER`` replaces the folder as a whole: a symbolic link to a folder (rmtree refused it
    after the fit), a file there or a read-only folder is refused before the encoder is even loaded."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "config.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(real)
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "config.json").write_text("{}")
    os.chmod(ro, 0o555)
    file = tmp_path / "file"
    file.write_text("not a folder")
    try:
        for why, out in {"a symbolic link": link, "is read-only": ro, "not a folder": file}.items():
            before = _tree(tmp_path)
            assert main(["probe", "--model", MISSING, "--task", "sst2", "--out", str(out)]) == 2
            err = capsys.readouterr().err
            assert f"toolkit probe: error: {out}: {why}" in err, err
            assert _tree(tmp_path) == before
    finally:
        os.chmod(ro, 0o755)


def test_write_atomic_gives_a_new_file_the_umask_mode_and_keeps_an_existing_mode(tmp_path, monkeypatch):
    """A new file got 0644 whatever the umask (a private umask 077 leaked outputs to every user)."""
    from toolkit.caches import io

    old = os.umask(0o077)  # this test's process only; restored below
    try:
        assert io.process_umask() == 0o077  # read from /proc/self/status, the umask unchanged
        assert os.umask(0o077) == 0o077
        assert io.process_umask(status=str(tmp_path / "missing")) == 0o077  # the set-and-restore fallback
        assert os.umask(0o077) == 0o077
        write_atomic(tmp_path / "private.txt", "x")
        assert os.stat(tmp_path / "private.txt").st_mode & 0o777 == 0o600
        os.umask(0o022)
        write_atomic(tmp_path / "open.txt", "x")
        assert os.stat(tmp_path / "open.txt").st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    monkeypatch.setattr(io, "process_umask", lambda: 0o027)
    write_atomic(tmp_path / "group.txt", b"x")
    assert os.stat(tmp_path / "group.txt").st_mode & 0o777 == 0o640
    os.chmod(tmp_path / "private.txt", 0o664)
    write_atomic(tmp_path / "private.txt", "y")  # an existing file keeps its mode, whatever the umask
    assert os.stat(tmp_path / "private.txt").st_mode & 0o777 == 0o664


def test_plot_writes_its_figure_through_the_atomic_writer(tmp_path, monkeypatch):
    """The figure's bytes go to write_atomic in the format of the suffix (savefig(out) wrote in place)."""
    import argparse

    import matplotlib.pyplot as plt

    import toolkit.caches.io as io
    import toolkit.cli.plot as plot

    written, original = {}, io.write_atomic

    def spy(path, data, *, error=ValueError):
        written[Path(path)] = data
        return original(path, data, error=error)

    monkeypatch.setattr(io, "write_atomic", spy)
    monkeypatch.setattr(plot, "figure", lambda a: (plt.subplots()[0], {"reference": "last", "n_boot": 2}))
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")):
        out = tmp_path / "figs" / f"curve{suffix}"
        a = argparse.Namespace(out=str(out), profile=None, dpi=20, json=False)
        assert plot.run(a) == 0
        assert written[out].startswith(magic) and out.read_bytes() == written[out]
    plt.close("all")


@pytest.mark.parametrize("name", ["exits.json", "translators.safetensors"])
def test_llm_train_exits_refuses_a_link_or_read_only_exits_file_before_training(name, capsys, tmp_path):
    """``toolkit llm-train-exits --out RUN`` ends writing RUN/translators.safetensors and RUN/exits.json: a link or
    read-only one is refused before the model is loaded (before, its own rename replaced both after training)."""
    run = tmp_path / "run"
    for why, bad in _bad_files(run, "x").items():
        (run / name).unlink(missing_ok=True)
        os.rename(bad, run / name)
        before = _tree(tmp_path)
        assert main(["llm-train-exits", "--model", MISSING, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"toolkit llm-train-exits: error: {run / name}: {why}" in err, err
        assert _tree(tmp_path) == before


@pytest.mark.parametrize("name", ["smollm2_zs_lens-test.parquet", "smollm2_probe-cal.parquet",
                                  "smollm2_zs_mine-test.parquet"])
def test_llm_classify_refuses_a_link_or_read_only_cache_before_the_model_loads(name, capsys, tmp_path):
    """``toolkit llm-classify`` writes <out-dir>/<prefix>_<family>-<split>.parquet per exit family and split: each
    is checked before the model is loaded (before, a link or read-only one was refused only after every state had
    been computed, the caches before it already written)."""
    out_dir = tmp_path / "caches"
    for why, bad in _bad_files(out_dir, "x").items():
        (out_dir / name).unlink(missing_ok=True)
        os.rename(bad, out_dir / name)
        before = _tree(tmp_path)
        assert main(["llm-classify", "--model", MISSING, "--prompt-set", "sst2_label", "--split", "cal", "--split",
                     "test", "--exits", "lens", "--exits", "mine=/nonexistent/exits", "--out-dir", str(out_dir),
                     "--states-dir", str(tmp_path / "states")]) == 2
        err = capsys.readouterr().err
        assert f"toolkit llm-classify: error: {out_dir / name}: {why}" in err, err
        assert _tree(tmp_path) == before


@pytest.mark.parametrize("command", ["sweep", "route"])
def test_sweep_and_route_write_their_csv_through_the_atomic_writer(command, capsys, tmp_path, monkeypatch):
    """The curve CSV goes to write_atomic (``to_csv(path)`` wrote in place: a reader could see half a file)."""
    import pandas as pd

    import toolkit.caches.io as io

    cache = Path(__file__).resolve().parents[1] / "data" / "sst2" / ("t2t-test.parquet" if command == "route" else
                                                                    "cascade-test.parquet")
    if not cache.exists():
        pytest.skip("no shipped caches")
    written, original = {}, io.write_atomic

    def spy(path, data, *, error=ValueError):
        written[Path(path)] = data
        return original(path, data, error=error)

    monkeypatch.setattr(io, "write_atomic", spy)
    out = tmp_path / "curve.csv"
    assert main([command, str(cache), "--csv", str(out), "--rows", "2"]) == 0
    capsys.readouterr()
    assert written[out] == out.read_text() and len(pd.read_csv(out)) > 2


@pytest.mark.parametrize("command", [
    ["train", "--task", "sst2", "--model", MISSING],
    ["train-t2t", "--task", "sst2", "--model", MISSING],
], ids=lambda c: c[0])
def test_training_refuses_a_linked_or_read_only_final_folder_before_training(command, capsys, tmp_path):
    """``toolkit train --out RUN`` (and train-t2t) renames the finished weights onto RUN/final at the end: an
    unfinished RUN/final that is a link (cut by the rename) or a read-only folder is refused before the model is
    loaded."""
    run = tmp_path / "run"
    run.mkdir()
    real = tmp_path / "elsewhere"
    real.mkdir()
    for why, make in {"a symbolic link": lambda p: p.symlink_to(real),
                      "is read-only": lambda p: (p.mkdir(), os.chmod(p, 0o555))}.items():
        final = run / "final"
        if final.is_symlink():
            final.unlink()
        make(final)
        before = _tree(tmp_path)
        try:
            assert main([*command, "--out", str(run)]) == 2
            err = capsys.readouterr().err
            assert f"error: {final}: {why}" in err, err
            assert _tree(tmp_path) == before
        finally:
            os.chmod(final, 0o755) if not final.is_symlink() else None
