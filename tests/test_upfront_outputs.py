"""Outputs checked before any work, each refusal naming the file and the fix, nothing half-written on failure.

``toolkit upgrade-cache`` rewrites caches in place. Before, each file was checked only when its turn came and its
folder only at the write: given several files, the first ones were rewritten and a later one was refused (a
non-cache, a folder without a write bit, the same file twice), and a failed temporary file was named instead of the
user's. Read-only means no write bit (checked on the mode, so it holds for root too, who may write anything)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from toolkit.caches.io import META_KEY, CacheError
from toolkit.cli import main


# ------------------------------------------------------------------------------------------------ upgrade-cache
def _schema1(path):
    """A small classification cache at ``path`` rewritten in the old format (schema 1, no checksums)."""
    import pyarrow.parquet as pq

    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_classification_cache

    path.parent.mkdir(parents=True, exist_ok=True)
    save_cache(random_classification_cache(20, 2, 2), path)
    t = pq.read_table(path)
    head = json.loads(t.schema.metadata[META_KEY])
    old = {"schema_version": 1, "shape": head["shape"], "stages": head["stages"], "meta": head["meta"]}
    pq.write_table(t.replace_schema_metadata({META_KEY: json.dumps(old).encode()}), path)
    return path


def _snapshot(folder) -> dict:
    """Every file under ``folder`` (temporary ones included) with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    _schema1(folder / "late.parquet")
    os.chmod(folder, 0o555)
    yield folder
    os.chmod(folder, 0o755)


def _refused_before_any_work(args, tmp_path, capsys, *, names):
    before = _snapshot(tmp_path)
    assert main(["upgrade-cache", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert _snapshot(tmp_path) == before  # the good first file was not upgraded either; no temporary left
    assert str(names) in err
    return err


def test_upgrade_cache_refuses_a_folder_without_a_write_bit_before_upgrading_any_file(tmp_path, read_only_folder,
                                                                                       capsys):
    first = _schema1(tmp_path / "first.parquet")
    late = read_only_folder / "late.parquet"
    err = _refused_before_any_work([first, late], tmp_path, capsys, names=late)
    assert "cannot be upgraded in place" in err and f"chmod u+w {read_only_folder}" in err


@pytest.mark.parametrize("bad", ["not a cache", "a folder", "missing", "under a file"])
def test_upgrade_cache_refuses_a_bad_later_file_before_upgrading_the_first(bad, tmp_path, capsys):
    first = _schema1(tmp_path / "first.parquet")
    late = tmp_path / "late.parquet"
    if bad == "not a cache":
        late.write_text("a,b\n1,2\n")
    elif bad == "a folder":
        late.mkdir()
    elif bad == "under a file":  # a file where a folder is expected
        late.write_text("x")
        late = late / "c.parquet"
    _refused_before_any_work([first, late], tmp_path, capsys, names=late)


def test_upgrade_cache_refuses_the_same_file_given_twice(tmp_path, capsys):
    p = _schema1(tmp_path / "c.parquet")
    os.link(p, tmp_path / "hard.parquet")  # another name, the same file
    for twice in ([p, p], [p, tmp_path / "sub" / ".." / "c.parquet"], [p, tmp_path / "hard.parquet"]):
        (tmp_path / "sub").mkdir(exist_ok=True)
        err = _refused_before_any_work(twice, tmp_path, capsys, names=twice[1])
        assert "given twice" in err and "give it once" in err
    assert main(["upgrade-cache", str(p)]) == 0


def test_upgrade_cache_refuses_a_missing_data_dir_before_touching_a_file(tmp_path, capsys):
    p = _schema1(tmp_path / "c.parquet")
    (tmp_path / "data").write_text("a file where the data folder is expected")
    err = _refused_before_any_work([p, "--add-weights-fingerprint", "--data-dir", tmp_path / "data"], tmp_path,
                                   capsys, names=tmp_path / "data")
    assert "--data-dir" in err and "not a folder" in err


def test_upgrade_cache_verifies_a_current_cache_in_a_read_only_folder(read_only_folder, capsys):
    """Nothing to rewrite, nothing refused: a current cache is verified where it lies."""
    late = read_only_folder / "late.parquet"
    os.chmod(read_only_folder, 0o755)
    assert main(["upgrade-cache", str(late)]) == 0
    os.chmod(read_only_folder, 0o555)
    before = _snapshot(read_only_folder)
    assert main(["upgrade-cache", str(late)]) == 0
    assert "already current (verified)" in capsys.readouterr().out and _snapshot(read_only_folder) == before


def test_upgrade_cache_library_refuses_an_unwritable_folder_naming_the_users_file(read_only_folder):
    from toolkit.caches.upgrade import upgrade_cache

    late = read_only_folder / "late.parquet"
    before = _snapshot(read_only_folder)
    with pytest.raises(CacheError) as err:
        upgrade_cache(late)
    assert str(err.value).startswith(f"{late}: ") and ".upgrade.parquet" not in str(err.value)
    assert _snapshot(read_only_folder) == before


def test_upgrade_cache_still_upgrades_a_read_only_file_and_leaves_nothing_on_a_failed_check(tmp_path, monkeypatch):
    """The rewrite is atomic: an interrupt after the copy was written (while it is checked) replaces nothing and
    leaves no temporary file; a read-only cache in a writable folder is upgraded and stays read-only."""
    import toolkit.caches.classification as classification
    from toolkit.caches.upgrade import upgrade_cache

    def interrupted(path, **kw):
        assert path != p and os.path.getsize(path) > 0  # the upgraded copy, beside the file
        raise KeyboardInterrupt

    p = _schema1(tmp_path / "c.parquet")
    os.chmod(p, 0o444)
    before = _snapshot(tmp_path)
    monkeypatch.setattr(classification, "load_cache", interrupted)
    with pytest.raises(KeyboardInterrupt):
        upgrade_cache(p)
    assert _snapshot(tmp_path) == before
    monkeypatch.undo()
    assert upgrade_cache(p) is True and stat.S_IMODE(os.stat(p).st_mode) == 0o444
    assert [q.name for q in tmp_path.iterdir()] == ["c.parquet"]


# ------------------------------------------------------------------------------------------------ toolkit zoo --out
# Before, `toolkit zoo` checked neither --out nor --runs: a file or a read-only folder where the caches go, or a
# read-only manifest, was found at the first write after the members had trained (hours on a CPU); --runs inside
# --out put checkpoints among the committed caches; --tiny with the default --out wrote tiny caches over the
# shipped ones and their manifest entries.
def _zoo(tmp_path, *extra):
    """`toolkit zoo` on one set of SST-2 with a data folder that does not exist: a run that got past the checks
    fails at once on the data (it never trains)."""
    return main(["zoo", "--task", "sst2", "--set", "minilm6_me", "--seed", "42", "--data-dir",
                 str(tmp_path / "no-data"), *map(str, extra)])


def _zoo_refused(tmp_path, capsys, *extra, says):
    before = _snapshot(tmp_path)
    assert _zoo(tmp_path, *extra) == 2
    err = capsys.readouterr().err
    assert all(s in err for s in says), err
    assert _snapshot(tmp_path) == before and not (tmp_path / "runs").exists()
    return err


def test_zoo_refuses_a_file_or_a_read_only_folder_as_out_before_training(tmp_path, capsys):
    (tmp_path / "out").write_text("a file where the caches' folder goes")
    _zoo_refused(tmp_path, capsys, "--out", tmp_path / "out", "--runs", tmp_path / "runs",
                 says=[f"{tmp_path / 'out'}: not a folder"])
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        _zoo_refused(tmp_path, capsys, "--out", ro, "--runs", tmp_path / "runs", says=[f"{ro}: is read-only"])
    finally:
        os.chmod(ro, 0o755)


def test_zoo_refuses_what_the_writes_below_out_would_refuse_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sst2").write_text("a file where the task's folder goes")
    _zoo_refused(tmp_path, capsys, "--out", out, "--runs", tmp_path / "runs", says=[f"{out / 'sst2'}: not a folder"])
    (out / "sst2").unlink()
    (out / "sst2").mkdir()
    for ro in (out / "MANIFEST.json", out / "sst2" / "minilm6_me-s42-test.parquet"):
        ro.write_text("{}")
        os.chmod(ro, 0o444)
        _zoo_refused(tmp_path, capsys, "--out", out, "--runs", tmp_path / "runs", says=[f"{ro}: is read-only"])
        ro.unlink()


def test_zoo_refuses_runs_inside_out_or_a_file_as_runs(tmp_path, capsys):
    out = tmp_path / "out"
    _zoo_refused(tmp_path, capsys, "--out", out, "--runs", out / "runs",
                 says=[f"--runs {out / 'runs'}: inside --out", "outside --out"])
    (tmp_path / "runs-file").write_text("x")
    _zoo_refused(tmp_path, capsys, "--out", out, "--runs", tmp_path / "runs-file",
                 says=[f"{tmp_path / 'runs-file'}: not a folder"])


def test_zoo_tiny_refuses_the_shipped_data_folder(tmp_path, capsys, monkeypatch):
    import toolkit.cli.zoo as zoo

    shipped = tmp_path / "data"
    shipped.mkdir()
    (shipped / "MANIFEST.json").write_text('{"caches": {}}')
    monkeypatch.setattr(zoo, "shipped_data", lambda: shipped.resolve(), raising=False)
    for out in (shipped, shipped / "tiny"):
        _zoo_refused(tmp_path, capsys, "--tiny", "--out", out, "--runs", tmp_path / "runs",
                     says=[f"--out {out}: in the shipped data/ folder", "runs/tiny-data"])
    from toolkit import __file__ as package

    monkeypatch.undo()
    assert zoo.shipped_data() == Path(package).resolve().parents[1] / "data"  # the checkout's, with its manifest
    assert (zoo.shipped_data() / "MANIFEST.json").is_file()


def test_zoo_check_refuses_an_out_without_a_manifest(tmp_path, capsys):
    _zoo_refused(tmp_path, capsys, "--check", "--out", tmp_path,
                 says=[f"{tmp_path / 'MANIFEST.json'}: no such manifest", "give --out the folder holding MANIFEST.json"])


# ------------------------------------------------------------------------------------------------ review (cab8353, 4ffaae7)
# Review of the up-front checks: each test below failed on the commit it names.
def test_review_zoo_accepts_out_and_runs_reached_through_a_link(tmp_path):
    """4ffaae7 refused --out/--runs that are symbolic links to writable folders (runs/ linked to a bigger disk):
    the zoo writes into them and never replaces them, so a link there cuts nothing. A link to a read-only or
    missing folder is still refused before training."""
    import argparse

    from toolkit.cli.zoo import check_folders

    disk = tmp_path / "disk"
    for name in ("out", "runs", "ro"):
        (disk / name).mkdir(parents=True)
        (tmp_path / name).symlink_to(disk / name)
    (disk / "out" / "sst2").mkdir()
    (tmp_path / "task-link").symlink_to(disk / "out" / "sst2")
    args = dict(check=False, tiny=False, task=["sst2"], set=["minilm6_me"], seed=[42])
    check_folders(argparse.Namespace(out=str(tmp_path / "out"), runs=str(tmp_path / "runs"), **args))
    os.chmod(disk / "ro", 0o555)
    try:
        with pytest.raises(CacheError, match="is read-only"):
            check_folders(argparse.Namespace(out=str(tmp_path / "ro"), runs=str(tmp_path / "runs"), **args))
    finally:
        os.chmod(disk / "ro", 0o755)
    (tmp_path / "dangling").symlink_to(disk / "nowhere")
    with pytest.raises(CacheError, match="does not exist"):
        check_folders(argparse.Namespace(out=str(tmp_path / "out"), runs=str(tmp_path / "dangling"), **args))
    with pytest.raises(CacheError, match="inside --out"):  # a link does not hide --runs inside --out
        (disk / "out" / "r").mkdir()
        (tmp_path / "r-link").symlink_to(disk / "out" / "r")
        check_folders(argparse.Namespace(out=str(tmp_path / "out"), runs=str(tmp_path / "r-link"), **args))


def test_review_add_fingerprint_names_a_non_token_cache_in_a_read_only_folder(tmp_path, capsys):
    """dfcc3a6 applied the folder check to a current classification cache under --add-weights-fingerprint (it
    has no model.weights_sha256, so it looked like a file to rewrite): the refusal blamed the folder, whose fix
    (chmod) leads on to the real refusal; it must say the cache is no token cache and leave it out."""
    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_classification_cache

    ro = tmp_path / "ro"
    ro.mkdir()
    save_cache(random_classification_cache(20, 2, 2), ro / "c.parquet")
    os.chmod(ro, 0o555)
    try:
        assert main(["upgrade-cache", "--add-weights-fingerprint", str(ro / "c.parquet")]) == 2
    finally:
        os.chmod(ro, 0o755)
    err = capsys.readouterr().err
    assert "not an LLM token cache" in err and "cannot be upgraded in place" not in err, err
