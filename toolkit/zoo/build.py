"""Rebuild the shipped caches: train the zoo (toolkit.zoo.recipes) and collect cal/test caches, with a manifest.

``toolkit zoo`` (or :func:`build`) trains each member that a cache needs (resuming where a run stopped), collects
``<out>/<task>/<set>-<split>.parquet`` for the sets

- ``minilm6_me``: multi-exit all-MiniLM-L6-v2 (6 exits),
- ``mpnet_me``: multi-exit all-mpnet-base-v2 (12 exits),
- ``cascade``: MiniLM-L2 -> MiniLM-L6 -> MPNet-base, complete models (also the Swift/Super pair MiniLM-L6/MPNet),

and records in ``<out>/MANIFEST.json`` per cache: the command, seeds, data fingerprint, package versions, train
sizes, wall times, and each stage's test metric and mean FLOPs. ``tiny=True`` runs the same path in minutes (CI):
a few training steps, a few examples, written wherever ``out`` points.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..analysis.cache import load_cache
from ..data import get_task
from .manifest import generation_table, stage_table, update_manifest
from .recipes import CASCADE, OBJECTIVE_MEMBERS, PROBES, SLENDER, ZOO_TASKS, recipe, seq2seq_recipe

SETS = {"minilm6_me": ("minilm6_me",), "mpnet_me": ("mpnet_me",), "cascade": CASCADE,
        **{m: (m,) for m in (*OBJECTIVE_MEMBERS, *SLENDER, *PROBES)}}
GENERATION_SETS = {"t2t": ("t2t_swift", "t2t_super")}  # Swift/Super encoder-decoders, generation caches
NAMES = {"minilm6_me": "minilm6_me", "mpnet_me": "mpnet_me", "minilm2": "minilm-l2", "minilm6": "minilm-l6",
         "mpnet": "mpnet", **{m: m for m in (*OBJECTIVE_MEMBERS, *SLENDER, *PROBES)},
         "t2t_swift": "swift", "t2t_super": "super"}




# manifest key -> TrainConfig field, per model
_TRAIN_FIELDS = {"train_seed": "seed", "objective": "objective", "source_model": "model",
                 "num_hidden_layers": "num_hidden_layers", "epochs": "epochs", "max_steps": "max_steps",
                 "learning_rate": "learning_rate", "head_learning_rate": "head_learning_rate"}


def _manifest_entry(path: Path, cache, train_metas: list[dict], wall: float, command: str) -> dict:
    m = cache.meta
    return {"file": str(path), "task": m["task"], "split": m["split"], "n_examples": cache.n_examples,
            "stages": cache.stages, "command": command, "collect_command": m.get("command"),
            "data_fingerprint": m["data"]["fingerprint"], "data_files": m["data"]["files"],
            "split_seed": m["data"]["split_seed"], "versions": m.get("versions"),
            "models": [{"name": mm["name"],
                        **{key: t.get("config", {}).get(field) for key, field in _TRAIN_FIELDS.items()},
                        "train_size": t.get("train_size"), "train_wall_s": round(t.get("wall_time_s", 0.0), 1),
                        "parameters": mm.get("parameters")}
                       for mm, t in zip(m["models"], train_metas)],
            "collect_wall_s": round(wall, 1), "cost_definition": m.get("cost_definition"),
            "stage_metrics": stage_table(cache)}


def _generation_entry(path: Path, cache, train_metas: list[dict], wall: float, command: str) -> dict:
    m = cache.meta
    return {"file": str(path), "kind": "generation", "task": m["task"], "split": m["split"],
            "n_examples": cache.n_examples, "models": [
                {"name": name, "encoder": t["config"].get("encoder"), "decoder": t["config"].get("decoder"),
                 "train_seed": t["config"].get("seed"), "epochs": t["config"].get("epochs"),
                 "learning_rate": t["config"].get("learning_rate"), "train_size": t.get("train_size"),
                 "train_wall_s": round(t.get("wall_time_s", 0.0), 1), "parameters": g.info.get("parameters")}
                for (name, g), t in zip(cache.models.items(), train_metas)],
            "command": command, "collect_command": m.get("command"), "data_fingerprint": m["data"]["fingerprint"],
            "data_files": m["data"]["files"], "split_seed": m["data"]["split_seed"], "versions": m.get("versions"),
            "decoding": m.get("decoding"), "collect_wall_s": round(wall, 1),
            "cost_definition": m.get("cost_definition"), "model_metrics": generation_table(cache)}




def build_generation(task: str, s: str, out: Path, runs: Path, splits, tiny: bool, data_dir, command: str,
                     log=print) -> list[Path]:
    """Train the text-to-text Swift/Super members of set ``s`` and collect their generation caches."""
    from ..analysis.generation_cache import load_generation_cache
    from ..nn.generate import collect_generation
    from ..nn.seq2seq_train import train_seq2seq

    finals, metas = {}, []
    for member in GENERATION_SETS[s]:
        cfg = seq2seq_recipe(task, member, root=runs, tiny=tiny, data_dir=str(data_dir) if data_dir else None)
        t0 = time.time()
        log(f"[zoo] train {task}/{member} -> {cfg.output_dir}")
        finals[NAMES[member]] = str(train_seq2seq(cfg))
        metas.append(json.loads((Path(finals[NAMES[member]]) / "train_meta.json").read_text()))
        log(f"[zoo]   done in {time.time() - t0:.0f} s")
    written = []
    for split in splits:
        path = out / task / f"{s}-{split}.parquet"
        if path.exists() and [g.info["path"] for g in load_generation_cache(path).models.values()] == \
                list(finals.values()):
            log(f"[zoo] exists: {path}")
            written.append(path)
            continue
        t0 = time.time()
        log(f"[zoo] generate {path}")
        cache = collect_generation(finals, task, split, path, data_dir=data_dir, limit=16 if tiny else None,
                                   progress=False, batch_size=64)
        update_manifest(out, f"{task}/{s}-{split}", _generation_entry(path, cache, metas, time.time() - t0, command))
        written.append(path)
    return written




def build(tasks=ZOO_TASKS, sets=tuple(SETS), out: str | os.PathLike = "data", runs: str | os.PathLike = "runs",
          splits=("cal", "test"), tiny: bool = False, data_dir=None, log=print) -> list[Path]:
    """Train what is missing and collect every (task, set, split) cache; returns the cache paths."""
    from ..nn.collect import collect
    from ..nn.train import train

    out, runs = Path(out), Path(runs)
    command = "toolkit " + " ".join(sys.argv[1:]) if sys.argv and "toolkit" in sys.argv[0] else "toolkit.zoo.build"
    written = []
    for task in tasks:
        get_task(task)
        for s in sets:
            if s in GENERATION_SETS:
                written += build_generation(task, s, out, runs, splits, tiny, data_dir, command, log)
                continue
            if s not in SETS:
                raise ValueError(f"unknown set {s!r}; choose from {sorted(SETS) + sorted(GENERATION_SETS)}")
            finals, metas = [], []
            for member in SETS[s]:
                if member in PROBES:
                    from ..nn.probe import fit_probe_exits

                    spec = PROBES[member]
                    clf = train(recipe(task, spec["classifier"], root=runs, tiny=tiny,
                                       data_dir=str(data_dir) if data_dir else None))
                    final = Path(runs) / task / member / "final"
                    if not (final / "config.json").exists():
                        fit_probe_exits(clf, task, final, train_limit=64 if tiny else spec["train_limit"],
                                        C=spec["C"], data_dir=data_dir)
                    finals.append(final)
                    metas.append(json.loads((final / "train_meta.json").read_text()))
                    continue
                if member in SLENDER:
                    teacher_cfg = recipe(task, SLENDER[member]["teacher"], root=runs, tiny=tiny,
                                         data_dir=str(data_dir) if data_dir else None)
                    prepare_slender(train(teacher_cfg), Path(runs) / task / member / "pruned", task,
                                    SLENDER[member]["width"], data_dir)
                cfg = recipe(task, member, root=runs, tiny=tiny, data_dir=str(data_dir) if data_dir else None)
                t0 = time.time()
                log(f"[zoo] train {task}/{member} -> {cfg.output_dir}")
                final = train(cfg)
                finals.append(final)
                metas.append(json.loads((final / "train_meta.json").read_text()))
                log(f"[zoo]   done in {time.time() - t0:.0f} s")
            for split in splits:
                path = out / task / f"{s}-{split}.parquet"
                if _cache_is_current(path, finals):
                    log(f"[zoo] exists: {path}")
                    written.append(path)
                    continue
                t0 = time.time()
                log(f"[zoo] collect {path}")
                cache = collect([str(f) for f in finals], task, split, path, data_dir=data_dir,
                                names=[NAMES[m] for m in SETS[s]], limit=16 if tiny else None, progress=False,
                                batch_size=64)
                update_manifest(out, f"{task}/{s}-{split}", _manifest_entry(path, cache, metas, time.time() - t0,
                                                                           command))
                written.append(path)
    return written


def _cache_is_current(path: Path, finals: list[Path]) -> bool:
    """A cache is reused only if it came from these model folders and none was retrained after it was written."""
    if not path.exists():
        return False
    models = load_cache(path).meta.get("models") or []
    if [m["path"] for m in models] != [str(f) for f in finals]:
        return False
    written = path.stat().st_mtime
    return all((f / "train_meta.json").stat().st_mtime <= written for f in finals)


def prepare_slender(teacher_dir: Path, out: Path, task: str, width: float, data_dir=None, n_batches: int = 20) -> Path:
    """Prune a trained multi-exit model to ``width`` (per-exit Taylor importance on train batches); once."""
    if (out / "config.json").exists():
        return out
    from transformers import AutoTokenizer

    from ..nn.models import load_model
    from ..nn.prune import slenderize, train_batches

    model = load_model(teacher_dir)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    slenderize(model, train_batches(tok, task, n_batches, 32, data_dir=data_dir), width)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return out





