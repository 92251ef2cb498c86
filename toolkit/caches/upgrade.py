"""Upgrade caches written before integrity checks (schema 1) to the verified format, with the same numbers.

``upgrade_cache(path)`` reads a schema-1 classification, generation or LLM token cache, validates it with the kind's loader
rules, and rewrites it in place through :mod:`.cache_io` (page checksums, content hash) as schema 2; the decoded
arrays and the metadata are unchanged, which it checks before replacing the file. ``toolkit upgrade-cache
FILE...`` runs it from the command line, after :func:`check_upgradable` has passed every file (each refusal
before any file is touched).

``add_weights_fingerprint(path, sha256, how=...)`` records the model's weight fingerprint in the header of an LLM
token cache collected before collectors recorded one (``model.weights_sha256``, what a policy chosen on the cache
is then tied to), with ``model.weights_sha256_added`` saying that it was added later and how it was established;
the data are unchanged (checked before replacing the file) and the content hash covers the new header. The torch
side establishes the fingerprint (:func:`toolkit.nn.causal.collect.fingerprint_token_cache`). numpy and pyarrow
only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from toolkit.caches.io import (
    INTEGRITY_KEY,
    CacheError,
    check_regular_file,
    check_writable_folder,
    read_header,
    write_cache_table,
)
from toolkit.caches.kinds import KINDS


def check_upgradable(path: str | os.PathLike, *, adding_fingerprint: bool = False) -> tuple[Path, dict, str]:
    """``(path, header, kind)`` if :func:`upgrade_cache` (``adding_fingerprint``: also
    :func:`add_weights_fingerprint`) may rewrite the cache at ``path`` in place; nothing is read but the header
    and nothing is written. Refused with a :class:`CacheError` naming ``path`` and the fix: a symbolic link
    (replacing it would cut the link), anything but a regular file, a file that is not a cache, a kind or schema
    version without an older format, or, where the file would be rewritten (an old schema; a token cache without
    ``model.weights_sha256`` when ``adding_fingerprint``), a folder where the new copy cannot be written beside the
    file (no write bit: refused even to root, as :func:`~toolkit.caches.io.check_writable_folder` does). A current
    file in a read-only folder passes (it is only verified); a read-only cache may be upgraded (it stays
    read-only): the file is replaced, not written into."""
    if Path(path).is_symlink():  # replacing it would cut the link; upgrade the file it points to instead
        raise CacheError(f"{path}: a symbolic link (to {os.path.realpath(path)}); upgrade-cache rewrites files in "
                         f"place and never replaces a link: upgrade the target file itself")
    path = check_regular_file(path)
    head = read_header(path)
    kind = head.get("kind", "classification")
    if not isinstance(kind, str) or kind not in KINDS:
        raise CacheError(f"{path}: header key 'kind' is {kind!r}; only {', '.join(sorted(KINDS))} caches have an "
                         f"older format")
    current = head.get("schema_version") == KINDS[kind].schema_version and INTEGRITY_KEY in head
    if not current and head.get("schema_version") != 1:
        raise CacheError(f"{path}: header key 'schema_version' is {head.get('schema_version')!r}; only schema 1 "
                         f"caches can be upgraded")
    model = head.get("model") if isinstance(head.get("model"), dict) else {}
    if current and not (adding_fingerprint and kind == "llm_tokens" and not model.get("weights_sha256")):
        return path, head, kind  # nothing to rewrite
    folder = Path(os.path.realpath(path)).parent  # the file is no link; its folder may be reached through one
    try:
        check_writable_folder(folder, what="cache's folder", error=CacheError)
    except CacheError as e:
        raise CacheError(f"{path}: cannot be upgraded in place, its folder refuses the upgraded copy ({e}); make "
                         f"the folder writable (chmod u+w {folder}), or upgrade a copy kept elsewhere") from None
    return path, head, kind


def upgrade_cache(path: str | os.PathLike) -> bool:
    """Rewrite a schema-1 cache at ``path`` in the verified format; False if it already is current (untouched).
    Every refusal of :func:`check_upgradable` comes before anything is read beyond the header; the file keeps its
    permissions; errors name ``path``."""
    import pyarrow.parquet as pq

    path, head, kind = check_upgradable(path)
    version, loader = KINDS[kind].schema_version, KINDS[kind].loader()
    if head.get("schema_version") == version and INTEGRITY_KEY in head:
        loader(path, verify_data=False)  # verifies it
        return False
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001
        raise CacheError(f"{path}: not a readable Parquet file ({e}); it cannot be upgraded: recollect it") from None
    _rewrite(path, table, {**head, "kind": kind, "schema_version": version}, loader)
    return True


def add_weights_fingerprint(path: str | os.PathLike, weights_sha256: str, *, how: str) -> bool:
    """Record ``weights_sha256`` (:func:`toolkit.nn.common.parts.weights_sha256` of the model that produced the
    cache) as ``model.weights_sha256`` in the header of the LLM token cache at ``path``, which records none; the
    header also gets ``model.weights_sha256_added`` (``{"added_after_collection": true, "how": how}``): the
    fingerprint was not measured by the collector, and ``how`` says what established it. The columns are
    unchanged (checked before the file is replaced); the content hash is recomputed over the new header, so the
    file stays verifiable. False (untouched) if the header already records this fingerprint; another fingerprint
    is refused, as is any cache that is not an intact current LLM token cache. Keeps the file's mode; refuses a
    symbolic link; errors name ``path``."""
    import re

    from toolkit.caches.io import read_cache_table

    if not (isinstance(weights_sha256, str) and re.fullmatch(r"[0-9a-f]{64}", weights_sha256)):
        raise CacheError(f"{path}: weights_sha256 must be 64 lowercase hex digits, got {weights_sha256!r}")
    if not isinstance(how, str) or not how.strip():
        raise CacheError(f"{path}: say how the fingerprint was established (how=...): it is recorded beside it")
    path, head, _ = check_upgradable(path, adding_fingerprint=True)  # refused before reading the columns
    kind = KINDS["llm_tokens"]
    if head.get("kind") != "llm_tokens":
        raise CacheError(f"{path}: not an LLM token cache; classification and generation caches record their "
                         f"models' fingerprints under meta.models")
    table, head = read_cache_table(path, kind="llm_tokens", schema_version=kind.schema_version)
    kind.loader()(path, verify_data=False)  # every check of the format before anything is written
    model = head["model"]
    have = model.get("weights_sha256")
    if have == weights_sha256:
        return False
    if have is not None:
        raise CacheError(f"{path}: header key 'model.weights_sha256' already records {have[:12]}..., not "
                         f"{weights_sha256[:12]}...: the cache was collected on other weights; nothing was changed")
    model = {**model, "weights_sha256": weights_sha256,
             "weights_sha256_added": {"added_after_collection": True, "how": how.strip()}}
    _rewrite(path, table, {k: v for k, v in head.items() if k != INTEGRITY_KEY} | {"model": model}, kind.loader())
    return True


def _rewrite(path: Path, table, head: dict, loader) -> None:
    """Write ``table`` with ``head`` to a temporary copy beside ``path``, load it with every check of its kind,
    confirm its columns equal ``table``'s, then put it in place of ``path`` with ``path``'s mode; nothing is replaced
    on any failure, and errors name ``path``."""
    import pyarrow.parquet as pq

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".upgrade.parquet")
    except OSError as e:  # name the user's file, not the temporary one
        raise CacheError(f"{path}: cannot be upgraded, the upgraded copy cannot be written beside it ({e.strerror}); "
                         f"nothing was replaced") from None
    os.close(fd)
    mode = os.stat(path).st_mode & 0o7777
    try:
        write_cache_table(table.replace_schema_metadata(None), tmp, head)
        try:
            loader(tmp, verify_data=False)  # every check of the format
        except CacheError as e:  # name the user's file, not the temporary one
            raise CacheError(f"{path}: cannot be upgraded, nothing was replaced: "
                             f"{str(e).replace(str(tmp), 'the upgraded copy')}") from None
        if not table.replace_schema_metadata(None).equals(pq.read_table(tmp).replace_schema_metadata(None)):
            raise CacheError(f"{path}: the upgraded table differs from the original; nothing was replaced")
        os.chmod(tmp, mode)  # a read-only cache stays read-only
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)

