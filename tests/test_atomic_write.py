"""One atomic writer (toolkit.caches.io.write_atomic) for policies, TSV outputs and resumable collection parts.

Before, ``toolkit.policy.write_atomic`` and ``toolkit.nn.common.parts.Parts._write_atomic`` (plus ``Parts.save``) were
separate copies that had drifted: the parts' files were left at mkstemp's mode 0600 and their errors named the
temporary file; the policy's temporary name did not carry the process id.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from toolkit.caches.io import CacheError, process_umask, write_atomic


NEW_FILE_MODE = 0o666 & ~process_umask()  # a new file gets the mode open() would give it


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("data,want", [("é\n", "é\n".encode()), (b"\x00\xff", b"\x00\xff"),
                                       (lambda f: f.write(b"abc"), b"abc")])
def test_writes_str_bytes_or_through_a_callable(tmp_path, data, want):
    path = write_atomic(tmp_path / "f", data)
    assert path.read_bytes() == want and stat.S_IMODE(os.stat(path).st_mode) == NEW_FILE_MODE
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_an_interrupt_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, interrupt):
    path = tmp_path / "f.json"
    path.write_text("old")

    def half(f):
        f.write(b"new, half written")
        raise interrupt()

    with pytest.raises(interrupt):
        write_atomic(path, half)
    assert path.read_text() == "old" and _leftovers(tmp_path) == []


def test_a_failed_rename_names_the_path_not_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text("old")
    seen = []

    def fail(src, dst):
        seen.append(Path(src).name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match=f"^{path}: cannot be written \\(No space left on device\\); nothing was "
                                      f"replaced$"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and _leftovers(tmp_path) == []
    # the temporary lies beside the target, named after it and this process (two processes never share one)
    assert seen[0].startswith(f".f.json.{os.getpid()}.") and seen[0].endswith(".tmp")


def test_refusals_use_the_callers_error_and_leave_everything_as_it_was(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("x")
    os.chmod(target, 0o640)
    write_atomic(target, "y")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # an existing file keeps its mode
    link = tmp_path / "l.json"
    link.symlink_to(target)
    with pytest.raises(CacheError, match="a symbolic link"):
        write_atomic(link, "z", error=CacheError)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="not a regular file"):
        write_atomic(tmp_path / "fifo", "z")
    with pytest.raises(ValueError, match="is a directory"):
        write_atomic(tmp_path, "z")
    with pytest.raises(ValueError, match="does not exist; create it first"):
        write_atomic(tmp_path / "no" / "f", "z")
    os.chmod(target, 0o444)
    try:
        with pytest.raises(ValueError, match="is read-only"):
            write_atomic(target, "z")
    finally:
        os.chmod(target, 0o644)
    assert link.is_symlink() and target.read_text() == "y" and _leftovers(tmp_path) == []


def test_policies_and_collection_parts_share_the_one_writer(tmp_path, monkeypatch):
    """Same temporary naming, same modes, same interrupt behaviour for a policy file, a parts signature and a
    chunk (before: parts files kept mkstemp's 0600, and the policy's temporary name had no process id)."""
    pytest.importorskip("torch")
    from toolkit.nn.common.parts import Parts
    from toolkit.policy import Policy

    renamed = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append(Path(a).name) or real(a, b))
    pol = Policy.early_exit("m", thresholds=[0.5]).save(tmp_path / "p.json")
    with Parts(tmp_path / "c.parquet", {"task": "t"}) as parts:
        parts.save("chunk-00000", x=np.arange(3))
        sig, chunk = parts.folder / "signature.json", parts.path("chunk-00000")
        assert parts.load("chunk-00000", ("x",))["x"].tolist() == [0, 1, 2]

        def interrupted(**arrays):
            raise KeyboardInterrupt

        monkeypatch.setattr(np, "savez", lambda f, **a: (f.write(b"PK partial"), interrupted()))
        with pytest.raises(KeyboardInterrupt):
            parts.save("chunk-00001", x=np.arange(3))
        assert not parts.done("chunk-00001") and _leftovers(parts.folder) == []
    for f in (pol, sig, chunk):
        assert stat.S_IMODE(os.stat(f).st_mode) == NEW_FILE_MODE, f
        assert any(n.startswith(f".{f.name}.{os.getpid()}.") and n.endswith(".tmp") for n in renamed), (f, renamed)


# ------------------------------------------------------------------------------------------------ caches
def _cache_table():
    import pyarrow as pa

    return pa.table({"example_id": ["a", "b", "c"], "x": np.array([1.5, -2.0, 3.25], dtype=np.float32)})


HEAD = {"kind": "test", "schema_version": 1, "note": "é"}


def _write_cache(path):
    from toolkit.caches.io import write_cache_table

    return write_cache_table(_cache_table(), path, HEAD)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, RuntimeError, OSError])
def test_a_cache_interrupted_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, interrupt):
    import pyarrow.parquet as pq

    path = _write_cache(tmp_path / "c.parquet")
    old = path.read_bytes()
    real = pq.write_table

    def half(table, where, **kw):  # the real writer, cut off after part of the file
        real(table, where, **kw)
        where.truncate(len(old) // 2) if hasattr(where, "truncate") else Path(where).write_bytes(old[:len(old) // 2])
        raise interrupt("disk gone")

    monkeypatch.setattr(pq, "write_table", half)
    with pytest.raises(interrupt):
        _write_cache(path)
    assert path.read_bytes() == old and _leftovers(tmp_path) == []


def test_a_cache_round_trips_exactly_and_writes_the_bytes_parquet_writes(tmp_path):
    import pyarrow.parquet as pq

    from toolkit.caches.io import read_cache_table

    path = _write_cache(tmp_path / "sub" / "c.parquet")  # a missing folder is made, as before
    table, head = read_cache_table(path, kind="test", schema_version=1)
    assert table.equals(_cache_table()) and head == HEAD and stat.S_IMODE(os.stat(path).st_mode) == NEW_FILE_MODE
    again = _write_cache(tmp_path / "c2.parquet")
    assert again.read_bytes() == path.read_bytes()  # same table and header, same bytes
    direct = tmp_path / "direct.parquet"  # the writer's file object gives the bytes of parquet's own path writer
    pq.write_table(pq.read_table(path), direct, compression="zstd", write_page_checksum=True,
                   write_statistics=False)
    assert direct.read_bytes() == path.read_bytes()
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_caches_share_the_one_writer_and_its_refusals(tmp_path, monkeypatch):
    """Before, write_cache_table kept its own copy of the temporary-file-and-rename: it replaced a symbolic link by
    a plain file (cutting the link), overwrote a read-only cache, and reset an existing cache's mode to 0644."""
    from toolkit.caches import io

    path = _write_cache(tmp_path / "c.parquet")
    os.chmod(path, 0o640)
    _write_cache(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # an existing cache keeps its mode
    link = tmp_path / "l.parquet"
    link.symlink_to(path)
    with pytest.raises(CacheError, match="a symbolic link"):
        _write_cache(link)
    assert link.is_symlink()
    os.chmod(path, 0o444)
    try:
        with pytest.raises(CacheError, match="is read-only"):
            _write_cache(path)
    finally:
        os.chmod(path, 0o644)
    with pytest.raises(CacheError, match="is a directory"):
        _write_cache(tmp_path)
    calls = []
    real = io.write_atomic
    monkeypatch.setattr(io, "write_atomic", lambda p, data, **kw: calls.append((Path(p), kw)) or real(p, data, **kw))
    _write_cache(path)
    assert calls == [(path, {"error": CacheError})] and _leftovers(tmp_path) == []
