"""Collect every stage's logits in one forward pass per model into a cache.

``collect(["runs/sst2/minilm6_me/final"], "sst2", "test", out="sst2-test.parquet")`` runs each model once over the
split (``torch.inference_mode``, batches of similar length with dynamic padding), keeps each exit's logits, and
writes a :class:`toolkit.caches.classification.Cache`. Several models (cascade members, Swift and Super) become consecutive stages of
one cache, aligned by ``example_id``; a later model's cumulative FLOPs include every earlier model in full.

Resumable and deterministic: the split is cut into fixed chunks (``chunk_size`` examples in file order); each
finished chunk is written atomically to ``<out>.parts/`` and skipped on restart, but only by a run with the same
weights, tokenizers, data and settings (:mod:`toolkit.nn.common.parts`; a lock refuses a second collection to the same
``out``); the final file is written atomically and the parts removed. The same inputs give the same cache bytes
(timings are printed, not stored). Under ``accelerate launch`` each process collects the chunks ``k`` with
``k % world_size == rank`` and the main process merges them, checking that ids are complete and unique
(multi-node runs need ``<out>.parts`` on a shared filesystem).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel

from toolkit.analysis.cost.encoder import COST_DEFINITION, exit_flops
from toolkit.caches.classification import SCHEMA_VERSION, Cache, CacheError, load_cache, save_cache
from toolkit.data.provenance import package_versions
from toolkit.data.tasks import get_task, load_split
from toolkit.nn.common.inference import _model_config, predict_logits
from toolkit.nn.common.parts import Parts, run_signature
from toolkit.nn.encoder.models import load_model, resolve_model


def _load(m, allow_random_heads: bool = False):
    if isinstance(m, (tuple, list)):
        return m[0], m[1], getattr(m[0], "name_or_path", "model")
    path = resolve_model(m)
    return load_model(path, allow_random_heads=allow_random_heads), AutoTokenizer.from_pretrained(path), str(m)


def _check_positive(**values) -> None:
    for k, v in values.items():
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{k} must be a positive integer, got {v!r}")


def collect(models, task: str, split: str, out: str | os.PathLike, *, data_dir=None, batch_size: int = 32,
            max_length: int = 128, limit: int | None = None, chunk_size: int = 1024, names: list[str] | None = None,
            split_seed: int = 0, progress: bool = True, device=None, command: str | None = None,
            allow_random_heads: bool = False, restart: bool = False) -> Cache | None:
    """Collect ``models`` (paths, names, or ``(model, tokenizer)`` pairs) on ``task``/``split`` into ``out``.

    Returns the cache on the main process (None on other processes of a distributed run).
    ``limit`` keeps the first ``limit`` examples of the split (file order). A checkpoint whose heads would be
    initialised at random is refused unless ``allow_random_heads`` (then the cache records it). Parts of an
    interrupted run are resumed only if weights, tokenizers, data and settings are the same
    (:mod:`toolkit.nn.common.parts`); ``restart=True`` discards parts of a different run instead of refusing.
    """
    t0 = time.time()
    out = Path(out)
    _check_positive(batch_size=batch_size, limit=limit, chunk_size=chunk_size)
    if not isinstance(models, (list, tuple)) or (len(models) == 2 and isinstance(models[0], PreTrainedModel)):
        models = [models]
    spec = get_task(task)
    data = load_split(task, split, data_dir, split_seed=split_seed)
    frame = data.frame if limit is None else data.frame.iloc[:limit].reset_index(drop=True)
    loaded = [_load(m, allow_random_heads) for m in models]
    names = list(names) if names else [Path(n.rstrip("/")).name if Path(n).name != "final" else Path(n).parent.name
                                       for _, _, n in loaded]
    if len(names) != len(loaded) or len(set(names)) != len(names):
        raise ValueError(f"need one unique name per model, got {names}")
    configs = []
    for model, _, ident in loaded:
        cfg, exits, kind = _model_config(model)
        if model.config.num_labels != spec.num_labels:
            raise ValueError(f"model {ident} has {model.config.num_labels} labels, task {task} has {spec.num_labels}")
        configs.append((cfg, exits, kind))
    settings = {"task": task, "split": split, "limit": limit, "max_length": max_length, "chunk_size": chunk_size,
                "batch_size": batch_size, "data": data.fingerprint, "models": [ident for _, _, ident in loaded],
                "names": names, "split_seed": split_seed, "schema": SCHEMA_VERSION}
    rank, world, state = 0, 1, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState()
        rank, world = state.process_index, state.num_processes
        device = device or state.device
    run = run_signature(settings, {n: m for n, (m, _, _) in zip(names, loaded)},
                        {n: t for n, (_, t, _) in zip(names, loaded)}, device)

    with Parts(out, run, restart=restart, primary=rank == 0) as parts:
        if state is not None:
            state.wait_for_everyone()
        n_chunks = -(-len(frame) // chunk_size)
        mine = [k for k in range(n_chunks) if k % world == rank]
        for k in tqdm(mine, disable=not progress, desc=f"collect {task}/{split}", file=sys.stderr):
            if parts.done(f"chunk-{k:05d}"):
                continue
            sub = frame.iloc[k * chunk_size:(k + 1) * chunk_size].reset_index(drop=True)
            logits, ntoks = [], []
            for model, tok, _ in loaded:
                lg, nt = predict_logits(model, tok, sub, batch_size, max_length, device)
                logits.append(lg)
                ntoks.append(nt)
            parts.save(f"chunk-{k:05d}", logits=np.concatenate(logits, axis=1), n_tokens=np.stack(ntoks, 1),
                       example_ids=sub["example_id"].to_numpy().astype(str))

        if state is not None:
            state.wait_for_everyone()
            if not state.is_main_process:
                return None

        chunks = [parts.load(f"chunk-{k:05d}", ("logits", "n_tokens", "example_ids")) for k in range(n_chunks)]
        logits = np.concatenate([c["logits"] for c in chunks])
        ntoks = np.concatenate([c["n_tokens"] for c in chunks])
        ids = np.concatenate([c["example_ids"] for c in chunks])
        if (len(ids) != len(frame) or len(np.unique(ids)) != len(ids) or logits.shape[1:] != (
                sum(len(e) for _, e, _ in configs), spec.num_labels) or not (ids == frame["example_id"].to_numpy()).all()):
            raise CacheError(f"merged parts in {parts.folder} do not cover the split exactly once with the expected "
                             f"shapes; delete the folder and rerun")

        flops, stage_info, offset = [], [], np.zeros(len(frame))
        for m, ((cfg, exits, kind), name) in enumerate(zip(configs, names)):
            f = exit_flops(ntoks[:, m], cfg, exits, spec.num_labels) + offset[:, None]
            flops.append(f)
            offset = f[:, -1]
            for layer in exits:
                stage_info.append({"name": f"{name}:L{layer}" if len(configs) > 1 else f"L{layer}",
                                   "kind": kind if len(exits) == 1 and len(configs) > 1 else "exit",
                                   "model": settings["models"][m], "model_name": name, "layer": layer,
                                   "model_index": m, "hidden_size": cfg["hidden_size"],
                                   "num_layers": cfg["num_hidden_layers"]})
        meta = {"task": task, "split": split, "num_labels": spec.num_labels, "label_names": list(spec.label_names),
                "metric": spec.metric,
                "models": [{"name": n, "path": p, **_model_meta(mdl), "weights_sha256": run["weights"][n],
                            "tokenizer_sha256": run["tokenizers"][n]}
                           for n, (mdl, _, p) in zip(names, loaded)],
                "data": {"source": data.source, "files": data.files, "fingerprint": data.fingerprint,
                         "data_dir": data.data_dir, "split_seed": split_seed, "limit": limit},
                "n_tokens_model": names[0], "max_length": max_length, "batch_size": batch_size,
                "cost_definition": COST_DEFINITION, "command": command or " ".join(sys.argv),
                "versions": package_versions(), "signature": parts.signature}
        random = {n: mdl.random_heads for n, (mdl, _, _) in zip(names, loaded) if getattr(mdl, "random_heads", None)}
        if random:
            meta["random_heads"] = random
        cache = Cache(logits=logits.astype(np.float32), labels=frame["label"].to_numpy().astype(np.int64),
                      flops=np.concatenate(flops, axis=1), example_ids=ids, n_tokens=ntoks[:, 0].astype(np.int32),
                      stage_info=stage_info, meta={"schema_version": SCHEMA_VERSION, **meta})
        save_cache(cache, out)
        parts.finish()
    if progress:
        print(f"collected {out} in {time.time() - t0:.1f} s", file=sys.stderr)
    return load_cache(out)


def _model_meta(model: PreTrainedModel) -> dict:
    cfg = model.config
    tc = getattr(cfg, "train_config", None) or {}
    return {"source_model": getattr(cfg, "source_model", None), "revision": getattr(cfg, "_commit_hash", None),
            "train_seed": tc.get("seed"), "objective": tc.get("objective"),
            "parameters": int(sum(p.numel() for p in model.parameters()))}
