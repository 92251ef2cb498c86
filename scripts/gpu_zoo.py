"""Train the zoo v2 (three seeds; sets minilm6_me, cascade, mpnet_me, cascade_da) concurrently on one GPU, against
a wall-clock deadline, and collect cal/test caches with manifest entries as sets finish. The same runner continues
on a CPU (``--device cpu --workers 0``): resumable, in priority order.

    python scripts/gpu_zoo.py OUT --deadline 500 --workers 12           # the GPU run (about 8 minutes)
    python scripts/gpu_zoo.py OUT --plan                                # the job list with estimated seconds
    python scripts/gpu_zoo.py OUT --tiny --device cpu --workers 2       # same path in minutes (a few steps)
    nohup nice -n 19 python scripts/gpu_zoo.py /tmp/zoo --device cpu --workers 2 --threads 1 \
        --runs /tmp/zoo/runs > /tmp/zoo/runner.log 2>&1 &                 # the CPU plan (issue 29), resumable
    python scripts/gpu_zoo.py --merge OUT/data --into data              # bring a run's caches into data/
    python scripts/gpu_zoo.py --ledger-from-log OUT/runner-1.log OUT/runner.log --into OUT/logs/ledger.jsonl
                                                                        # backfill (logs oldest first; idempotent)

Inputs: the data folder (``TOOLKIT_DATA_DIR`` or ``--data-dir``, laid out like ../shared/data); the pretrained
weights as plain folders ``$TOOLKIT_CACHE/models/all-MiniLM-L6-v2`` and ``.../all-mpnet-base-v2`` (or the
packages). Output under OUT: ``data/<task>/<set>-s<seed>-{cal,test}.parquet`` and ``data/MANIFEST.json``;
``logs/status.json`` (this run's jobs: state, wall time, estimate, error; rewritten by each run),
``logs/ledger.jsonl`` (every job attempt of every run, appended: ``toolkit.zoo.ledger``; ``--merge`` adds the CPU
seconds it sums to the merged entries, ``--ledger-from-log`` reads back the logs of runs made before it existed),
``logs/jobs/<job>.log`` (each job's output),
``logs/meta/<task>/<member>-s<seed>.json`` (each run's config, per-epoch curve, epoch kept, wall time), and
``logs/plan.json``. Checkpoints go to ``--runs`` (default /tmp/toolkit-zoo-runs), outside OUT.

``--device cpu`` uses the recipes' ``cpu`` profile (``toolkit.zoo.recipes.SCHEDULE_CPU``: fp32, small fixed epoch
budgets, no MPNet trained: the cascades borrow the shipped multi-exit MPNet's last exit from ``--shipped``) and
its priority tiers (``toolkit.zoo.jobs.CPU_PRIORITY``); caches already in ``--shipped`` are not rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when toolkit is not installed


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", help="output folder (data/ and logs/ go below it)")
    p.add_argument("--deadline", type=float, help="seconds from now by which everything must have ended")
    p.add_argument("--workers", type=int, default=12, help="concurrent worker processes (0: in this process)")
    p.add_argument("--threads", type=int, help="torch CPU threads per worker (default 1 on a GPU, 2 on a CPU)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="for the estimates and defaults (default: detected)")
    p.add_argument("--runs", default=os.environ.get("TOOLKIT_ZOO_RUNS", "/tmp/toolkit-zoo-runs"),
                   help="run folders (checkpoints and weights; large, never under OUT)")
    p.add_argument("--data", help="where caches and MANIFEST.json go (default OUT/data)")
    p.add_argument("--logs", help="where logs go (default OUT/logs)")
    p.add_argument("--data-dir", default=os.environ.get("TOOLKIT_DATA_DIR"))
    p.add_argument("--task", nargs="+", help="only these tasks")
    p.add_argument("--set", nargs="+", help="only these sets")
    p.add_argument("--seed", nargs="+", type=int, help="only these training seeds")
    p.add_argument("--tiny", action="store_true", help="same code path, a few steps and examples")
    p.add_argument("--reserve", type=float, default=30.0, help="seconds kept for collection before the deadline")
    p.add_argument("--cpu-every", type=float,
                   help="wall seconds between a running job's '[zoo] cpu:' lines (the CPU seconds it has used so "
                        "far: what the ledger knows of a job killed with its runner; default "
                        "toolkit.zoo.jobs.CPU_EVERY_S, 60); 0: none")
    p.add_argument("--plan", action="store_true", help="print the job list with estimates and exit")
    p.add_argument("--profile", choices=("v2", "cpu"),
                   help="recipe profile (default: cpu with --device cpu, else v2; see toolkit.zoo.recipes)")
    p.add_argument("--shipped", default="data", help="the shipped caches: borrowed members and caches not to redo")
    p.add_argument("--merge", help="a run's data folder (OUT/data) to merge into --into (default data)")
    p.add_argument("--ledger", help="with --merge: the run's ledger (default: OUT/logs/ledger.jsonl beside OUT/data, "
                                    "where it exists)")
    p.add_argument("--ledger-from-log", nargs="+", metavar="LOG",
                   help="append the job attempts that these runner logs (oldest first) report to the ledger "
                        "--into (OUT/logs/ledger.jsonl), each once, also where a log is read again under another "
                        "name; logs whose 'runner started' lines say another order are refused; see "
                        "toolkit.zoo.ledger.backfill")
    p.add_argument("--into", help="--merge: the data folder (default data); --ledger-from-log: the ledger file")
    return p.parse_args(argv)


def _preflight(jobs, log, data_dir=None):
    """Drop the jobs whose weights or data are absent here (with a message), before any worker starts."""
    from toolkit.data.tasks import load_split
    from toolkit.nn.encoder.models import resolve_model
    from toolkit.zoo.build import SETS
    from toolkit.zoo.recipes import MEMBERS

    missing_models = {m for m in {v["model"] for v in MEMBERS.values()} - {"PRUNED"}
                      if not Path(resolve_model(m)).exists()}
    missing_tasks = set()
    for task in {j.task for j in jobs}:
        try:
            load_split(task, "test", data_dir)
        except Exception as e:  # noqa: BLE001 - reported, then the task's jobs are dropped
            log(f"[zoo] no data for {task}: {e}")
            missing_tasks.add(task)
    for m in sorted(missing_models):
        log(f"[zoo] weights of {m} not found (resolve_model gives {resolve_model(m)}); its jobs are dropped")

    def ok(j):
        members = SETS[j.name] if j.kind == "collect" else (j.name,)
        return j.task not in missing_tasks and all(MEMBERS[m]["model"] not in missing_models for m in members)

    kept = [j for j in jobs if ok(j)]
    ids = {j.id for j in kept}
    return [j for j in kept if all(n in ids for n in j.needs)]


def print_plan(jobs, device: str, workers: int, tiny: bool = False, profile: str = "v2") -> dict:
    from toolkit.zoo.jobs import estimate, gpu_busy_seconds

    rows = [{"job": j.id, "kind": j.kind, "est_s": round(estimate(j, device, tiny=tiny, profile=profile), 1),
             "gpu_busy_s": round(gpu_busy_seconds(j), 1) if device == "cuda" else None} for j in jobs]
    total = sum(r["est_s"] for r in rows)
    print(f"{'job':46s} {'est s':>7s} {'gpu s':>7s}")
    for r in rows:
        print(f"{r['job']:46s} {r['est_s']:7.1f} {r['gpu_busy_s'] if r['gpu_busy_s'] is not None else '':>7}")
    summary = {"jobs": len(rows), "profile": profile, "sum_est_s": round(total, 1),
               "sum_est_h": round(total / 3600, 1), "workers": workers,
               "est_wall_s_if_spread": round(total / max(workers, 1), 1), "longest_s": max(r["est_s"] for r in rows)}
    if device == "cuda":
        summary["sum_gpu_busy_s"] = round(sum(r["gpu_busy_s"] for r in rows), 1)
    print(json.dumps(summary))
    return {"rows": rows, "summary": summary}


def main(argv=None) -> int:
    a = _args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.ledger_from_log:
        from toolkit.zoo.ledger import LEDGER, backfill

        if not a.into or Path(a.into).is_dir() or not a.into.endswith(".jsonl"):
            raise SystemExit(f"--ledger-from-log needs --into OUT/logs/{LEDGER} (the ledger file), got {a.into}")
        try:
            added = backfill(a.ledger_from_log, a.into)
        except ValueError as e:  # logs out of order (their 'runner started' lines), a bad ledger line
            raise SystemExit(f"--ledger-from-log: {e}") from None
        print(f"appended {len(added)} job attempts from {len(a.ledger_from_log)} log(s) to {a.into}")
        return 0
    if a.merge:
        from toolkit.zoo.manifest import merge_manifest

        into = a.into or "data"
        keys = merge_manifest(a.merge, into, ledger=a.ledger)
        print(f"merged {len(keys)} caches from {a.merge} into {into}")
        return 0
    if not a.out:
        raise SystemExit("give the output folder (or --merge)")
    t0 = time.time()
    deadline = t0 + a.deadline if a.deadline else None
    import torch

    from toolkit.zoo.build import Where, borrowed_problems
    from toolkit.zoo.jobs import CPU_EVERY_S, prioritized, run_jobs, without_finished
    from toolkit.zoo.ledger import started_line

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    profile = a.profile or ("cpu" if device == "cpu" else "v2")
    threads = a.threads or (1 if device == "cuda" or profile == "cpu" else 2)
    out = Path(a.out)
    logs = Path(a.logs) if a.logs else out / "logs"
    where = Where(out=Path(a.data) if a.data else out / "data", runs=Path(a.runs), data_dir=a.data_dir, tiny=a.tiny,
                  save_steps=10 ** 6 if device == "cuda" else (50 if profile == "cpu" else None), collect_batch_size=128 if device == "cuda" else 64,
                  command="scripts/gpu_zoo.py " + " ".join(sys.argv[1:] if argv is None else argv), logs=logs,
                  profile=profile, shipped=Path(a.shipped))
    jobs = without_finished(prioritized(tasks=a.task, sets=a.set, seeds=a.seed, device=device, tiny=a.tiny,
                                        profile=profile), where.out, also=(where.shipped,))
    if a.plan:
        print_plan(jobs, device, a.workers, a.tiny, profile)
        return 0
    log = lambda m: print(f"{time.time() - t0:7.1f}s {m}", flush=True)
    # when this runner started: --ledger-from-log places its log among others by it (the times count from here)
    log(started_line(t0))
    problems = borrowed_problems(jobs, where)
    if problems:  # refused before any training: the sets could not be collected
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    jobs = _preflight(jobs, log, a.data_dir)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "plan.json").write_text(json.dumps({"device": device, "workers": a.workers, "deadline_s": a.deadline,
                                                "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                                                "jobs": [j.id for j in jobs]}, indent=1))
    log(f"[zoo] {len(jobs)} jobs on {device} ({profile} recipes), {a.workers} workers, {threads} thread(s) each, "
        f"deadline {a.deadline or 'none'} s")
    status = run_jobs(jobs, where, workers=a.workers, deadline=deadline, reserve=a.reserve, threads=threads,
                      device=device, cpu_every=CPU_EVERY_S if a.cpu_every is None else a.cpu_every or None, log=log)
    counts = {}
    for s in status.values():
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    log(f"[zoo] finished: {counts}; status in {logs / 'status.json'}")
    return 0 if counts.get("failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
