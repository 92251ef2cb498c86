"""Rebuild the shipped caches: train the zoo (toolkit.zoo.recipes) and collect cal/test caches, with a manifest.

``toolkit zoo`` (or :func:`build`) trains each member that a cache needs (resuming where a run stopped), collects
``<out>/<task>/<set>-s<seed>-<split>.parquet`` for the sets

- ``minilm6_me``: multi-exit all-MiniLM-L6-v2 (6 exits),
- ``mpnet_me``: multi-exit all-mpnet-base-v2 (12 exits),
- ``cascade``: MiniLM-L2 -> MiniLM-L6 -> MPNet-base, complete models (also the Swift/Super pair MiniLM-L6/MPNet),
- ``cascade_da``: the same cascade with CascadeBERT's difficulty-aware small members,

(plus the objective-comparison, slenderized, probe and text-to-text sets) and records in ``<out>/MANIFEST.json`` per
cache: the command, seeds, data fingerprint, package versions, train sizes, wall times, the per-epoch validation
curve and the epoch kept, and each stage's metric and mean FLOPs. The units of work (train one member, one
difficulty fold, collect one set) are the jobs of :mod:`toolkit.zoo.jobs`, which also runs them concurrently on a
GPU. ``tiny=True`` runs the same path in minutes (CI): a few training steps, a few examples, written wherever
``out`` points.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from toolkit._api import check_batch
from toolkit.caches.classification import load_cache
from toolkit.caches.io import write_atomic, write_folder_atomic
from toolkit.zoo.ledger import cache_key, job_id
from toolkit.zoo.lineage import DERIVED, FIRST_BUILD
from toolkit.zoo.manifest import generation_table, stage_table, stamp_manifest, update_manifest
from toolkit.zoo.recipes import (
    CASCADE,
    CASCADE_DA,
    CPU_BORROWED,
    CPU_KEEPS_V2,
    DIFFICULTY,
    DIFFICULTY_FOLDS,
    OBJECTIVE_MEMBERS,
    PROBES,
    RTE_VARIANTS,
    SLENDER,
    ZOO_TASKS,
    difficulty_recipe,
    recipe,
    run_dir,
    seq2seq_recipe,
)

SETS = {"minilm6_me": ("minilm6_me",), "mpnet_me": ("mpnet_me",), "cascade": CASCADE, "cascade_da": CASCADE_DA,
        **{m: (m,) for m in (*OBJECTIVE_MEMBERS, *SLENDER, *PROBES, *RTE_VARIANTS)}}
GENERATION_SETS = {"t2t": ("t2t_swift", "t2t_super")}  # Swift/Super encoder-decoders, generation caches
NAMES = {"minilm6_me": "minilm6_me", "mpnet_me": "mpnet_me", "minilm2": "minilm-l2", "minilm6": "minilm-l6",
         "mpnet": "mpnet", "minilm2_da": "minilm-l2-da", "minilm6_da": "minilm-l6-da",
         **{m: m for m in (*OBJECTIVE_MEMBERS, *SLENDER, *PROBES, *RTE_VARIANTS)}, "t2t_swift": "swift",
         "t2t_super": "super"}


@dataclass(frozen=True)
class Where:
    """Where a zoo build reads and writes, and the settings that do not change what is trained."""
    out: Path  # caches and MANIFEST.json
    runs: Path  # run folders (checkpoints, final weights; never committed)
    data_dir: str | None = None
    tiny: bool = False
    token_cache: str | None = None  # shared tokenised splits (default <runs>/tokens)
    save_steps: int | None = None  # checkpoint interval override (a GPU run needs none: set it past the run's end)
    collect_batch_size: int = 64
    command: str = "toolkit.zoo.build"
    logs: Path | None = None  # per-job logs and train_meta copies (toolkit.zoo.jobs)
    profile: str = "v2"  # the recipes' profile: "v2" (GPU) or "cpu" (toolkit.zoo.recipes.SCHEDULE_CPU)
    shipped: Path | None = None  # the shipped caches (data/): where the cpu profile's borrowed members come from

    def __post_init__(self):  # refused now, not after the training it would follow
        object.__setattr__(self, "collect_batch_size", check_batch(self.collect_batch_size, name="collect_batch_size"))

    def borrowed(self, member: str) -> tuple[str, str] | None:
        """(shipped set, stage) that ``member`` is read from instead of trained, or None (it is trained)."""
        return CPU_BORROWED.get(member) if self.profile == "cpu" else None

    def overrides(self) -> dict:
        """TrainConfig fields this build sets on every recipe (none of them changes what is trained)."""
        kw = {"data_dir": self.data_dir, "token_cache": self.token_cache or str(self.runs / "tokens")}
        if self.save_steps:
            kw["save_steps"] = self.save_steps
        return kw


# -------------------------------------------------------------------------------------------- members
@dataclass
class ProbeConfig:
    """What a probe member depends on (checked like a training run's config by ``finished_run``)."""
    task: str
    model: str
    output_dir: str
    objective: str = "probe"
    seed: int = 0
    C: float = 1.0
    train_limit: int | None = 5000
    data_dir: str | None = None


def train_member(task: str, member: str, seed: int, where: Where, log=print) -> Path:
    """Train (or reuse) one member; returns its final folder. Ranking members first get their difficulty labels
    (reusing finished fold runs), slenderized ones their pruned start, probes their classifier."""
    from toolkit.nn.encoder.train import finished_run, train

    over = where.overrides()
    if member in PROBES:
        from toolkit.nn.encoder.probe import fit_probe_exits

        spec = PROBES[member]
        clf = train_member(task, spec["classifier"], seed, where, log)
        pcfg = ProbeConfig(task=task, model=str(clf), output_dir=str(run_dir(where.runs, task, member, seed)),
                           seed=seed, C=spec["C"], train_limit=64 if where.tiny else spec["train_limit"],
                           data_dir=where.data_dir)
        final = Path(pcfg.output_dir) / "final"
        if not finished_run(pcfg, Path(pcfg.output_dir)):
            fit_probe_exits(clf, task, final, train_limit=pcfg.train_limit, C=pcfg.C, seed=pcfg.seed,
                            data_dir=where.data_dir)
            meta = json.loads((final / "train_meta.json").read_text())
            write_atomic(final / "train_meta.json", json.dumps({**meta, "config": asdict(pcfg)}, indent=1))
        return final
    if member in SLENDER:
        teacher = train_member(task, SLENDER[member]["teacher"], seed, where, log)
        prepare_slender(teacher, run_dir(where.runs, task, member, seed) / "pruned", task, SLENDER[member]["width"],
                        where.data_dir)
    cfg = recipe(task, member, root=where.runs, tiny=where.tiny, seed=seed, profile=where.profile, **over)
    if member in DIFFICULTY and not (Path(cfg.output_dir) / "final" / "config.json").exists():
        from toolkit.nn.encoder.difficulty import difficulty_labels

        log(f"[zoo] difficulty labels {task}/{member}-s{seed}")
        difficulty_labels(difficulty_recipe(task, member, root=where.runs, tiny=where.tiny, seed=seed,
                                            profile=where.profile, **over),
                          k=DIFFICULTY_FOLDS, out_path=cfg.difficulty_file)
    t0 = time.time()
    log(f"[zoo] train {task}/{member}-s{seed} -> {cfg.output_dir}")
    final = train(cfg)
    log(f"[zoo]   done in {time.time() - t0:.0f} s")
    return final


def fold_recipe(task: str, member: str, seed: int, fold: int, where: Where):
    """The TrainConfig of one out-of-fold model of ranking member ``member``'s difficulty labels; its
    ``output_dir`` is that fold's run folder (the one definition: :func:`train_fold` trains there,
    :mod:`toolkit.zoo.jobs` looks there for a finished or resumable run)."""
    from toolkit.nn.encoder.difficulty import fold_config

    return fold_config(difficulty_recipe(task, member, root=where.runs, tiny=where.tiny, seed=seed,
                                         profile=where.profile, **where.overrides()), DIFFICULTY_FOLDS, fold)


def train_fold(task: str, member: str, seed: int, fold: int, where: Where, log=print) -> Path:
    """Train one out-of-fold model of ranking member ``member``'s difficulty labels."""
    from toolkit.nn.encoder.train import train

    cfg = fold_recipe(task, member, seed, fold, where)
    log(f"[zoo] train difficulty fold {fold} of {task}/{member}-s{seed} -> {cfg.output_dir}")
    return train(cfg)


# -------------------------------------------------------------------------------------------- caches
# manifest key -> TrainConfig field, per model
_TRAIN_FIELDS = {"train_seed": "seed", "objective": "objective", "source_model": "model",
                 "num_hidden_layers": "num_hidden_layers", "epochs": "epochs", "max_steps": "max_steps",
                 "learning_rate": "learning_rate", "head_learning_rate": "head_learning_rate",
                 "batch_size": "batch_size", "max_length": "max_length", "select_on": "select_on",
                 "patience": "patience"}


def _selection(t: dict) -> dict:
    """The per-epoch validation curve and the epoch kept, of a run with model selection (empty without)."""
    logs = t.get("logs", {})
    if not logs.get("curve"):
        return {}
    curve = [{"epoch": r["epoch"], "cal": round(r["selection"], 6),
              "train_loss": None if r.get("train_loss") is None else round(r["train_loss"], 4)} for r in logs["curve"]]
    return {"best_epoch": (logs.get("best") or {}).get("epoch"), "curve": curve}


def _manifest_entry(path: Path, cache, train_metas: list[dict], wall: float, command: str, seed=None,
                    build: str = "v2") -> dict:
    m = cache.meta
    return {"file": str(Path(path.parents[1].name) / path.parent.name / path.name), "task": m["task"],
            "split": m["split"], "train_seed": seed, "build": build, "n_examples": cache.n_examples,
            "stages": cache.stages, "command": command, "collect_command": m.get("command"),
            "data_fingerprint": m["data"]["fingerprint"], "data_files": m["data"]["files"],
            "split_seed": m["data"]["split_seed"], "versions": m.get("versions"),
            "models": [t["record"] if "record" in t else
                       {"name": mm["name"],
                        **{key: t.get("config", {}).get(field) for key, field in _TRAIN_FIELDS.items()},
                        "train_size": t.get("train_size"), "train_wall_s": round(t.get("wall_time_s", 0.0), 1),
                        "device": t.get("device"), **_selection(t), "parameters": mm.get("parameters")}
                       for mm, t in zip(m["models"], train_metas)],
            "collect_wall_s": round(wall, 1), "cost_definition": m.get("cost_definition"),
            "stage_metrics": stage_table(cache)}


def build_of(task: str, s: str, profile: str) -> str:
    """The build (:data:`toolkit.zoo.lineage.BUILDS`) of set ``s``'s caches trained with recipe ``profile``: the
    profile's, except where the ``cpu`` profile trains every member of the set with the v2 recipe
    (:data:`toolkit.zoo.recipes.CPU_KEEPS_V2`: the same runs as the v2 profile's, so of that build)."""
    trained = [m for m in SETS[s] if not (profile == "cpu" and m in CPU_BORROWED)]
    return "v2" if profile == "cpu" and trained and all((task, m) in CPU_KEEPS_V2 for m in trained) else profile


def collect_set(task: str, s: str, seed: int, where: Where, splits=("cal", "test"), log=print) -> list[Path]:
    """Collect ``splits`` of set ``s`` (every member already trained) into ``<out>/<task>/<s>-s<seed>-<split>``,
    each entry stamped with its ``build`` (:func:`build_of`: ``where.profile``'s) and, for a derived set
    (:data:`toolkit.zoo.lineage.DERIVED`), ``derived_from``: its parent set's cache of the same seed, collected
    first where missing."""
    from toolkit.caches.classification import save_cache
    from toolkit.nn.encoder.collect import collect

    if s in DERIVED:  # the parent's cache must exist to record its content hash
        collect_set(task, DERIVED[s][0], seed, where, splits=splits, log=log)
    trained = [m for m in SETS[s] if not where.borrowed(m)]
    borrowed = [m for m in SETS[s] if where.borrowed(m)]
    if borrowed and SETS[s][-len(borrowed):] != tuple(borrowed):
        raise ValueError(f"set {s}: only the last members can be borrowed, got {borrowed} of {SETS[s]}")
    finals = [run_dir(where.runs, task, m, seed) / "final" for m in trained]
    missing = [str(f) for f in finals if not (f / "config.json").exists()]
    if missing:
        raise FileNotFoundError(f"set {task}/{s}-s{seed}: members not trained yet: {missing}")
    metas = [json.loads((f / "train_meta.json").read_text()) for f in finals]
    written = []
    for split in splits:
        key = cache_key(task, s, seed, split)
        path = where.out / f"{key}.parquet"
        if _cache_is_current(path, finals, len(borrowed)):
            log(f"[zoo] exists: {path}")
            written.append(path)
            continue
        t0 = time.time()
        log(f"[zoo] collect {path}")
        own = path.with_name(f"{path.stem}.trained.parquet") if borrowed else path
        cache = collect([str(f) for f in finals], task, split, own, data_dir=where.data_dir,
                        names=[NAMES[m] for m in trained], limit=16 if where.tiny else None, progress=False,
                        batch_size=where.collect_batch_size, command=where.command)
        split_metas = list(metas)
        for m in borrowed:
            src, record = _borrowed_source(task, m, split, where)
            cache = join_borrowed(cache, src, where.borrowed(m)[1], NAMES[m], record["borrowed_from"])
            split_metas.append({"record": record})
        if borrowed:
            save_cache(cache, path)
            own.unlink()
        update_manifest(where.out, key, _manifest_entry(path, cache, split_metas, time.time() - t0, where.command,
                                                        seed, build=build_of(task, s, where.profile)))
        stamp_manifest(where.out, keys=[key])  # derived_from, for a derived set
        written.append(path)
    return written


def _borrowed_problem(task: str, member: str, split: str, where: Where) -> str | None:
    """Why borrowed ``member``'s shipped cache for ``split`` cannot be read (None: it can): the folder, its
    MANIFEST.json, the entry and the file must all be there."""
    if where.shipped is None:
        return (f"member {member!r} is borrowed from the shipped caches in the {where.profile!r} profile: give "
                f"Where(shipped=...) (the runner's --shipped, default data)")
    src_set, _ = where.borrowed(member)
    key = f"{task}/{src_set}-{split}"
    manifest = where.shipped / "MANIFEST.json"
    if not manifest.is_file():
        return (f"{manifest}: missing; {member!r} is borrowed from the shipped cache {key} listed there (pass "
                f"--shipped the folder of the shipped caches, e.g. data)")
    if key not in json.loads(manifest.read_text())["caches"] or not (where.shipped / f"{key}.parquet").is_file():
        return (f"{where.shipped / key}.parquet: the shipped cache that {member!r} is borrowed from (with its entry "
                f"in {manifest}) is missing; ship {task}/{src_set} first or use --profile v2, which trains it")
    return None


def borrowed_problems(jobs, where: Where) -> list[str]:
    """For the collect jobs of ``jobs``: every borrowed member whose shipped cache cannot be read (checked before
    any training, so a run does not train a cascade's members for hours and then fail to collect it)."""
    found = (_borrowed_problem(j.task, m, split, where) for j in jobs if j.kind == "collect"
             for m in SETS[j.name] if where.borrowed(m) for split in ("cal", "test"))
    return list(dict.fromkeys(p for p in found if p))


def _borrowed_source(task: str, member: str, split: str, where: Where):
    """The shipped cache that borrowed ``member`` is read from, and the manifest record of its model there."""
    problem = _borrowed_problem(task, member, split, where)
    if problem:
        raise (ValueError if where.shipped is None else FileNotFoundError)(problem)
    src_set, stage = where.borrowed(member)
    key = f"{task}/{src_set}-{split}"
    path = where.shipped / f"{key}.parquet"
    manifest = json.loads((where.shipped / "MANIFEST.json").read_text())["caches"]
    source = load_cache(path, data_dir=where.data_dir)
    if stage not in source.stages:
        raise ValueError(f"{path} has no stage {stage!r} (stages {source.stages})")
    model = manifest[key]["models"][source.stage_info[source.stages.index(stage)]["model_index"]]
    return source, {**model, "name": NAMES[member], "borrowed_from": key, "stage": stage}


def join_borrowed(cache, source, stage: str, name: str, source_key: str):
    """``cache`` (a cascade's trained members) followed by stage ``stage`` of the multi-exit ``source`` as one more
    complete model, ``name``: its logits, and its FLOPs as a single-exit model on top of the cascade's last stage
    (``source``'s cumulative FLOPs at ``stage`` less the heads of its earlier exits, as
    :func:`toolkit.analysis.cost.encoder.exit_flops` counts them). ``source`` must hold every example of ``cache`` (same
    data, labels); its rows are taken in ``cache``'s order."""
    from toolkit.analysis.cost.encoder import head_flops
    from toolkit.caches.classification import Cache

    for what, a, b in (("task", cache.task, source.task), ("split", cache.split, source.split),
                       ("data fingerprint", cache.meta["data"]["fingerprint"], source.meta["data"]["fingerprint"]),
                       ("classes", cache.n_classes, source.n_classes)):
        if a != b:
            raise ValueError(f"cannot append {source_key}:{stage} to this cascade: its {what} is {b!r}, not {a!r}")
    order = np.argsort(source.example_ids, kind="stable")
    pos = order[np.searchsorted(source.example_ids, cache.example_ids, sorter=order).clip(0, len(order) - 1)]
    if not np.array_equal(source.example_ids[pos], cache.example_ids):
        raise ValueError(f"cannot append {source_key}:{stage}: it lacks examples of the cascade's split")
    source = source.subset(pos)  # the cascade's rows (all of them, or the first of a tiny run), in its order
    if not np.array_equal(cache.labels, source.labels):
        raise ValueError(f"cannot append {source_key}:{stage}: its labels differ from the cascade's")
    e = source.stages.index(stage)
    info = source.stage_info[e]
    earlier = [i for i in source.stage_info[:e] if i["model_index"] == info["model_index"]]
    if source.meta.get("n_tokens_model") != info["model_name"] or len(source.meta.get("models", [])) != 1:
        raise ValueError(f"{source_key}: borrowing needs a one-model cache whose n_tokens are that model's")
    own = source.flops[:, e] - len(earlier) * head_flops(source.n_tokens, info["hidden_size"], source.n_classes)
    stage_info = [*cache.stage_info, {**info, "name": f"{name}:L{info['layer']}", "model_name": name,
                                      "model_index": len(cache.meta["models"]), "kind": "exit"}]
    model = {**source.meta["models"][info["model_index"]], "name": name, "borrowed_from": source_key,
             "stage": stage}
    return Cache(logits=np.concatenate([cache.logits, source.logits[:, e:e + 1]], axis=1).astype(np.float32),
                 labels=cache.labels, flops=np.concatenate([cache.flops, (cache.flops[:, -1] + own)[:, None]], axis=1),
                 example_ids=cache.example_ids, n_tokens=cache.n_tokens, stage_info=stage_info,
                 meta={**cache.meta, "models": [*cache.meta["models"], model]})


def _generation_entry(path: Path, cache, train_metas: list[dict], wall: float, command: str) -> dict:
    m = cache.meta
    return {"file": str(path), "kind": "generation", "task": m["task"], "split": m["split"],
            "build": FIRST_BUILD,  # the seq2seq recipes have the first build's schedules only
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
    from toolkit.caches.generation import load_generation_cache
    from toolkit.nn.seq2seq.generate import collect_generation
    from toolkit.nn.seq2seq.train import train_seq2seq

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


# ----------------------------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    kind: str  # "train", "fold" or "collect"
    task: str
    name: str  # the member (train, fold) or the set (collect)
    seed: int
    fold: int | None = None
    needs: tuple[str, ...] = ()  # ids of the jobs that must finish first

    @property
    def id(self) -> str:
        return job_id(self.task, self.name, self.seed, self.kind, self.fold)


def _member_jobs(task: str, member: str, seed: int, jobs: dict) -> str:
    """Add the jobs that train ``member`` (and what it needs) to ``jobs``; returns the id of its train job."""
    needs = []
    if member in DIFFICULTY:
        for f in range(DIFFICULTY_FOLDS):
            fj = Job("fold", task, member, seed, fold=f)
            jobs.setdefault(fj.id, fj)
            needs.append(fj.id)
    if member in SLENDER:
        needs.append(_member_jobs(task, SLENDER[member]["teacher"], seed, jobs))
    if member in PROBES:
        needs.append(_member_jobs(task, PROBES[member]["classifier"], seed, jobs))
    job = Job("train", task, member, seed, needs=tuple(needs))
    jobs.setdefault(job.id, job)
    return job.id


def plan(tasks, sets, seeds, profile: str = "v2") -> list[Job]:
    """Every job that the caches of ``sets`` x ``tasks`` x ``seeds`` need, each once, dependencies first (the
    ``cpu`` profile trains no borrowed member, :data:`toolkit.zoo.recipes.CPU_BORROWED`)."""
    jobs: dict[str, Job] = {}
    for task in tasks:
        for s in sets:
            if s not in SETS:
                raise ValueError(f"unknown set {s!r}; choose from {sorted(SETS)}")
            for seed in seeds:
                _collect_job(task, s, seed, jobs, profile)
    return list(jobs.values())


def _collect_job(task: str, s: str, seed: int, jobs: dict, profile: str) -> str:
    """Add the collect job of set ``s`` (and what it needs: its members' training and, for a derived set, its
    parent's caches, whose content hash its manifest entry records) to ``jobs``; returns its id."""
    needs = [_member_jobs(task, m, seed, jobs) for m in SETS[s] if not (profile == "cpu" and m in CPU_BORROWED)]
    if s in DERIVED:
        needs.append(_collect_job(task, DERIVED[s][0], seed, jobs, profile))
    c = Job("collect", task, s, seed, needs=tuple(needs))
    jobs.setdefault(c.id, c)
    return c.id


def run_job(job: Job, where: Where, splits=("cal", "test"), log=print):
    """Run one job in this process; returns the cache paths of a collect job (None otherwise)."""
    if job.kind == "collect":
        return collect_set(job.task, job.name, job.seed, where, splits=splits, log=log)
    if job.kind == "fold":
        train_fold(job.task, job.name, job.seed, job.fold, where, log=log)
        return None
    final = train_member(job.task, job.name, job.seed, where, log=log)
    if where.logs is not None:  # the run's config, curve and wall time travel with the logs
        dest = where.logs / "meta" / job.task / f"{job.name}-s{job.seed}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text((final / "train_meta.json").read_text())
    return None


def build(tasks=ZOO_TASKS, sets=("minilm6_me", "cascade", "mpnet_me"), out: str | os.PathLike = "data",
          runs: str | os.PathLike = "runs", splits=("cal", "test"), tiny: bool = False, data_dir=None, seeds=(42,),
          log=print) -> list[Path]:
    """Train what is missing and collect every (task, set, seed, split) cache, one job after another in this
    process; returns the cache paths. A failing job raises (use :mod:`toolkit.zoo.jobs` to skip and go on)."""
    command = "toolkit " + " ".join(sys.argv[1:]) if sys.argv and "toolkit" in sys.argv[0] else "toolkit.zoo.build"
    where = Where(Path(out), Path(runs), data_dir=str(data_dir) if data_dir else None, tiny=tiny, command=command)
    written = []
    for s in sets:
        if s not in SETS and s not in GENERATION_SETS:
            raise ValueError(f"unknown set {s!r}; choose from {sorted(SETS) + sorted(GENERATION_SETS)}")
    for task in tasks:
        for s in sets:
            if s in GENERATION_SETS:
                written += build_generation(task, s, where.out, where.runs, splits, tiny, data_dir, command, log)
                continue
            for seed in seeds:
                for job in plan([task], [s], [seed]):
                    paths = run_job(job, where, splits=splits, log=log) or []
                    written += paths if job.name == s else []  # not a derived set's parent's caches
    return written


def _cache_is_current(path: Path, finals: list[Path], n_borrowed: int = 0) -> bool:
    """A cache is reused only if it came from these model folders (then ``n_borrowed`` borrowed members) and none
    was retrained after it was written."""
    if not path.exists():
        return False
    models = load_cache(path).meta.get("models") or []
    if [m["path"] for m in models[:len(finals)]] != [str(f) for f in finals] or len(models) != len(finals) + n_borrowed:
        return False
    written = path.stat().st_mtime
    return all((f / "train_meta.json").stat().st_mtime <= written for f in finals)


def prepare_slender(teacher_dir: Path, out: Path, task: str, width: float, data_dir=None, n_batches: int = 20) -> Path:
    """Prune a trained multi-exit model to ``width`` (per-exit Taylor importance on train batches); once."""
    if (out / "config.json").exists():
        return out
    from transformers import AutoTokenizer

    from toolkit.nn.encoder.models import load_model
    from toolkit.nn.encoder.prune import slenderize, train_batches

    model = load_model(teacher_dir)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    slenderize(model, train_batches(tok, task, n_batches, 32, data_dir=data_dir), width)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return write_folder_atomic(out, fill, what="pruned model folder")
