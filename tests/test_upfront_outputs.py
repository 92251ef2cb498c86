"""Outputs checked before any work, each refusal naming the file and the fix, nothing half-written on failure.

``toolkit upgrade-cache`` rewrites caches in place. Before, each file was checked only when its turn came and its
folder only at the write: given several files, the first ones were rewritten and a later one was refused (a
non-cache, a folder without a write bit, the same file twice), and a failed temporary file was named instead of the
user's. Read-only means no write bit (checked on the mode, so it holds for root too, who may write anything)."""

from __future__ import annotations

import json
import os
import stat

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
