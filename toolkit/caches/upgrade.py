"""Upgrade caches written before integrity checks (schema 1) to the verified format, with the same numbers.

``upgrade_cache(path)`` reads a schema-1 classification, generation or LLM token cache, validates it with the kind's loader
rules, and rewrites it in place through :mod:`.cache_io` (page checksums, content hash) as schema 2; the decoded
arrays and the metadata are unchanged, which it checks before replacing the file. ``toolkit upgrade-cache
FILE...`` runs it from the command line. numpy and pyarrow only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from toolkit.caches.io import INTEGRITY_KEY, CacheError, check_regular_file, read_header, write_cache_table
from toolkit.caches.kinds import KINDS


def upgrade_cache(path: str | os.PathLike) -> bool:
    """Rewrite a schema-1 cache at ``path`` in the verified format; False if it already is current (untouched).
    The file keeps its permissions; a symbolic link is refused (the file it points to can be upgraded); errors name
    ``path``."""
    import pyarrow.parquet as pq

    if Path(path).is_symlink():  # replacing it would cut the link; upgrade the file it points to instead
        raise CacheError(f"{path}: a symbolic link (to {os.path.realpath(path)}); upgrade-cache rewrites files in "
                         f"place and never replaces a link: upgrade the target file itself")
    path = check_regular_file(path)
    head = read_header(path)
    kind = head.get("kind", "classification")
    if not isinstance(kind, str) or kind not in KINDS:
        raise CacheError(f"{path}: header key 'kind' is {kind!r}; only {', '.join(sorted(KINDS))} caches have an "
                         f"older format")
    version, loader = KINDS[kind].schema_version, KINDS[kind].loader()
    if head.get("schema_version") == version and INTEGRITY_KEY in head:
        loader(path, verify_data=False)  # verifies it
        return False
    if head.get("schema_version") != 1:
        raise CacheError(f"{path}: header key 'schema_version' is {head.get('schema_version')!r}; only schema 1 "
                         f"caches can be upgraded")
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001
        raise CacheError(f"{path}: not a readable Parquet file ({e}); it cannot be upgraded: recollect it") from None
    new_head = {**head, "kind": kind, "schema_version": version}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".upgrade.parquet")
    os.close(fd)
    mode = os.stat(path).st_mode & 0o7777
    try:
        write_cache_table(table.replace_schema_metadata(None), tmp, new_head)
        try:
            loader(tmp, verify_data=False)  # every check of the new format
        except CacheError as e:  # name the user's file, not the temporary one
            raise CacheError(f"{path}: cannot be upgraded, nothing was replaced: "
                             f"{str(e).replace(str(tmp), 'the upgraded copy')}") from None
        if not table.equals(pq.read_table(tmp)):  # same columns, types and values (metadata aside)
            raise CacheError(f"{path}: the upgraded table differs from the original; nothing was replaced")
        os.chmod(tmp, mode)  # a read-only cache stays read-only
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True

