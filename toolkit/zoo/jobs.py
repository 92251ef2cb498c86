"""Multi-seed zoo jobs: plan the (task, member, seed) work in priority order and run it against a wall-clock deadline,
concurrently on one GPU or one job after another on a CPU.

A :class:`Job` is one unit: ``train`` a member (ranking members first make their difficulty labels from finished
fold runs), train one difficulty ``fold``, or ``collect`` a set's cal and test caches once its members are trained.
:func:`run_jobs` starts each ready job (dependencies finished, the deadline still leaves room for its estimated
time) on a free worker: a separate process with its own CUDA context, so a job that fails, or a worker that dies,
costs that job only; its dependents are skipped and every other job goes on. Collect jobs go first as soon as their
set is trained, so caches and manifest entries appear as the run goes. Near the deadline no training starts, and
training still running when only the collection reserve is left is stopped (it resumes on a later run, CPU or GPU,
from its last checkpoint). Everything is resumable: a finished run folder or cache is reused, never retrained.

    python scripts/gpu_zoo.py OUT --deadline 520 --workers 12      # see scripts/gpu_zoo.py
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit.analysis.cost.encoder import layer_flops
from toolkit.caches.io import write_atomic
from toolkit.zoo.build import SETS, Job, Where, fold_recipe, plan, run_job
from toolkit.zoo.ledger import LEDGER, append_attempt, cache_key, progress_line
from toolkit.zoo.recipes import (
    CPU_BORROWED,
    DIFFICULTY,
    DIFFICULTY_FOLDS,
    PROBES,
    RTE_VARIANTS,
    ZOO_TASKS,
    recipe,
    run_dir,
)

DONE = ("done", "already done")  # the states a dependent job may start after

V2_SETS = ("minilm6_me", "cascade", "mpnet_me", "cascade_da")
# (tasks, sets, seeds), most important first: the minimum that a CPU cannot do (three seeds of every set on
# SST-2, 65k sentences, and MRPC), then the undertrained MPNet-base (CoLA, AG News) with the other seed-42 sets, the
# RTE recipe variants (cheap), and the other tasks' extra seeds
PRIORITY = (
    (("sst2", "mrpc"), V2_SETS, (42,)),
    (("sst2", "mrpc"), V2_SETS, (43, 44)),
    (("cola", "agnews", "rte"), ("mpnet_me", "cascade", "minilm6_me"), (42,)),
    (("rte",), tuple(RTE_VARIANTS), (42,)),
    (("cola", "agnews", "rte"), ("mpnet_me", "cascade", "minilm6_me"), (43, 44)),
)
# the CPU profile: no MPNet is trained (the cascades borrow the shipped one), and a set's jobs run
# together, set after set, so that sets finish (and their caches can be committed) within one session: run folders
# do not outlive the machine
CPU_PRIORITY = (
    (("mrpc",), ("cascade", "cascade_da"), (42, 43, 44)),
    (("sst2",), ("cascade", "cascade_da"), (42, 43, 44)),
    (("sst2",), ("minilm6_me",), (42, 43, 44)),
    (("cola", "rte"), ("minilm6_me", "cascade"), (42, 43, 44)),
    (("agnews",), ("minilm6_me", "cascade"), (42, 43, 44)),
)


def prioritized(tiers=None, *, tasks=None, sets=None, seeds=None, device: str = "cuda", tiny: bool = False,
                profile: str = "v2") -> list[Job]:
    """The jobs of ``tiers`` (default :data:`PRIORITY`, or :data:`CPU_PRIORITY` for ``profile="cpu"``) in priority
    order: the longest first within a tier (v2), or set by set (cpu: the cheap sets in the early tiers). Restricted to
    ``tasks``, ``sets`` and ``seeds`` where given; then every requested combination outside the tiers comes last."""
    from toolkit.zoo.recipes import SEEDS

    tiers = tiers or (CPU_PRIORITY if profile == "cpu" else PRIORITY)
    if tasks is not None or sets is not None or seeds is not None:
        tiers = (*tiers, (tuple(tasks or ZOO_TASKS), tuple(sets or V2_SETS), tuple(seeds or SEEDS)))
    out: dict[str, Job] = {}
    for t_tasks, t_sets, t_seeds in tiers:
        t_tasks = [t for t in t_tasks if tasks is None or t in tasks]
        t_sets = [s for s in t_sets if sets is None or s in sets]
        t_seeds = [s for s in t_seeds if seeds is None or s in seeds]
        if profile == "cpu":  # one set's jobs after another: by seed, then task, then set as listed
            tier = [j for sd in t_seeds for t in t_tasks for s in t_sets for j in plan([t], [s], [sd], profile)]
        else:
            tier = sorted(plan(t_tasks, t_sets, t_seeds), key=lambda j: -estimate(j, device, tiny=tiny))
        for j in tier:
            out.setdefault(j.id, j)
    return list(out.values())


def without_finished(jobs: list[Job], out: Path, splits=("cal", "test"), also=()) -> list[Job]:
    """Drop the collect jobs whose caches are already in ``out`` or in one of the folders ``also`` (the shipped
    data/: made here or merged from another machine, whose run folders are not here) and the training no remaining
    collect job needs. A collect job that a remaining one needs is kept (a derived set's parent's, whose cache in
    ``out`` its entry records: :func:`toolkit.zoo.build.collect_set`)."""
    held = {Path(f): _manifest_keys(Path(f)) for f in (out, *also)}  # each manifest read once, not per job
    done = {j.id for j in jobs if j.kind == "collect" and all(
        any(_has_cache(f, cache_key(j.task, j.name, j.seed, sp), keys) for f, keys in held.items()) for sp in splits)}
    by_id = {j.id: j for j in jobs}
    needed, stack = set(), [j.id for j in jobs if j.kind == "collect" and j.id not in done]
    while stack:
        i = stack.pop()
        if i not in needed:
            needed.add(i)
            stack.extend(by_id[i].needs)
    return [j for j in jobs if j.id in needed]


def _manifest_keys(folder: Path) -> set[str]:
    """The cache keys of ``folder``'s MANIFEST.json (none where it has none)."""
    m = folder / "MANIFEST.json"
    return set(json.loads(m.read_text())["caches"]) if m.exists() else set()


def _has_cache(folder: Path, key: str, keys: set[str] | None = None) -> bool:
    """Cache ``key`` is in ``folder``: its file, and its entry in the folder's MANIFEST.json (``keys``: that
    manifest's keys, where already read)."""
    return key in (_manifest_keys(folder) if keys is None else keys) and (folder / f"{key}.parquet").exists()


def _run_folder(job: Job, where: Where) -> Path:
    """Where a train or fold job trains (its ``final`` is the finished run, its ``*/checkpoint-*`` the resumable one)."""
    if job.kind == "fold":
        return Path(fold_recipe(job.task, job.name, job.seed, job.fold, where).output_dir)
    return run_dir(where.runs, job.task, job.name, job.seed)


def found_complete(job: Job, where: Where, splits=("cal", "test")) -> bool:
    """``job``'s outputs are already there, so running it does no work: a finished run folder (train, fold), or
    every split's cache with its manifest entry in ``where.out`` (collect)."""
    if job.kind == "collect":
        keys = _manifest_keys(where.out)
        return all(_has_cache(where.out, cache_key(job.task, job.name, job.seed, sp), keys) for sp in splits)
    return (_run_folder(job, where) / "final" / "config.json").exists()


def _resumes(job: Job, where: Where) -> bool | None:
    """A train or fold job's run folder holds checkpoints, so the attempt continues from the last (collect: None)."""
    return None if job.kind == "collect" else any(_run_folder(job, where).glob("*/checkpoint-*"))


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) that process ``pid`` has used so far, from /proc (None elsewhere):
    what a worker spent on a job that is stopped before it can report."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------------------ estimates
# Train-carve size, the mean padded length of a random batch of 32 (all-MiniLM-L6-v2 tokenizer, max_length 128),
# and the cal and test sizes, measured on ../shared/data (split seed 0)
TASK_SIZES = {"sst2": (65349, 39.8, 2000, 872), "mrpc": (3301, 79.5, 367, 408), "rte": (2241, 127.8, 249, 277),
              "cola": (7696, 23.2, 855, 1043), "agnews": (4600, 103.5, 1000, 2000)}
MODEL_DIMS = {"all-MiniLM-L6-v2": (384, 1536), "all-mpnet-base-v2": (768, 3072)}  # hidden, FFN width
# Per optimizer step on a GPU: the larger of a host floor (one Trainer step's Python, kernel launches and data
# collation, which no GPU hides) and the GPU's own time. The GPU time is what concurrent jobs share (one GPU, no MPS:
# contexts time-slice), so the sum of it over the jobs bounds the run: KERNELS_PER_LAYER small kernels per layer and
# step (counted with torch.profiler on one bf16-autocast training step of MiniLM-L6 and MPNet-base, optimizer
# excluded: about 170 per layer either way) at GPU_KERNEL_S each, plus 3x the forward FLOPs at GPU_THROUGHPUT.
GPU_THROUGHPUT = 200e12  # FLOP/s of these small bf16 matmuls on an H200 (about 20% of its dense peak)
GPU_KERNEL_S = 2.5e-6  # one small kernel, back to back
KERNELS_PER_LAYER, KERNELS_PER_STEP = 170, 50  # the second: fused AdamW, gradient clipping, loss
GPU_STEP_FLOOR_S = {"all-MiniLM-L6-v2": 0.010, "all-mpnet-base-v2": 0.020}  # + 0.0015 s per layer
# CPU: FLOP/s of a training step. v2 profile: the v1 zoo's measured wall times on its machine (MRPC, 2 threads, bf16
# autocast with bf16 units: MiniLM-L6 complete 4 epochs in 743 s = 94 GFLOP/s, MPNet-base 3 epochs in 2,733 s = 150
# GFLOP/s). cpu profile: CPU seconds of one fp32 thread on this machine's cores (AVX2, no bf16 units): a multi-exit
# MiniLM-L6 step at batch 32 x 80 tokens (168.7 GFLOP) took 2.95 CPU s in fp32 and 37.6 CPU s under bf16 autocast
CPU_FLOPS = 120e9
CPU_FLOPS_FP32_THREAD = 57e9
JOB_OVERHEAD_S = {"cuda": 8.0, "cpu": 20.0}  # load weights, tokenise, save, per job


def _train_flops_per_step(cfg, tokens: float) -> float:
    h, i = MODEL_DIMS.get(cfg.model, (768, 3072))
    layers = cfg.num_hidden_layers or (6 if "MiniLM" in cfg.model else 12)
    return 3 * cfg.batch_size * layers * layer_flops(tokens, h, i)


def _run_seconds(cfg, n_train: int, tokens: float, n_eval: int, device: str, profile: str = "v2") -> float:
    steps_per_epoch = -(-min(n_train, cfg.train_limit or n_train) // cfg.batch_size)
    steps = cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch * cfg.epochs
    flops = _train_flops_per_step(cfg, tokens)
    layers = cfg.num_hidden_layers or (6 if "MiniLM" in cfg.model else 12)
    if device == "cuda":
        per_step = max(GPU_STEP_FLOOR_S.get(cfg.model, 0.020) + 0.0015 * layers, _gpu_step_seconds(cfg, tokens))
    else:
        per_step = flops / (CPU_FLOPS_FP32_THREAD if profile == "cpu" else CPU_FLOPS)
    epochs = steps / steps_per_epoch if cfg.select_on else 0  # one evaluation per epoch
    evals = epochs * (cfg.eval_limit or n_eval) / cfg.batch_size * per_step / 3
    return steps * per_step + evals


def estimate(job: Job, device: str = "cuda", *, tiny: bool = False, profile: str = "v2") -> float:
    """Seconds ``job`` should take on ``device`` ("cuda" or "cpu") at its recipe's largest epoch count (``tiny``: of
    the recipe's tiny version; ``profile="cpu"``: CPU seconds of the cpu profile's recipe on one thread)."""
    n_train, tokens, n_cal, n_test = TASK_SIZES[job.task]
    over = JOB_OVERHEAD_S["cuda" if device == "cuda" else "cpu"]
    cpu_flops = CPU_FLOPS_FP32_THREAD if profile == "cpu" else CPU_FLOPS
    if job.kind == "collect":  # one forward pass per member over cal and test, plus loading each member
        cfgs = [recipe(job.task, m, seed=job.seed, tiny=tiny, profile=profile) for m in SETS[job.name]
                if m not in PROBES and not (profile == "cpu" and m in CPU_BORROWED)]
        flops = sum(_train_flops_per_step(c, tokens) / 3 / c.batch_size for c in cfgs) * (n_cal + n_test)
        return over + 2.0 * len(SETS[job.name]) + flops / (GPU_THROUGHPUT if device == "cuda" else cpu_flops)
    if job.name in PROBES:
        return over + 60.0
    cfg = recipe(job.task, job.name, seed=job.seed, tiny=tiny, profile=profile)
    if job.kind == "fold":
        rows = min(n_train, cfg.train_limit or n_train)  # the folds split the (capped) training rows
        return over + _run_seconds(cfg, rows // DIFFICULTY_FOLDS * (DIFFICULTY_FOLDS - 1), tokens, n_cal, device,
                                   profile)
    extra = 0.0
    if job.name in DIFFICULTY:  # out-of-fold prediction of the whole train carve: one forward pass
        extra = _run_seconds(recipe(job.task, DIFFICULTY[job.name], seed=job.seed, tiny=tiny, profile=profile,
                                    epochs=1.0, select_on=None, patience=None, eval_limit=None),
                             n_train, tokens, 0, device, profile) / 3
    return over + extra + _run_seconds(cfg, n_train, tokens, n_cal, device, profile)


def _gpu_step_seconds(cfg, tokens: float) -> float:
    layers = cfg.num_hidden_layers or (6 if "MiniLM" in cfg.model else 12)
    return (KERNELS_PER_LAYER * layers + KERNELS_PER_STEP) * GPU_KERNEL_S \
        + _train_flops_per_step(cfg, tokens) / GPU_THROUGHPUT


def gpu_busy_seconds(job: Job) -> float:
    """The GPU's own time in ``job`` (what concurrent jobs share): steps at the recipe's largest epoch count times
    :func:`_gpu_step_seconds`, plus the evaluations and forward passes (a third of a step per batch)."""
    n_train, tokens, n_cal, n_test = TASK_SIZES[job.task]
    if job.kind == "collect":
        cfgs = [recipe(job.task, m, seed=job.seed) for m in SETS[job.name] if m not in PROBES]
        return sum(_gpu_step_seconds(c, tokens) / 3 * (n_cal + n_test) / 128 for c in cfgs)
    if job.name in PROBES:
        return 1.0
    cfg = recipe(job.task, job.name, seed=job.seed)
    if job.kind == "fold":
        n_train = n_train // DIFFICULTY_FOLDS * (DIFFICULTY_FOLDS - 1)
    steps = -(-min(n_train, cfg.train_limit or n_train) // cfg.batch_size) * cfg.epochs
    evals = cfg.epochs * n_cal / 64 / 3 if cfg.select_on else 0
    if job.kind == "train" and job.name in DIFFICULTY:
        evals += n_train / 128 / 3
    return (steps + evals) * _gpu_step_seconds(cfg, tokens)


# ---------------------------------------------------------------------------------------------- running
# wall seconds between a running job's progress lines in the runner's log (toolkit.zoo.ledger.progress_line): the
# runner is killed at every session's end, and a killed job's last line is what the ledger knows it spent
CPU_EVERY_S = 60.0


def cpu_since(cpu0: float) -> float:
    """CPU seconds (user + system, every thread) this process has used since ``time.process_time()`` read ``cpu0``,
    to 0.1 s: the figure of a job's ``done:`` line and of its progress lines (what a shared CPU really gave it)."""
    return round(time.process_time() - cpu0, 1)


class _CpuTicker:
    """While open, ``emit(cpu_since(cpu0))`` every ``every`` wall seconds from a daemon thread that sleeps in
    between (``every`` None: never); closing stops it, so nothing is emitted after the job's end is reported."""

    def __init__(self, every: float | None, emit, cpu0: float):
        import threading

        self.every, self.emit, self.cpu0 = every, emit, cpu0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="zoo-cpu-ticker")

    def __enter__(self):
        if self.every is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.emit(cpu_since(self.cpu0))
            except (OSError, EOFError):  # the runner is gone (its pipe closed): nobody to tell
                return


def _one_at_a_time(log):
    """``log`` behind a lock: a job running in this process logs from its thread while a ticker logs from its own,
    and a runner log's lines must stay whole (the ledger reads them back)."""
    import threading

    lock = threading.Lock()

    def said(message):
        with lock:
            log(message)

    return said


def _log_path(where: Where, job: Job) -> Path:
    return where.logs / "jobs" / (job.id.replace("/", "__") + ".log")


def _worker_main(conn, where: Where, threads: int, cpu_every: float | None = CPU_EVERY_S) -> None:
    """A worker process: run the jobs it is sent, one at a time, each logging to its own file; while a job runs,
    send ``{"cpu_so_far": CPU s}`` every ``cpu_every`` seconds, then its result."""
    import gc
    import threading

    import torch

    parent = os.getppid()

    def orphaned():  # the scheduler died (killed at a deadline, say): stop, do not train on unobserved
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=orphaned, daemon=True).start()
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    while True:
        job = conn.recv()
        if job is None:
            return
        path = _log_path(where, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        cpu0 = time.process_time()  # CPU seconds of this process (every thread): what a shared CPU really gave
        with _CpuTicker(cpu_every, lambda c: conn.send({"cpu_so_far": c}), cpu0):
            try:
                run_job(job, where, log=lambda m: print(m, flush=True))
                result = {"ok": True}
            except BaseException:  # the job failed; the worker goes on with the next one
                result = {"ok": False, "error": traceback.format_exc()}
                print(result["error"], flush=True)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for f in (fd, *saved):
                    os.close(f)
        result["cpu_s"] = cpu_since(cpu0)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        conn.send(result)


class _Worker:
    def __init__(self, ctx, where: Where, threads: int, cpu_every: float | None = CPU_EVERY_S):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, where, threads, cpu_every), daemon=True)
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.started = 0.0

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _terminate_as_exit():
    """Make SIGTERM (a time limit's kill) unwind like an exception, so the workers are stopped and the status is
    saved; returns the function that restores the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise SystemExit(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def run_jobs(jobs: list[Job], where: Where, *, workers: int = 0, deadline: float | None = None,
             reserve: float = 30.0, safety: float = 1.3, threads: int = 1, device: str = "cuda",
             cpu_every: float | None = CPU_EVERY_S, log=print) -> dict[str, dict]:
    """Run ``jobs`` (priority order) against ``deadline`` (a ``time.time()``); returns each job's status.

    ``workers=0`` runs every job in this process, one after another (exceptions are caught all the same);
    ``workers=n`` runs n worker processes (spawned: each its own CUDA context). A training job starts only if
    ``now + factor * estimate <= deadline - reserve``, ``factor`` being ``safety`` or, once three training jobs
    have finished, 1.1 x the median of their actual over estimated seconds if larger (the estimates learn the
    machine and the contention); training still running at ``deadline - reserve`` is stopped, and collect jobs may
    run until ``deadline``. ``<where.logs>/status.json`` (this run) is rewritten at every change; each finished job
    records its wall seconds and the CPU seconds of its process (``cpu_s``). A job whose outputs were complete
    before it started (:func:`found_complete`) did no work: its state is ``"already done"``, without seconds.

    Every attempt that ends (done, failed, or stopped, with the CPU seconds its worker used, read from /proc) is also
    appended to ``<where.logs>/ledger.jsonl`` (:mod:`toolkit.zoo.ledger`), which no run rewrites:
    :func:`toolkit.zoo.ledger.spent` sums it per job. Found-complete jobs add nothing to it.

    While a job runs, every ``cpu_every`` wall seconds (None: never) the runner logs the CPU seconds its process has
    used on it so far (:func:`toolkit.zoo.ledger.progress_line`, the same :func:`cpu_since` as its ``done:`` line),
    read by a thread of that process that sleeps in between: where the runner is killed outright, the job's last
    such line is what the ledger knows it spent (:func:`toolkit.zoo.ledger.killed_attempts`).
    """
    if cpu_every is not None and not cpu_every > 0:
        raise ValueError(f"cpu_every is the wall seconds between progress lines (> 0, or None for none), "
                         f"got {cpu_every!r}")
    log = _one_at_a_time(log)
    status = {j.id: {"kind": j.kind, "state": "pending", "needs": list(j.needs),
                     "est_s": round(estimate(j, device, tiny=where.tiny, profile=where.profile), 1)} for j in jobs}
    by_id = {j.id: j for j in jobs}
    unknown = {n for j in jobs for n in j.needs if n not in by_id}
    if unknown:
        raise ValueError(f"jobs need jobs that are not in the list: {sorted(unknown)}")
    t_start = time.time()
    pool: list[_Worker] = []
    ctx = None
    if workers:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        pool = [_Worker(ctx, where, threads, cpu_every) for _ in range(workers)]

    slowdown: list[float] = []  # actual / estimated seconds of finished training: how far off the estimates are
    ledger = where.logs / LEDGER if where.logs is not None else None
    attempts: dict[str, dict] = {}  # job id -> what its running attempt knew when it started

    def begin(job: Job, started: float, pid: int, cpu0: float | None) -> None:
        status[job.id].update(state="running", started=started)
        attempts[job.id] = {"complete": found_complete(job, where), "resumed": _resumes(job, where), "pid": pid,
                            "cpu0": cpu0, "iso": datetime.fromtimestamp(started, timezone.utc).isoformat(
                                timespec="seconds")}

    def save_status():
        if where.logs is None:
            return
        where.logs.mkdir(parents=True, exist_ok=True)
        counts = {}
        for s in status.values():
            counts[s["state"]] = counts.get(s["state"], 0) + 1
        doc = {"started": t_start, "elapsed_s": round(time.time() - t_start, 1), "deadline": deadline,
               "slowdown_median": round(float(np.median(slowdown)), 2) if slowdown else None,
               "ledger": str(ledger), "workers": workers, "device": device, "counts": counts,
               "where": {k: str(v) for k, v in asdict(where).items()},
               "jobs": status}
        write_atomic(where.logs / "status.json", json.dumps(doc, indent=1))

    def finish(job_id: str, state: str, **info):
        s = status[job_id]
        attempt = attempts.pop(job_id, None)
        if state == "done" and attempt is not None and attempt["complete"]:  # found its outputs: no work, no seconds
            state = "already done"
            s.pop("started", None)
            info.pop("cpu_s", None)
        s.update(state=state, **info)
        if "started" in s:
            s["wall_s"] = round(time.time() - s["started"], 1)
            if state == "done" and s["kind"] != "collect" and s["est_s"] > 0:
                slowdown.append(s["wall_s"] / s["est_s"])
            if ledger is not None and attempt is not None:
                append_attempt(ledger, {
                    "job": job_id, "kind": s["kind"], "state": state, "started": attempt["iso"],
                    "wall_s": s["wall_s"], "cpu_s": s.get("cpu_s"), "worker_pid": attempt["pid"], "device": device,
                    "threads": threads, "resumed": attempt["resumed"], "source": "runner",
                    **({"error": info["error"].strip().splitlines()[-1][:300]} if info.get("error") else {})})
        log(f"[zoo] {state}: {job_id}" + (f" ({s['wall_s']} s" + (f", {s['cpu_s']} CPU s" if "cpu_s" in s else "")
                                           + ")" if "wall_s" in s else "")
            + (" (found complete: no work)" if state == "already done" else "")
            + (f"\n{info['error'].strip().splitlines()[-1]}" if info.get("error") else ""))
        save_status()

    def ready(job: Job) -> bool:
        return all(status[n]["state"] in DONE for n in job.needs)

    def worker_cpu(w: _Worker) -> dict:
        """The CPU seconds worker ``w`` has used on its job so far (where /proc tells)."""
        now, cpu0 = _proc_cpu_s(w.proc.pid), attempts.get(w.job.id, {}).get("cpu0")
        return {} if now is None or cpu0 is None else {"cpu_s": round(now - cpu0, 1)}

    def fits(job: Job, now: float) -> bool:
        if deadline is None:
            return True
        limit = deadline if job.kind == "collect" else deadline - reserve
        factor = max(safety, 1.1 * float(np.median(slowdown))) if len(slowdown) >= 3 else safety
        return now + factor * status[job.id]["est_s"] <= limit

    save_status()
    stop_on_term = _terminate_as_exit()
    try:
        while True:
            now = time.time()
            for w in pool:  # reap
                if w.job is None:
                    continue
                result = None
                while result is None and w.conn.poll():
                    try:
                        result = w.conn.recv()
                    except EOFError:
                        result = {"ok": False, "error": "worker closed its pipe"}
                    if "cpu_so_far" in result:  # the job is still running
                        log(progress_line(w.job.id, result.pop("cpu_so_far")))
                        result = None
                if result is not None:
                    finish(w.job.id, "done" if result["ok"] else "failed", error=result.get("error"),
                           **({"cpu_s": result["cpu_s"]} if "cpu_s" in result else {}))
                    w.job = None
                elif not w.proc.is_alive():
                    finish(w.job.id, "failed", error=f"worker process died (exit code {w.proc.exitcode})")
                    pool[pool.index(w)] = _Worker(ctx, where, threads, cpu_every)
            if deadline is not None:  # stop training that would leave no room for collection, and all at the end
                for i, w in enumerate(pool):
                    job = w.job
                    if job is not None and (now >= deadline or (now >= deadline - reserve and job.kind != "collect")):
                        cpu = worker_cpu(w)
                        w.stop(kill=True)
                        pool[i] = _Worker(ctx, where, threads, cpu_every) if now < deadline else w
                        pool[i].job = None
                        finish(job.id, "stopped", error="stopped at the deadline (resumable)", **cpu)
            for job in jobs:  # skip what can no longer run
                s = status[job.id]
                if s["state"] != "pending":
                    continue
                bad = [n for n in job.needs if status[n]["state"] in ("failed", "stopped", "skipped", "not_started")]
                if bad:
                    finish(job.id, "skipped", error=f"needs {bad[0]} ({status[bad[0]]['state']})")
                elif ready(job) and not fits(job, now):
                    finish(job.id, "not_started", error="not enough time left before the deadline")
            order = [j for j in jobs if j.kind == "collect"] + [j for j in jobs if j.kind != "collect"]
            launchable = [j for j in order if status[j.id]["state"] == "pending" and ready(j)]
            if workers == 0:
                if not launchable:
                    break
                job = launchable[0]
                begin(job, time.time(), os.getpid(), None)
                log(f"[zoo] start: {job.id}")
                cpu0 = time.process_time()
                try:
                    with _CpuTicker(cpu_every, lambda c, i=job.id: log(progress_line(i, c)), cpu0):
                        run_job(job, where, log=log)
                    finish(job.id, "done", cpu_s=cpu_since(cpu0))
                except Exception:
                    finish(job.id, "failed", error=traceback.format_exc(), cpu_s=cpu_since(cpu0))
                except BaseException:  # SIGTERM (see _terminate_as_exit), Ctrl-C: this attempt is stopped, resumable
                    finish(job.id, "stopped", error="stopped: the scheduler was ended (resumable)",
                           cpu_s=cpu_since(cpu0))
                    raise
                continue
            for w in pool:
                if w.job is None and launchable:
                    job = launchable.pop(0)
                    w.job, w.started = job, time.time()
                    begin(job, w.started, w.proc.pid, _proc_cpu_s(w.proc.pid))
                    status[job.id].update(log=str(_log_path(where, job)), worker_pid=w.proc.pid)
                    log(f"[zoo] start: {job.id} (estimate {status[job.id]['est_s']:.0f} s)")
                    save_status()
                    w.conn.send(job)
            busy = any(w.job is not None for w in pool)
            if not busy and not launchable:
                break
            time.sleep(0.2)
    finally:
        stop_on_term()
        for w in pool:
            if w.job is not None:
                finish(w.job.id, "stopped", error="stopped: the scheduler was ended (resumable)", **worker_cpu(w))
            w.stop(kill=w.job is not None)
        for s in status.values():
            if s["state"] == "pending":
                s["state"] = "not_started"
        save_status()
    return status
