"""Resumable collection, one protocol for every collector (``collect``, ``collect_generation``, LLM token caches).

A collection of ``out`` keeps its finished chunks in ``<out>.parts/`` and skips them when rerun; the final cache is
written atomically and the parts removed. :class:`Parts` owns that folder:

- a **lock** (``filelock``, ``<out>.lock``): a second collection to the same ``out`` refuses at once, naming it;
  removed once the cache is written (:meth:`Parts.finish`), kept with the parts of an interrupted run;
- a **signature** (``signature.json``): the run's identity, from :func:`run_signature`: a hash of every model's
  weights (its state dict) and config, every tokenizer, the data fingerprint and every setting that changes what
  is stored (lengths, batch size, chunking, temperatures, device type, torch/transformers versions). Parts of a run
  with another signature are refused, naming the keys that differ, or with ``restart=True`` discarded (saying so);
- **chunks**: written to a temporary name unique to this process, fsynced, renamed; read back eagerly (zip CRCs)
  so a corrupt chunk is a :class:`~toolkit.caches.io.CacheError` naming the file and the fix.

Timings are never part of a chunk or a cache (collecting the same inputs twice gives the same cache bytes): the
collectors print them and the zoo records them in ``MANIFEST.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from toolkit.caches.io import CacheError, write_atomic
from toolkit.data.provenance import package_versions

_VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "_commit_hash", "name_or_path")


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's state dict (names, dtypes, shapes, bytes) and its config: what computes its logits."""
    h = hashlib.sha256()
    sd = model.state_dict()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}|{t.dtype}|{tuple(sd[k].shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    cfg = getattr(model, "config", None)
    if cfg is not None:
        d = {k: v for k, v in cfg.to_dict().items() if k not in _VOLATILE_CONFIG}
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    return h.hexdigest()


def tokenizer_sha256(tokenizer) -> str:
    """sha256 of what a tokenizer does: its vocabulary, normaliser and pre-tokeniser (the backend's serialisation,
    truncation/padding state aside), special tokens and sides."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:
        spec = sorted(tokenizer.get_vocab().items())
    state = {"class": type(tokenizer).__name__, "backend": spec,
             "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
             "padding_side": getattr(tokenizer, "padding_side", None),
             "truncation_side": getattr(tokenizer, "truncation_side", None)}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def run_signature(settings: dict, models: dict, tokenizers: dict, device) -> dict:
    """The identity of a collection: ``settings`` (task, split, data fingerprint, lengths, batch size ...) plus
    weight and tokenizer hashes per model name, the device type and the torch/transformers versions."""
    versions = package_versions()
    return {**settings, "weights": {n: weights_sha256(m) for n, m in models.items()},
            "tokenizers": {n: tokenizer_sha256(t) for n, t in tokenizers.items()},
            "device_type": torch.device(device).type if device is not None else
            ("cuda" if torch.cuda.is_available() else "cpu"),
            "versions": {k: versions.get(k) for k in ("torch", "transformers")}}


def signature_hash(run: dict) -> str:
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Parts:
    """The ``<out>.parts`` folder of one collection (see the module docstring). Use as a context manager:

    >>> with Parts(out, run) as parts:                          # doctest: +SKIP
    ...     if not parts.done("chunk-00000"): parts.save("chunk-00000", logits=...)
    ...     arrays = parts.load("chunk-00000", ("logits",))
    ...     parts.finish()                                     # after the cache is written

    ``primary=False`` (other processes of a distributed run): no lock and no claim; the primary did both.
    ``folder``: where the parts go (default ``<out>.parts`` beside ``out``).
    """

    def __init__(self, out: str | os.PathLike, run: dict, *, restart: bool = False, primary: bool = True,
                 log=None, folder: str | os.PathLike | None = None):
        self.out = Path(out)
        self.folder = Path(folder) if folder is not None else self.out.with_name(self.out.name + ".parts")
        self.run = json.loads(json.dumps(run, sort_keys=True, default=str))
        self.signature = signature_hash(self.run)
        self.restart = restart
        self.primary = primary
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self._lock = None
        self._finished = False

    # ------------------------------------------------------------------------------------------ claim
    def __enter__(self) -> Parts:
        if self.primary:
            from filelock import FileLock, Timeout

            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.out.with_name(self.out.name + ".lock")), timeout=0)
            try:
                self._lock.acquire()
            except Timeout:
                raise CacheError(f"{self.out}: another collection is writing this cache right now (lock "
                                 f"{self._lock.lock_file} is held); wait for it to finish or choose another "
                                 f"--out") from None
            try:
                self._claim()
            except BaseException:
                self._lock.release()
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            if self._finished:  # the cache is written: leave nothing beside it (unlinked while still held)
                Path(self._lock.lock_file).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def _claim(self) -> None:
        sig_file = self.folder / "signature.json"
        if sig_file.exists():
            try:
                old = json.loads(sig_file.read_text())
            except (OSError, ValueError):
                old = {}
            if not isinstance(old, dict):
                old = {}
            if old.get("signature") != self.signature:
                before = old.get("run") if isinstance(old.get("run"), dict) else {}
                diff = sorted(k for k in set(before) | set(self.run) if before.get(k) != self.run.get(k)) or \
                    ["signature"]
                n = len(list(self.folder.glob("*.npz")))
                if not self.restart:
                    raise CacheError(
                        f"{self.folder} holds {n} part(s) of a different collection ({', '.join(diff)} differ: "
                        f"other weights, tokenizer, data or settings); resuming would mix them. Rerun with the "
                        f"original models and settings, or pass --restart (restart=True) to discard them, or "
                        f"delete the folder")
                self.log(f"discarding {n} part(s) of a different collection in {self.folder} "
                         f"({', '.join(diff)} differ); collecting again from the start")
                shutil.rmtree(self.folder)
        elif self.folder.exists() and any(self.folder.glob("*.npz")):
            if not self.restart:
                raise CacheError(f"{self.folder} holds parts without a signature; delete the folder or pass "
                                 f"--restart to collect again")
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not sig_file.exists():
            write_atomic(sig_file, json.dumps({"signature": self.signature, "run": self.run}, indent=1,
                                              sort_keys=True), error=CacheError)

    # ------------------------------------------------------------------------------------------ chunks
    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    def done(self, name: str) -> bool:
        return self.path(name).exists()

    def save(self, name: str, **arrays) -> None:
        """Write one chunk atomically (:func:`toolkit.caches.io.write_atomic`: a temporary name unique to this
        process, fsynced, then renamed)."""
        write_atomic(self.path(name), lambda f: np.savez(f, **arrays), error=CacheError)

    def load(self, name: str, keys) -> dict[str, np.ndarray]:
        """Read every array of a chunk (checking the zip CRCs); a corrupt or incomplete chunk is a CacheError
        naming the file and the fix."""
        path = self.path(name)
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in keys if k not in z.files]
                if missing:
                    raise ValueError(f"arrays {missing} missing")
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise CacheError(f"{path}: corrupt chunk ({type(e).__name__}: {e}); delete this file and rerun the same "
                             f"command: only that chunk is collected again") from None

    def finish(self, *, keep: bool = False) -> None:
        """The cache is written: remove the parts (``keep``: leave them for reuse); the lock file goes when the
        context exits."""
        if not keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._finished = True
