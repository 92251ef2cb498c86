"""An output path is checked up front with the atomic writer's own check (``toolkit.caches.io.check_writable``):
``toolkit.cli._common.output_file`` (``--csv``, and now the ``--out`` of ``collect``, ``llm-collect``, ``generate``
and ``profile``) refused only directories and FIFOs, so a symbolic link or a read-only file passed it and a long
collection ran to be refused at the save by ``write_atomic`` (``profile`` wrote with its own rename, which replaced
the link and the read-only file). Read-only means no write bit (checked on the mode, so it holds for root too, who
may write anything)."""

from __future__ import annotations

import os

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
