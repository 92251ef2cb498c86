"""The zoo's manifest (``data/MANIFEST.json``): how each shipped cache was made, its per-stage numbers, and the
check that every cache still rescores to them. Analysis side: numpy and pyarrow, no torch."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from toolkit.analysis.metrics.task import task_metric
from toolkit.caches.classification import load_cache
from toolkit.caches.inputs import cost_unit
from toolkit.caches.io import CacheError, write_atomic
from toolkit.caches.kinds import KINDS


def stage_table(cache) -> list[dict]:
    """Each stage's metric, accuracy and mean cost on a cache: ``mean_gflops``, or ``mean_cost`` and ``cost_unit``
    for a cache that counts another unit (imported runs: parameters x tokens, dollars ...)."""
    metric = cache.meta.get("metric", "accuracy")
    unit = cost_unit(cache)

    def cost(e: int) -> dict:
        mean = float(cache.flops[:, e].mean())
        return {"mean_gflops": round(mean / 1e9, 6)} if unit == "FLOPs" else {"mean_cost": mean, "cost_unit": unit}

    return [{"stage": s, "metric": metric,
             "value": round(task_metric(cache.predictions[:, e], cache.labels, metric=metric, n_classes=cache.n_classes), 6),
             "accuracy": round(float(cache.correct[:, e].mean()), 6), **cost(e)} for e, s in enumerate(cache.stages)]


def generation_table(cache) -> list[dict]:
    """Each model's corpus quality, mean generated tokens and mean FLOPs on a generation cache."""
    summ = cache.summary()
    return [{"model": name, **{k: round(float(v), 6) for k, v in row.items()}} for name, row in summ.iterrows()]


def llm_token_table(cache) -> list[dict]:
    """Per exit family and layer of an LLM token cache: agreement with the full model's token and the ECE of its
    max-probability (the numbers ``toolkit info`` prints)."""
    from toolkit.analysis.llm.exits import layer_reliability

    rows = []
    for f in cache.family_names:
        rel = layer_reliability(cache, f)
        rows += [{"family": f, "layer": int(r.layer), "agreement": round(float(r.agreement), 6),
                  "ece": round(float(r.ece), 6)} for r in rel.itertuples()]
    return rows


def cache_entry(path: str | os.PathLike, *, root: str | os.PathLike = ".", test_only: str | None = None) -> dict:
    """A manifest entry for a cache made outside the zoo (the SmolLM2 caches of ``scripts/build_llm_caches.sh``):
    what its header records (command, data, versions, model) and the numbers :func:`check_manifest` recomputes.
    ``test_only``: why a test cache has no cal twin (said in the entry)."""
    from toolkit.caches.io import read_header

    path = Path(path)
    kind = read_header(path).get("kind", "classification")
    if kind == "llm_tokens":
        from toolkit.caches.tokens import load_llm_cache

        c = load_llm_cache(path, verify_data=False)
        entry = {"kind": "llm_tokens", "n_examples": c.n_examples, "n_tokens": c.n_tokens,
                 "families": {f: {k: v for k, v in info.items() if k != "layers"} for f, info in c.families.items()},
                 "model": c.model, "prompt_set": c.meta.get("prompt_set"), "decoding": c.meta.get("decoding"),
                 "quality": c.meta.get("quality"), "layer_metrics": llm_token_table(c)}
    elif kind == "classification":
        c = load_cache(path, verify_data=False)
        entry = {"n_examples": c.n_examples, "stages": c.stages, "models": c.meta.get("models", []),
                 "prompt_set": c.meta.get("prompt_set"), "stage_metrics": stage_table(c)}
    else:
        raise ValueError(f"{path}: cache_entry handles classification and LLM token caches, not {kind!r} (the zoo "
                         f"writes generation entries)")
    data = c.meta.get("data", {})
    entry.update({"file": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
                  "task": c.meta.get("task"), "split": c.meta.get("split"), "command": c.meta.get("command"),
                  "data_fingerprint": data.get("fingerprint"), "data_files": data.get("files"),
                  "split_seed": data.get("split_seed"), "versions": c.meta.get("versions"),
                  "cost_definition": c.meta.get("cost_definition")})
    entry["build"] = "external"  # not trained by the zoo (toolkit.zoo.lineage.BUILDS)
    if test_only:
        entry["test_only"] = test_only
    return entry


def update_manifest(out: Path, key: str, entry: dict) -> None:
    _edit_manifest(Path(out), lambda caches: caches.__setitem__(key, entry))


def stamp_manifest(out: str | os.PathLike = "data", keys=None) -> list[str]:
    """Record each entry's ``build`` and each derived entry's ``derived_from`` (:func:`toolkit.zoo.lineage.stamp`)
    in ``out/MANIFEST.json``, for ``keys`` (default all); idempotent. Returns the keys changed."""
    from toolkit.zoo.lineage import stamp

    out = Path(out)
    return _edit_manifest(out, lambda caches: stamp(caches, out, keys))


def _edit_manifest(out: Path, edit):
    """Apply ``edit`` to ``out/MANIFEST.json``'s ``caches`` (in place) under the manifest lock, write it back
    (sorted, atomically) and return what ``edit`` returned."""
    import fcntl

    path = out / "MANIFEST.json"
    # several zoo processes (one per task or per GPU) may finish at once: serialise the read-modify-write
    with open(out / ".MANIFEST.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = json.loads(path.read_text()) if path.exists() else {"caches": {}}
        result = edit(manifest["caches"])
        manifest["caches"] = dict(sorted(manifest["caches"].items()))
        write_atomic(path, json.dumps(manifest, indent=1, default=str))
    return result


def merge_manifest(src: str | os.PathLike, dst: str | os.PathLike, *,
                   ledger: str | os.PathLike | None = None) -> list[str]:
    """Copy every cache of ``src/MANIFEST.json`` into ``dst`` (atomically) and add its entry to
    ``dst/MANIFEST.json`` (replacing an entry of the same key); returns the keys. Each cache is checked against its
    entry first, so nothing that does not rescore to its manifest numbers is merged.

    ``ledger``: the zoo runner's ledger of the run that made ``src`` (default ``src/../logs/ledger.jsonl``, where it
    exists: the runner writes caches under ``OUT/data`` and its ledger under ``OUT/logs``). With one, each entry gets
    the CPU seconds the ledger knows it cost (``train_cpu_s`` per trained model, ``collect_cpu_s``;
    :func:`toolkit.zoo.ledger.with_cpu_seconds`); without one, entries are merged as they are.

    Lineage (:mod:`toolkit.zoo.lineage`): every merged entry gets its ``build`` (kept where recorded, else inferred
    from its key and command: entries of runners started before builds were recorded) and each derived entry its
    ``derived_from`` (the parent's file and content hash, the parent read from ``src`` when merged with it, else
    from ``dst``). Refused before anything is copied: a derived entry whose recorded parent hash does not match that
    parent, and a cache that replaces one which entries of ``dst`` record as their parent, with other content.
    """
    import shutil

    from toolkit.zoo.ledger import LEDGER, spent, with_cpu_seconds

    src, dst = Path(src), Path(dst)
    entries = json.loads((src / "MANIFEST.json").read_text())["caches"]
    for key in entries:  # a key is the cache's path under both folders: never one outside them
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*", key):
            raise ValueError(f"{src / 'MANIFEST.json'}: key {key!r} is not <task>/<name> (letters, digits, _ . -, "
                             f"neither starting with a dot): it would be read or written outside {src} and {dst}; "
                             f"nothing merged")
    problems, metas = _check_caches(src, entries)
    if problems:
        raise ValueError(f"{src}: caches do not match their manifest, nothing merged: {problems[:3]}")
    if ledger is not None and not Path(ledger).is_file():
        raise FileNotFoundError(f"{ledger}: no such ledger (the runner's OUT/logs/{LEDGER}); omit ledger= to merge "
                                f"without CPU seconds")
    ledger = Path(ledger) if ledger is not None else src.resolve().parent / "logs" / LEDGER
    table = spent(ledger) if ledger.is_file() else None
    _check_lineage(src, dst, entries)
    for key, entry in entries.items():
        if table is not None:
            models = metas[key].get("models", [])
            entry = with_cpu_seconds(key, entry, models, table)
        target = dst / f"{key}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(src / f"{key}.parquet", "rb") as cache:
            write_atomic(target, lambda f: shutil.copyfileobj(cache, f), error=CacheError)
        update_manifest(dst, key, {**entry, "file": str(Path(dst.name) / f"{key}.parquet")})
    stamp_manifest(dst, keys=list(entries))
    return list(entries)


def _build(key: str, entry: dict) -> str:
    """An entry's recorded build, else the one :func:`toolkit.zoo.lineage.stamp` will record."""
    from toolkit.zoo.lineage import infer_build

    return entry.get("build") or infer_build(key, entry)


def _check_lineage(src: Path, dst: Path, entries: dict) -> None:
    """Refuse a merge that would break a recorded parent (see :func:`merge_manifest`)."""
    from toolkit.zoo.lineage import content_hash, dependents, parent_key

    shipped_path = dst / "MANIFEST.json"
    shipped = json.loads(shipped_path.read_text())["caches"] if shipped_path.is_file() else {}
    problems = []
    for key, entry in entries.items():
        rec = entry.get("derived_from")
        pkey = (rec or {}).get("key") or parent_key(key)
        if pkey is not None and entry.get("kind", "classification") == "classification":
            parent = (src if pkey in entries else dst) / f"{pkey}.parquet"
            if not parent.is_file() or (pkey not in entries and pkey not in shipped):
                problems.append(f"{key} is derived from {pkey}, which is neither merged with it nor shipped in {dst}")
            elif rec is not None and content_hash(parent) != rec.get("content_sha256"):
                problems.append(f"{key}: its recorded parent {pkey} has other content than {parent}")
            elif (b := _build(key, entry)) != (pb := _build(pkey, (entries if pkey in entries else shipped)[pkey])):
                problems.append(f"{key} (build {b!r}) would derive from {pkey} of build {pb!r} in {parent.parent}: "
                                f"a derived set's parent is of its own build; merge it with its parent")
        target = dst / f"{key}.parquet"
        users = [k for k in dependents(shipped, key) if k not in entries]
        if users and target.is_file() and content_hash(src / f"{key}.parquet") != content_hash(target):
            problems.append(f"{key}: {', '.join(users)} in {dst} were derived from the shipped {target}; replacing "
                            f"it would orphan them (merge them rebuilt from the new {key} in the same run)")
    if problems:
        raise ValueError(f"{src}: lineage problems, nothing merged: {problems[:3]}")


# what check_manifest recomputes per cache kind (its loader comes from the kind's record, toolkit.caches.kinds)
_CHECKS = {"classification": (stage_table, "stage_metrics"), "generation": (generation_table, "model_metrics"),
           "llm_tokens": (llm_token_table, "layer_metrics")}


def check_manifest(out: str | os.PathLike = "data") -> list[str]:
    """Reload every cache in the manifest and recompute its stage metrics; returns mismatch messages (empty: all
    equal)."""
    out = Path(out)
    return _check_caches(out, json.loads((out / "MANIFEST.json").read_text())["caches"])[0]


def _check_caches(out: Path, entries: dict) -> tuple[list[str], dict[str, dict]]:
    """Reload each cache of ``entries`` (a manifest's ``caches``) from ``out`` and recompute its numbers; returns the
    mismatch messages and each cache's header ``meta`` (read once, with the cache, for :func:`merge_manifest`)."""
    problems, metas = [], {}
    for key, entry in entries.items():
        kind = entry.get("kind", "classification")
        table, field = _CHECKS[kind]
        cache = KINDS[kind].loader()(out / f"{key}.parquet")
        metas[key] = cache.meta
        got = table(cache)
        if got != entry[field]:
            problems.append(f"{key}: manifest {field} {entry[field]} != recomputed {got}")
        if cache.meta["data"]["fingerprint"] != entry["data_fingerprint"]:
            problems.append(f"{key}: data fingerprint differs from the manifest")
    return problems, metas


MAX_README_STAGES = 7


def readme_table(out: str | os.PathLike = "data") -> str:
    """Markdown table of the shipped caches (test split): each stage's metric and mean GFLOPs."""
    manifest = json.loads((Path(out) / "MANIFEST.json").read_text())
    rows = ["| cache | stage | test metric | accuracy | mean GFLOPs/example |", "|---|---|---|---|---|"]
    for key, e in manifest["caches"].items():
        if e["split"] != "test":
            continue
        if e.get("kind") == "llm_tokens":
            last = [r for r in e["layer_metrics"] if r["layer"] == max(x["layer"] for x in e["layer_metrics"])]
            agree = ", ".join(f"{r['family']} layer {r['layer']} agrees {r['agreement']:.3f}" for r in last)
            rows.append(f"| {key} | {e['n_tokens']} generated tokens, {e['n_examples']} prompts | {agree} | – | – |")
            continue
        if e.get("kind") == "generation":
            for st in e["model_metrics"]:
                q = ", ".join(f"{k} {v:.4f}" for k, v in st.items() if k not in ("model", "tokens", "gflops"))
                rows.append(f"| {key} | {st['model']} (generates {st['tokens']:.1f} tokens) | {q} | – | "
                            f"{st['gflops']:.3f} |")
            continue
        stages = e["stage_metrics"]
        if len(stages) > MAX_README_STAGES:  # an LLM's 30 exits: evenly spaced ones, the last always
            import numpy as np

            keep = np.unique(np.linspace(0, len(stages) - 1, MAX_README_STAGES).round().astype(int))
            stages = [{**stages[i], "stage": f"{stages[i]['stage']} ({len(stages)} stages, "
                       f"{MAX_README_STAGES} shown)" if i == keep[0] else stages[i]["stage"]} for i in keep]
        for st in stages:
            cost = f"{st['mean_gflops']:.3f}" if "mean_gflops" in st else f"{st['mean_cost']:.4g} {st['cost_unit']}"
            rows.append(f"| {key} | {st['stage']} | {st['metric']} {st['value']:.4f} | {st['accuracy']:.4f} | "
                        f"{cost} |")
    return "\n".join(rows)



def seed_table(out: str | os.PathLike = "data", split: str = "test") -> str:
    """Markdown table of the per-seed caches (keys ``<task>/<set>-s<seed>-<split>``): each model's last stage, its
    metric per training seed and the mean and standard deviation (ddof 1) over the seeds."""
    import re

    import numpy as np

    manifest = json.loads((Path(out) / "MANIFEST.json").read_text())
    cells: dict[tuple, dict[int, float]] = {}
    metric_of = {}
    for key, e in manifest["caches"].items():
        m = re.fullmatch(rf"(\w+)/(.+)-s(\d+)-{split}", key)
        if not m or e.get("kind") == "generation":
            continue
        task, s, seed = m.group(1), m.group(2), int(m.group(3))
        stages = e["stage_metrics"]
        last = {}  # the last stage of each model: "name:Lk" stages per model in a cascade, else the final exit
        for st in stages:
            last[st["stage"].split(":")[0] if ":" in st["stage"] else ""] = st
        for st in last.values():
            cells.setdefault((task, s, st["stage"]), {})[seed] = st["value"]
            metric_of[(task, s, st["stage"])] = st["metric"]
    seeds = sorted({sd for v in cells.values() for sd in v})
    rows = ["| task | set | stage | metric | " + " | ".join(f"seed {sd}" for sd in seeds) + " | mean ± sd |",
            "|---|---|---|---|" + "---|" * len(seeds) + "---|"]
    for (task, s, stage), v in sorted(cells.items()):
        x = np.array(list(v.values()))
        spread = f"{x.mean():.4f} ± {x.std(ddof=1):.4f}" if len(x) > 1 else f"{x.mean():.4f} (one seed)"
        rows.append(f"| {task} | {s} | {stage} | {metric_of[(task, s, stage)]} | "
                    + " | ".join(f"{v[sd]:.4f}" if sd in v else "–" for sd in seeds) + f" | {spread} |")
    return "\n".join(rows)
