"""Integrity-checked Parquet I/O shared by every cache kind: a flipped byte is refused, never read as other numbers.

Every cache kind (classification :mod:`.cache`, generation :mod:`.generation_cache`, LLM tokens ``.llm_cache``)
builds a ``pyarrow.Table`` and a JSON-able header dict, and goes through the two functions below; nothing else
opens a cache file.

Writing, :func:`write_cache_table(table, path, header) <write_cache_table>`:

- ``header`` must hold ``kind`` (str, e.g. "classification", "generation", "llm_tokens") and ``schema_version``
  (int); everything else is the kind's own (shape, stages, meta ...). It is stored as JSON under the schema
  metadata key ``b"toolkit"`` with one more key, ``integrity``: ``{"algorithm": "sha256", "content": <hex>}``,
  the sha256 of the header (without ``integrity``, canonical JSON) and of every column's decoded values
  (:func:`content_hash`).
- The file is written atomically (:func:`write_atomic`: a temporary file unique to this process in the same folder,
  fsync, rename) with zstd compression and Parquet page checksums (CRC32 of every data page), without column
  statistics (nothing reads them). Writing the same table and header twice gives the same bytes.
- Columns must hold no nulls; supported types: integers, floats (16/32/64), booleans, strings, binary, and
  (fixed-size) lists of these.

Reading, :func:`read_cache_table(path, kind=..., schema_version=...) <read_cache_table>` returns ``(table,
header)`` after checking, in order: a regular file (a directory, FIFO or device is refused without reading it);
a Parquet footer; the header is a JSON object of this ``kind`` and ``schema_version`` (a version-1 file written
before integrity checks existed gets an error saying how to upgrade it: :func:`toolkit.caches.upgrade.upgrade_cache`,
``toolkit upgrade-cache FILE``); every page checksum; the content hash. Every failure is a :class:`CacheError`
naming the file and, for header defects, the key. The kind's loader then reads header fields with
:func:`header_value` (a missing key or a wrong type is a :class:`CacheError` naming the file and the key) and
columns with :func:`column` (checks the column's Arrow type).

numpy and pyarrow only (no torch).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META_KEY = b"toolkit"
INTEGRITY_KEY = "integrity"
HASH_DOMAIN = b"toolkit cache content v2\n"


class CacheError(ValueError):
    """A cache file is missing, corrupt, inconsistent, or no longer matches its data; the message says which."""


@dataclass(frozen=True)
class CacheKind:
    """How one cache kind is handled. ``module`` holds ``cls``, ``load``, ``save`` and ``schema``, the header's
    schema version constant; ``explorer_view``: the class in :mod:`toolkit.analysis.explore.views`; the engine
    adapter is registered on ``cls`` with ``toolkit.analysis.engine.staged`` (``adapter`` names it)."""

    name: str
    module: str
    cls: str
    load: str
    save: str
    schema: str
    adapter: str
    explorer_view: str
    describe: str

    def _get(self, attr: str):
        return getattr(importlib.import_module(self.module), attr)

    @property
    def loader_name(self) -> str:
        return f"{self.module}.{self.load}"

    @property
    def cache_class(self) -> type:
        return self._get(self.cls)

    @property
    def schema_version(self) -> int:
        return self._get(self.schema)

    def loader(self):
        return self._get(self.load)

    def saver(self):
        return self._get(self.save)

    def view(self):
        """The explorer's view class of this kind."""
        return getattr(importlib.import_module("toolkit.analysis.explore.views"), self.explorer_view)


KINDS: dict[str, CacheKind] = {k.name: k for k in (
    CacheKind("classification", "toolkit.caches.classification", "Cache", "load_cache", "save_cache", "SCHEMA_VERSION",
              "toolkit.analysis.engine.from_classification", "ClassificationView",
              "staged logits of exits or cascade members"),
    CacheKind("generation", "toolkit.caches.generation", "GenCache", "load_generation_cache",
              "save_generation_cache", "GEN_SCHEMA_VERSION", "toolkit.analysis.engine.from_generation",
              "GenerationView", "generations of encoder-decoder models (Swift/Super)"),
    CacheKind("llm_tokens", "toolkit.caches.tokens", "LLMTokenCache", "load_llm_cache", "save_llm_cache",
              "LLM_SCHEMA_VERSION", "toolkit.analysis.llm.exits.from_llm_tokens", "LLMTokenView",
              "per-token exit statistics of a causal LM"),
)}


def json_default(o):
    """``json.dumps`` fallback for numpy scalars and arrays (anything else becomes its ``str``)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ------------------------------------------------------------------------------------------------ hashing
def _put(h, data: bytes | memoryview) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _feed(h, arr, where: str) -> None:
    """Hash one Arrow array's decoded values (independent of chunking, slicing and encoding)."""
    import pyarrow as pa

    t = arr.type
    if arr.null_count:
        raise CacheError(f"column {where!r} holds {arr.null_count} null value(s); caches hold none")
    _put(h, f"{_type_tag(t)}|{len(arr)}".encode())
    if pa.types.is_fixed_size_list(t):
        _feed(h, arr.flatten(), where)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        off = np.asarray(arr.offsets, dtype=np.int64)
        _put(h, (off - off[0]).tobytes())
        _feed(h, arr.flatten(), where)
    elif pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        wide = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        bufs = arr.buffers()
        off = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)[arr.offset:arr.offset + len(arr) + 1]
        off = off.astype(np.int64)
        _put(h, (off - off[0]).tobytes())
        _put(h, memoryview(bufs[2])[off[0]:off[-1]] if len(arr) and bufs[2] is not None else b"")
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        values = np.ascontiguousarray(arr.to_numpy(zero_copy_only=False))
        _put(h, values.dtype.str.encode())
        _put(h, memoryview(values).cast("B"))
    else:
        raise CacheError(f"column {where!r} has type {t}, which caches do not use")


def _type_tag(t) -> str:
    """An Arrow type without child field names (Parquet renames list items "item" -> "element")."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_type_tag(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{'large_' if pa.types.is_large_list(t) else ''}list<{_type_tag(t.value_type)}>"
    return str(t)


def canonical_header(header: dict) -> bytes:
    """The header without ``integrity`` as canonical JSON (sorted keys, no spaces)."""
    plain = {k: v for k, v in header.items() if k != INTEGRITY_KEY}
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), default=json_default).encode()


def content_hash(table, header: dict) -> str:
    """sha256 over the canonical header and every column's name, type and decoded values, in column order."""
    h = hashlib.sha256(HASH_DOMAIN)
    _put(h, canonical_header(header))
    _put(h, str(table.num_rows).encode())
    for name, col in zip(table.column_names, table.columns):
        _put(h, name.encode())
        _feed(h, col.combine_chunks(), name)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ writing
def write_cache_table(table, path: str | os.PathLike, header: dict) -> Path:
    """Write ``table`` with ``header`` (needs ``kind`` and ``schema_version``) atomically, with page checksums and a
    content hash; returns the path. See the module docstring. The file goes through :func:`write_atomic` (old file
    or the whole new one, never a part; a symbolic link, a read-only file or a FIFO refused with :class:`CacheError`;
    an existing file keeps its mode); a missing folder is created."""
    import pyarrow.parquet as pq

    if not isinstance(header.get("kind"), str) or not _is_int(header.get("schema_version")):
        raise ValueError("a cache header needs 'kind' (str) and 'schema_version' (int)")
    plain = json.loads(json.dumps({k: v for k, v in header.items() if k != INTEGRITY_KEY}, default=json_default))
    full = {**plain, INTEGRITY_KEY: {"algorithm": "sha256", "content": content_hash(table, plain)}}
    table = table.replace_schema_metadata({META_KEY: json.dumps(full, default=json_default).encode()})
    path = Path(path)
    check_writable(path, what="cache file", error=CacheError)  # before its folder is made
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda f: pq.write_table(table, f, compression="zstd", write_page_checksum=True,
                                                       write_statistics=False), error=CacheError)


def check_writable(path: str | os.PathLike, *, what: str = "file", error: type[Exception] = ValueError) -> int | None:
    """The permission bits of the existing file ``path`` (None where there is none) if :func:`write_atomic` may
    replace it; else ``error`` naming ``path`` (``what``: the file it should be, in the message): a symbolic link
    (replacing it would cut the link), a directory, a FIFO/device/socket (never opened: it would block) or a
    read-only file (no write bit: refused even to root, who may write anything). The one check of an output path,
    up front (``toolkit.cli._common.output_file``) and at the write."""
    return _writable_mode(Path(path), folder=False, what=what, error=error)


def check_writable_folder(path: str | os.PathLike, *, what: str = "output folder",
                          error: type[Exception] = ValueError) -> Path:
    """``path`` if a folder output (a saved model replaced as a whole) may be written there: absent, or a writable
    directory; else ``error`` naming ``path``: a symbolic link (replacing the folder would cut it), a file, FIFO or
    device, or a directory without a write bit (the checks of :func:`check_writable`, for a folder). For commands
    whose output is a folder, checked before the run (``toolkit.cli._common.output_folder``)."""
    path = Path(path)
    _writable_mode(path, folder=True, what=what, error=error)
    return path


def _writable_mode(path: Path, *, folder: bool, what: str, error: type[Exception]) -> int | None:
    """The permission bits of the existing ``path`` (None where there is none) if it is a writable regular file
    (``folder``: directory) and no symbolic link; else ``error`` naming ``path``."""
    if path.is_symlink():
        raise error(f"{path}: a symbolic link (to {os.path.realpath(path)}); refused"
                    f"{f' as the {what}' if folder else ''}: write to the target {'folder' if folder else 'file'} "
                    f"itself, or remove the link first")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise error(f"{path}: cannot be written ({e.strerror})") from None
    if folder and not stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: not a folder; give the {what}'s name (a folder, made if missing)")
    if not folder and stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory; give the {what}'s name")
    if not folder and not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a FIFO, device or socket); refused as the {what}")
    mode = stat.S_IMODE(st.st_mode)
    if not os.access(path, os.W_OK) or not mode & 0o222:  # no write bit: read-only even to root
        raise error(f"{path}: is read-only; refused (make it writable, or write elsewhere)")
    return mode


def process_umask(*, status: str = "/proc/self/status") -> int:
    """The process umask, read without changing it: the ``Umask:`` line of ``status`` (Linux); elsewhere set and
    restored with :func:`os.umask` (racy if another thread creates files meanwhile)."""
    try:
        with open(status, encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_atomic(path: str | os.PathLike, data, *, error: type[Exception] = ValueError) -> Path:
    """Write ``data`` to ``path`` atomically; the one small-file writer of the package (policies, signatures,
    resumable chunks, TSV outputs). ``data``: str (written as UTF-8), bytes, or a callable that writes to the
    binary file object it is given (e.g. ``lambda f: np.savez(f, **arrays)``).

    The data go to a temporary file beside ``path`` (named after it and this process id, so two processes never
    share one), are fsynced, then renamed over ``path``: a reader sees the old file or the new one, never a part.
    On any failure or interrupt (KeyboardInterrupt included) the temporary file is removed and ``path`` is left
    as it was. A new file gets mode 0666 less the process umask (as :func:`open` would give it,
    :func:`process_umask`); an existing one keeps its mode. A symbolic link (replacing it would cut
    the link), a directory, a FIFO/device, a read-only file or a missing folder is refused with ``error``; a failed
    write raises OSError. Both name ``path``, never the temporary file (the refusals: :func:`check_writable`)."""
    path = Path(path)
    mode = check_writable(path, error=error)
    fd, tmp = _temporary_beside(path, tempfile.mkstemp, error)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~process_umask() if mode is None else mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(f"{path}: cannot be written ({e.strerror or e}); nothing was replaced") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _temporary_beside(path: Path, make, error: type[Exception]):
    """``make(dir=, prefix=, suffix=)`` (:func:`tempfile.mkstemp` or :func:`tempfile.mkdtemp`) in ``path``'s
    folder, named after ``path`` and this process id (two processes never share one); ``error`` naming ``path``
    if the folder is missing or refuses it."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise error(f"{path}: the folder {folder} does not exist; create it first")
    try:
        return make(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:
        raise error(f"{path}: cannot write in {folder} ({e.strerror})") from None


def write_folder_atomic(path: str | os.PathLike, fill, *, what: str = "output folder",
                        error: type[Exception] = ValueError) -> Path:
    """Write the folder ``path`` (a saved model, a training checkpoint) as a whole: :func:`write_atomic` for a
    folder. ``fill(tmp)`` writes the contents into a new temporary folder beside ``path`` (named after it and
    this process id); every file in it and the folder are fsynced, then it takes ``path``'s place by rename (an
    existing ``path`` is renamed aside first and removed after): a reader sees the old folder or the whole new
    one, never a part. On any failure or interrupt (KeyboardInterrupt included) the temporary folder is removed
    and ``path`` is left as it was. A new folder gets mode 0777 less the process umask; an existing one keeps its
    mode. Refused with ``error`` naming ``path`` (``what``: the folder it should be): what
    :func:`check_writable_folder` refuses (a symbolic link, a file, a folder without a write bit); missing parent
    folders are made (as ``save_pretrained`` makes them); a failed write raises OSError naming ``path``, never the
    temporary folder."""
    import shutil

    path = check_writable_folder(path, what=what, error=error)
    mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"{path}: its folder {path.parent} cannot be made ({e.strerror})") from None
    tmp = Path(_temporary_beside(path, tempfile.mkdtemp, error))
    aside, published = None, False  # aside: where the old folder lies while it is not at path
    try:
        fill(tmp)
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~process_umask() if mode is None else mode)  # mkdtemp makes 0700
        if path.exists():
            os.replace(path, moved := tmp.with_name(tmp.name[:-len(".tmp")] + ".old.tmp"))
            aside = moved
        try:
            os.replace(tmp, path)
        except BaseException:
            if aside is not None:  # put the old folder back
                os.replace(aside, path)
                aside = None
            raise
        published = True
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = "nothing was replaced" if aside is None else f"the old folder could not be put back: it is {aside}"
        raise OSError(f"{path}: cannot be written ({e.strerror or e}); {kept}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if published and aside is not None:  # never the old folder when it could not be put back
            shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):  # the rename itself, durable (it happened: an error here is no failure)
        _fsync_path(path.parent if str(path.parent) else ".")
    return path


def remove_temporaries(path: str | os.PathLike, *, dead_only: bool = True) -> list[Path]:
    """Remove the temporaries that :func:`write_atomic` and :func:`write_folder_atomic` left beside ``path``
    (``.<name>.<pid>.<random>.tmp``, and ``.<...>.old.tmp`` for an old folder set aside) when a process was killed
    outright mid-write (SIGKILL runs no cleanup; the writers never reuse a name, so nothing else removes them).
    With ``dead_only`` (the default, safe while others write) only those of processes no longer alive, whose writes
    can never finish; without, every one (once ``path`` is published and no other process writes it). An old folder
    set aside is kept while ``path`` is missing (a kill between the two renames: it is the only copy). Returns the
    paths removed."""
    import glob
    import re
    import shutil

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    # tempfile's random part has no dot ([a-z0-9_]): the pid cannot be read out of a neighbour target's name
    # ("<path.name>.<digits>", whose own temporaries are .<name>.<digits>.<pid>.<random>.tmp)
    mine = re.compile(rf"^\.{re.escape(path.name)}\.(?P<pid>\d+)\.[a-z0-9_]+(\.old)?\.tmp$")
    gone = []
    for p in folder.glob(f".{glob.escape(path.name)}.*.tmp") if folder.is_dir() else ():
        m = mine.match(p.name)
        if m is None or (dead_only and _alive(int(m["pid"]))) or p.is_symlink() or \
                (p.name.endswith(".old.tmp") and not os.path.lexists(path)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return False
    except PermissionError:
        return True
    return True


def _fsync_tree(folder: Path) -> None:
    """fsync every regular file below ``folder`` and every folder (their entries), ``folder`` included."""
    for root, _dirs, names in os.walk(folder):
        for p in (os.path.join(root, name) for name in names):
            if os.path.isfile(p) and not os.path.islink(p):
                _fsync_path(p)
        _fsync_path(root)


def _fsync_path(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ reading
def check_regular_file(path: str | os.PathLike, what: str = "cache file") -> Path:
    """The path if it is an existing regular file; a :class:`CacheError` otherwise (nothing is read). ``what``
    names the expected file in messages ("cache file", "policy file", "labels file" ...)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CacheError(f"{path}: no such {what}") from None
    except OSError as e:
        raise CacheError(f"{path}: cannot be opened ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CacheError(f"{path}: is a directory, not a {what}; give the "
                         f"{'.parquet file' if what == 'cache file' else 'file'} itself")
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"{path}: not a regular file (a FIFO, device or socket); refused without reading it")
    return path


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a cache file (no integrity check: for messages and upgrades only)."""
    import pyarrow.parquet as pq

    path = check_regular_file(path)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception as e:  # noqa: BLE001 - any failure to parse the footer means a corrupt file
        raise CacheError(f"{path}: not a readable Parquet cache ({type(e).__name__}: {e}); it may be truncated or "
                         f"corrupt: recollect it") from None
    return _parse_header(path, metadata.get(META_KEY))


def _parse_header(path: Path, raw) -> dict:
    if raw is None:
        raise CacheError(f"{path}: Parquet file without toolkit metadata; build caches with toolkit.nn.encoder.collect or "
                         f"toolkit.caches.classification.from_arrays + save_cache")
    try:
        head = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CacheError(f"{path}: header (schema metadata 'toolkit') is not valid JSON ({e}); the file is "
                         f"corrupt: recollect it") from None
    if not isinstance(head, dict):
        raise CacheError(f"{path}: header must be a JSON object, got {type(head).__name__}")
    return head


def read_cache_table(path: str | os.PathLike, *, kind: str, schema_version: int):
    """Read and verify a cache file of ``kind``; returns ``(table, header)`` (header without ``integrity``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = check_regular_file(path)
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        metadata = pf.schema_arrow.metadata or {}
    except Exception as e:  # noqa: BLE001 - a corrupt footer raises many kinds of errors
        raise CacheError(f"{path}: not a readable Parquet cache ({type(e).__name__}: {e}); it may be truncated or "
                         f"corrupt: recollect it") from None
    head = _parse_header(path, metadata.get(META_KEY))
    got_kind = head.get("kind", "classification")
    if got_kind != kind:
        how = KINDS[got_kind].loader_name if isinstance(got_kind, str) and got_kind in KINDS else None
        raise CacheError(f"{path}: header key 'kind' is {got_kind!r}: "
                         + (f"a {got_kind} cache, not a {kind} cache; load it with toolkit.load (any kind) or {how}"
                            if how else f"not a {kind} cache"))
    version = head.get("schema_version")
    integrity = head.get(INTEGRITY_KEY)
    if integrity is None and version == 1:
        raise CacheError(f"{path}: written by an older toolkit (schema 1, without checksums or a content hash); "
                         f"upgrade it once with `toolkit upgrade-cache {path}` (or "
                         f"toolkit.caches.upgrade.upgrade_cache): same numbers, verified from then on")
    if not _is_int(version) or version != schema_version:
        raise CacheError(f"{path}: header key 'schema_version': schema version {version!r} is not supported (this "
                         f"toolkit reads {kind} caches of schema {schema_version}); upgrade the toolkit or recollect "
                         f"the cache")
    if not (isinstance(integrity, dict) and integrity.get("algorithm") == "sha256"
            and isinstance(integrity.get("content"), str) and len(integrity["content"]) == 64):
        raise CacheError(f"{path}: header key 'integrity' is missing or malformed (want algorithm sha256 and a "
                         f"64-digit content hash); the file is corrupt or was not written by toolkit")
    try:
        table = pf.read()
    except Exception as e:  # noqa: BLE001 - checksum failures, decompression and decoding errors alike
        raise CacheError(f"{path}: corrupt data ({type(e).__name__}: {e}); recollect the cache") from None
    if not isinstance(table, pa.Table):
        raise CacheError(f"{path}: not a table")
    if content_hash(table, head) != integrity["content"]:
        raise CacheError(f"{path}: content hash differs from the one recorded when it was written: the file was "
                         f"corrupted or edited; recollect it (or restore it from the zoo / version control)")
    return table, {k: v for k, v in head.items() if k != INTEGRITY_KEY}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TYPES = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object",
          bool: "true or false"}


def header_value(head: dict, key: str, kind, path, *, where: str = "header"):
    """``head[key]`` checked to be of ``kind`` (a type or tuple of types; ``float`` accepts ints, ``int`` refuses
    booleans); a :class:`CacheError` naming the file and the key otherwise."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(head, dict) or key not in head:
        raise CacheError(f"{path}: {where} key {key!r} is missing; the file is corrupt or was not written by toolkit")
    v = head[key]
    ok = any((_is_int(v) if k is int else isinstance(v, (int, float)) and not isinstance(v, bool)
              and math.isfinite(v) if k is float else isinstance(v, k)) for k in kinds)
    if not ok:
        want = " or ".join(_TYPES.get(k, k.__name__) for k in kinds)
        raise CacheError(f"{path}: {where} key {key!r} must be {want}, got {type(v).__name__} {str(v)[:60]!r}")
    return v


def column(table, name: str, path, types, *, where: str = "column", want: str | None = None):
    """The column ``name`` as one Arrow array, refusing a missing column or one whose type is not in ``types``
    (a callable ``pa.types.is_*`` or an Arrow type)."""
    import pyarrow as pa

    if name not in table.column_names:
        raise CacheError(f"{path}: {where} {name!r} is missing; the file is corrupt or was not written by toolkit")
    col = table.column(name).combine_chunks()
    types = types if isinstance(types, tuple) else (types,)
    if not any(t(col.type) if callable(t) and not isinstance(t, pa.DataType) else col.type == t for t in types):
        raise CacheError(f"{path}: {where} {name!r} has type {col.type}; "
                         + (want or "this cache kind does not use that type"))
    return col


def string_ids(col, path, *, where: str = "example_id") -> np.ndarray:
    """Example ids (an Arrow string column, or any sequence of str) as a numpy str array, refusing empty ids,
    ids with NUL or other control characters (numpy drops trailing NULs, so ``"a\\x00"`` would silently become
    ``"a"``) and duplicates."""
    import pyarrow as pa
    import pyarrow.compute as pc

    prefix = f"{path}: " if path else ""
    try:
        arr = col if isinstance(col, pa.Array) else pa.array(list(col))
    except (pa.ArrowException, TypeError, ValueError):
        arr = None
    if arr is None or not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        raise CacheError(f"{prefix}{where}s must be strings, got {getattr(arr, 'type', 'mixed values')}")
    bad = pc.or_(pc.is_null(arr), pc.or_(pc.equal(pc.utf8_length(arr), 0),
                                         pc.match_substring_regex(arr, r"[\x00-\x1f\x7f]")))
    bad = np.flatnonzero(bad.fill_null(True).to_numpy(zero_copy_only=False))
    if len(bad):
        raise CacheError(f"{prefix}{where} {bad[0]} is {arr[int(bad[0])].as_py()!r}: ids must be non-empty strings "
                         f"without NUL or control characters")
    ids = np.asarray(arr.to_pylist(), dtype=str)
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != len(ids):
        raise CacheError(f"{prefix}{where}s are not unique ({uniq[counts > 1][0]!r} appears more than once)")
    return ids
