"""The zoo runner's ledger (``<logs>/ledger.jsonl``): every job attempt the runner made, appended as it ends, and what
the jobs really cost, summed over their attempts. Analysis side: json and pandas, no torch.

One JSON object a line, never rewritten: ``job`` (its id), ``kind`` (train, fold, collect), ``state`` (done, failed,
stopped, killed), ``started`` (UTC ISO time, None where unknown), ``wall_s``, ``cpu_s`` (CPU seconds of the process
that ran the job, every thread; None where unknown), ``worker_pid``, ``device``, ``threads``, ``resumed`` (the run
folder held checkpoints when the attempt started, so it continued from the last one; None where unknown),
``source`` ("runner", or the runner log a line was read back from by :func:`backfill`), ``log_t`` (the log's
seconds since the runner started; backfilled lines only) and ``log_sha`` (backfilled lines of a log that says when
and as which pid its runner started, :func:`started_line`: the log's text up to and including the line read,
hashed, the same for the log read again under another name and different for any other log). A job that the runner
found already complete is not an attempt and has no line.

``killed``: an attempt whose runner was killed outright (SIGKILL at a session's end) while it ran, so it never
logged its end; :func:`backfill` reads it back from a ``start:`` line with no end that a later ``start:`` (or
``already done:``) of the same job follows, in that log or a later one (:func:`killed_attempts`). It spent seconds
that nothing measured: ``cpu_s`` and ``wall_s`` are None, ``log_t`` is its start line's, ``wall_s_min`` a lower
bound on its wall seconds (its start to the last timestamp of its log, where the restart is in a later log: the
runner, and so its worker, lived at least that long; None where the restart is in the same log) and ``restart_t``
the later start's log seconds where that is in the same log (else None), and ``cpu_s_at_least`` the CPU seconds
of its last complete :func:`progress_line` (runners log one a minute per running job, since that line exists;
absent where its log has none, so older logs give the records they always gave); its job and ``log_sha`` (its
start line in its log) keep a second backfill from adding it again, also where the log was renamed since (a live
``runner.log`` becomes ``runner-<n>.log``); a log written before runners logged their start (no ``log_sha``) is
matched by its name and the start's time instead, so such a log renamed after a restart within it was read gives
that kill a second line. :func:`spent` counts it as an attempt of unknown CPU, so no sum that includes it is
written (:func:`with_cpu_seconds` says why, and gives the known attempts' sum plus the killed attempts'
``cpu_s_at_least`` as a lower bound). A start with no end and no later start (a job running now, in the live
log) is not an attempt yet and has no line.

Logs are read oldest first. Their times count from each runner's start, so only a log that says when its runner
started (:func:`started_line`, written by runners since that line exists) can be placed: logs passed in an order
that these lines contradict are refused (:func:`check_log_order`); older logs are taken in the order given.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

LEDGER = "ledger.jsonl"
# a runner log's "done" line of an attempt that found its outputs complete and did no work: cpu 0.0 and a short wall
FOUND_COMPLETE_MAX_WALL_S = 30.0
_LOG_LINE = re.compile(r"^(?:\d\d:\d\d:\d\d\s+)?\s*(?P<t>\d+(?:\.\d+)?)s \[zoo\] (?P<state>done|failed|stopped): "
                       r"(?P<job>\S+) \((?P<wall>\d+(?:\.\d+)?) s(?:, (?P<cpu>\d+(?:\.\d+)?) CPU s)?\)\s*$")
# any line of a runner log that names a job: its start, its end (done, failed, stopped) or "already done"
_JOB_EVENT = re.compile(r"^(?:\d\d:\d\d:\d\d\s+)?\s*(?P<t>\d+(?:\.\d+)?)s \[zoo\] "
                        r"(?P<event>start|already done|done|failed|stopped): (?P<job>\S+)")
_LOG_T = re.compile(r"^(?:\d\d:\d\d:\d\d\s+)?\s*(?P<t>\d+\.\d+)s \S")  # any timestamped line (f"{t:7.1f}s {m}")
# a runner's periodic line on a running job (:func:`progress_line`): the CPU seconds its process has used on it so far
_PROGRESS = re.compile(r"^(?:\d\d:\d\d:\d\d\s+)?\s*(?P<t>\d+(?:\.\d+)?)s \[zoo\] cpu: (?P<job>\S+) "
                       r"(?P<cpu>\d+(?:\.\d+)?) CPU s so far\s*$")
_STARTED = re.compile(r"^(?:\d\d:\d\d:\d\d\s+)?\s*\d+(?:\.\d+)?s \[zoo\] runner started (?P<at>\S+)")
_ENTRY_KEY = re.compile(r"^(?P<task>[^/]+)/(?P<set>.+)-s(?P<seed>\d+)-(?P<split>[^-/]+)$")


def cache_key(task: str, s: str, seed: int | str, split: str) -> str:
    """Manifest key (and path below the output folder, without ``.parquet``) of one per-seed zoo cache; read back
    by :func:`cache_key_parts`."""
    return f"{task}/{s}-s{seed}-{split}"


def cache_key_parts(key: str) -> dict[str, str] | None:
    """``task``, ``set``, ``seed`` (digits, as written) and ``split`` of a per-seed zoo cache's manifest key
    (``<task>/<set>-s<seed>-<split>``, :func:`cache_key`); None for any other key."""
    m = _ENTRY_KEY.match(key)
    return m.groupdict() if m else None


def job_id(task: str, name: str, seed: int | str, kind: str = "train", fold: int | None = None) -> str:
    """A zoo job's id, as the runner logs it and the ledger records it (:class:`toolkit.zoo.build.Job`):
    ``<task>/<name>-s<seed>`` (train member ``name``), ``<that>/fold<k>`` (difficulty fold ``k`` of ranking member
    ``name``), ``<task>/<name>-s<seed>/collect`` (the caches of set ``name``). :func:`kind_of` reads ``kind`` back."""
    base = f"{task}/{name}-s{seed}"
    if kind == "train":
        return base
    if kind == "fold":
        return f"{base}/fold{fold}"
    if kind == "collect":
        return f"{base}/collect"
    raise ValueError(f"unknown job kind {kind!r}; one of train, fold, collect")


def kind_of(job_id: str) -> str:
    """The kind of a job from its id (:func:`job_id`: ``<task>/<member>-s<seed>``, ``.../fold<k>``,
    ``<task>/<set>-s<seed>/collect``)."""
    last = job_id.rsplit("/", 1)[-1]
    return "collect" if last == "collect" else "fold" if re.fullmatch(r"fold\d+", last) else "train"


def append_attempt(path: str | os.PathLike, record: dict) -> None:
    """Append one attempt to the ledger at ``path``: one ``write`` of one line, flushed and fsynced, so that a kill
    loses at most the line being written and never an earlier one. A line torn by such a kill is closed with a
    newline first, so it stays a line of its own (:func:`read_ledger` skips it)."""
    missing = {"job", "state", "wall_s", "cpu_s"} - set(record)
    if missing:
        raise ValueError(f"ledger record {record} lacks {sorted(missing)}")
    line = json.dumps(record, sort_keys=True, default=str)
    if "\n" in line:
        raise ValueError(f"ledger record {record} does not fit on one line")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        size = os.fstat(f.fileno()).st_size
        torn = size > 0 and os.pread(f.fileno(), 1, size - 1) != b"\n"
        f.write((("\n" if torn else "") + line + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_ledger(path: str | os.PathLike) -> list[dict]:
    """The attempts of the ledger at ``path``, in the order they were appended (a missing file: none). A line that
    is not JSON (torn by a kill while it was written: that attempt is lost) is skipped with a warning naming it; a
    JSON line that is not an attempt is an error naming it."""
    import warnings

    path = Path(path)
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            warnings.warn(f"{path}, line {i}: not a JSON line (torn by a kill while it was written?); skipped",
                          stacklevel=2)
            continue
        if not isinstance(rec, dict) or "job" not in rec:
            raise ValueError(f"{path}, line {i}: a ledger line is a JSON object with a 'job', got {line[:80]!r}")
        out.append(rec)
    return out


def spent(ledger):
    """CPU and wall seconds spent per job, summed over its attempts (done, failed, stopped and killed all count: an
    attempt that was stopped, then resumed from a checkpoint, spent its seconds too).

    ``ledger``: a ledger path or the records of :func:`read_ledger`. Returns a DataFrame indexed by job: ``kind``,
    ``attempts``, ``done`` (how many attempts finished the job), ``cpu_s`` and ``wall_s`` (sums over the attempts
    that know them), ``cpu_unknown`` (attempts without a CPU figure, killed ones included), ``killed`` (attempts
    whose runner was killed while they ran: their seconds are unknown, so the sums are lower bounds),
    ``killed_bounded`` (those of them whose log gave a CPU figure so far, ``cpu_s_at_least``) and
    ``killed_cpu_s_min`` (the sum of those figures: CPU seconds the killed attempts used at least). What the ledger
    cannot know: a killed attempt that no later start of its job revealed (:func:`killed_attempts`) has no line, so
    its seconds are missing from these sums unnoticed; a found-complete job (no work) has no line either.
    """
    import pandas as pd

    recs = read_ledger(ledger) if isinstance(ledger, (str, os.PathLike)) else list(ledger)
    cols = ["kind", "attempts", "done", "cpu_s", "wall_s", "cpu_unknown", "killed", "killed_bounded",
            "killed_cpu_s_min"]
    if not recs:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="job"))
    f = pd.DataFrame({"job": [r["job"] for r in recs],
                      "kind": [r.get("kind") or kind_of(r["job"]) for r in recs],
                      "done": [r.get("state") == "done" for r in recs],
                      "killed": [r.get("state") == "killed" for r in recs],
                      "cpu_s": pd.to_numeric(pd.Series([r.get("cpu_s") for r in recs], dtype=object)),
                      "wall_s": pd.to_numeric(pd.Series([r.get("wall_s") for r in recs], dtype=object)),
                      "at_least": pd.to_numeric(pd.Series([r.get("cpu_s_at_least") if r.get("state") == "killed"
                                                           else None for r in recs], dtype=object))})
    g = f.groupby("job", sort=False)
    out = pd.DataFrame({"kind": g["kind"].first(), "attempts": g.size(), "done": g["done"].sum(),
                        "cpu_s": g["cpu_s"].sum(min_count=0).round(1), "wall_s": g["wall_s"].sum(min_count=0).round(1),
                        "cpu_unknown": g.size() - g["cpu_s"].count(), "killed": g["killed"].sum(),
                        "killed_bounded": g["at_least"].count(), "killed_cpu_s_min": g["at_least"].sum().round(1)})
    return out[cols]


# ---------------------------------------------------------------------------------- backfill from runner logs
def parse_runner_log(path: str | os.PathLike) -> list[dict]:
    """The job attempts that a runner log (``scripts/gpu_zoo.py``'s output) reports as ended, as ledger records.

    Reads its ``[zoo] done:``, ``failed:`` and ``stopped:`` lines (``<t>s [zoo] done: <job> (<wall> s, <cpu> CPU
    s)``, optionally after an ``HH:MM:SS`` clock). Skipped: a ``done`` line with 0.0 CPU s and under
    :data:`FOUND_COMPLETE_MAX_WALL_S` wall seconds, which is a job that found its outputs complete (the runner before
    the ledger logged those as done), not work. ``source`` is the log's file name, ``log_t`` the line's seconds since
    that runner started; what the log does not say (start time, pid, device, threads, resumed) is None. Attempts a
    log does not report as ended (the runner was killed while they ran) are :func:`killed_attempts`.
    """
    path = Path(path)
    out = []
    for line, sha in _log_lines(path):
        m = _LOG_LINE.match(line)
        if not m:
            continue
        wall, cpu = float(m["wall"]), None if m["cpu"] is None else float(m["cpu"])
        if m["state"] == "done" and cpu == 0.0 and wall < FOUND_COMPLETE_MAX_WALL_S:
            continue
        out.append({"job": m["job"], "kind": kind_of(m["job"]), "state": m["state"], "started": None,
                    "wall_s": wall, "cpu_s": cpu, "worker_pid": None, "device": None, "threads": None,
                    "resumed": None, "source": path.name, "log_t": float(m["t"]), **_sha(sha)})
    return out


def _sha(sha: str | None) -> dict:
    """``{"log_sha": sha}``, or nothing for a log without a start line (its records stay as they were)."""
    return {} if sha is None else {"log_sha": sha}


def _log_lines(path: Path):
    """``(line, sha)`` of each line of the log ``path``: ``sha`` the first 16 hex digits of the sha256 of the log's
    text up to and including that line, which names the line whatever the file is called (a log only grows), from
    the runner's start line (:func:`started_line`: it makes the text unique to one run) on; None before it, and in
    logs without one (two runs' logs can begin alike)."""
    h, dated = hashlib.sha256(), False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        h.update(line.encode("utf-8") + b"\n")
        dated = dated or _STARTED.match(line) is not None
        yield line, h.hexdigest()[:16] if dated else None


def started_line(t0: float) -> str:
    """The line a runner logs first: when it started (``t0``: Unix seconds), as UTC to the second, and its pid;
    :func:`log_started` reads it back."""
    return f"[zoo] runner started {datetime.fromtimestamp(t0, timezone.utc).isoformat(timespec='seconds')} " \
           f"(pid {os.getpid()})"


def progress_line(job: str, cpu_s: float) -> str:
    """The line a runner logs every so often (``toolkit.zoo.jobs.CPU_EVERY_S``) for each job it runs: the CPU
    seconds the job's process has used on it so far (``toolkit.zoo.jobs.cpu_since``, the figure its ``done:`` line
    gives when it ends); :func:`parse_progress` reads it back. A killed attempt's last such line is a lower bound on
    its CPU seconds (:func:`killed_attempts`)."""
    if not (cpu_s >= 0):
        raise ValueError(f"CPU seconds of {job} must be a number >= 0, got {cpu_s!r}")
    if not job or any(c.isspace() for c in job):
        raise ValueError(f"a job id is one word (toolkit.zoo.ledger.job_id), got {job!r}")
    return f"[zoo] cpu: {job} {cpu_s:.1f} CPU s so far"


def parse_progress(line: str) -> tuple[float, str, float] | None:
    """``(log seconds, job, CPU s so far)`` of a runner log's :func:`progress_line` (after its ``<t>s`` stamp and an
    optional clock), or None for any other line, a line cut short by a kill included (it lacks the closing words)."""
    m = _PROGRESS.match(line)
    return None if m is None else (float(m["t"]), m["job"], float(m["cpu"]))


def log_started(path: str | os.PathLike) -> datetime | None:
    """When the runner that wrote the log ``path`` started (its ``[zoo] runner started <UTC time>`` line, an aware
    datetime); None for a log without one (written before runners logged it)."""
    for line, _ in _log_lines(Path(path)):
        if m := _STARTED.match(line):
            try:
                at = datetime.fromisoformat(m["at"])
            except ValueError:
                raise ValueError(f"{path}: '{line.strip()}' does not give an ISO time") from None
            if at.tzinfo is None:
                raise ValueError(f"{path}: '{line.strip()}' gives no time zone (runners log UTC)")
            return at
    return None


def check_log_order(logs) -> None:
    """Refuse runner logs ``logs`` passed in an order that their start lines (:func:`log_started`) contradict:
    a ValueError naming both logs and their start times, and the order to pass them in. Logs without a start line
    cannot be placed and pass unchecked."""
    logs = [Path(log) for log in ([logs] if isinstance(logs, (str, os.PathLike)) else logs)]
    dated = [(at, log) for log in logs if (at := log_started(log)) is not None]
    for (a, first), (b, second) in pairwise(dated):
        if b < a:
            want = " ".join(str(log) for _, log in sorted(dated, key=lambda x: x[0]))
            raise ValueError(f"runner logs are read oldest first, but {second} (runner started {b.isoformat()}) "
                             f"comes after {first} (started {a.isoformat()}); pass them in the order {want} "
                             f"(logs without a 'runner started' line keep their place before or among them)")


def _log_events(path: Path) -> tuple[list[tuple[float, str, str, str, float | None]], float | None]:
    """``(t, event, job, sha, cpu)`` of each line of the runner log ``path`` that names a job (event: start, done,
    failed, stopped, already done, or cpu: a :func:`progress_line`, whose CPU seconds so far are ``cpu``, else None;
    ``sha``: :func:`_log_lines`'), in order, and the log's last timestamp (None without one)."""
    events, last = [], None
    for line, sha in _log_lines(path):
        if m := _LOG_T.match(line):
            last = float(m["t"])
        if m := _JOB_EVENT.match(line):
            events.append((float(m["t"]), m["event"], m["job"], sha, None))
        elif p := parse_progress(line):
            events.append((p[0], "cpu", p[1], sha, p[2]))
    return events, last


def killed_attempts(logs) -> list[list[dict]]:
    """The attempts of the runner logs ``logs`` (oldest first) that were killed while they ran, one list per log: a
    ``start:`` line of a job with no end line (``done:``, ``failed:``, ``stopped:``, ``already done:``) before a
    later ``start:`` or ``already done:`` of the same job, in the same log or a later one of ``logs``. Ledger records
    in state ``killed`` (the module docstring), in the order of their start lines. A start with no end that nothing
    follows (the job is running now, or its log is the last word on it) is not returned. Refused where the logs'
    start lines show them out of order (:func:`check_log_order`)."""
    logs = [Path(log) for log in ([logs] if isinstance(logs, (str, os.PathLike)) else logs)]
    check_log_order(logs)
    out: list[list[dict]] = [[] for _ in logs]
    pending: dict[str, list[tuple[int, dict]]] = {}  # job -> (log index, record) of its unended starts in earlier logs
    for i, path in enumerate(logs):
        events, last = _log_events(path)
        running: dict[str, dict] = {}  # job -> its unended start in this log
        for t, event, job, sha, cpu in events:
            if event == "cpu":  # its process had used at least this much CPU on the running attempt
                if job in running:
                    running[job]["cpu_s_at_least"] = max(cpu, running[job].get("cpu_s_at_least", 0.0))
                continue
            if event in ("start", "already done"):
                for k, rec in pending.pop(job, []):
                    out[k].append(rec)
            if event == "start":
                if job in running:  # started again in this log with no end between: the first was killed
                    out[i].append({**running[job], "restart_t": t})
                running[job] = {"job": job, "kind": kind_of(job), "state": "killed", "started": None, "wall_s": None,
                                "cpu_s": None, "worker_pid": None, "device": None, "threads": None,
                                "resumed": None, "source": path.name, "log_t": t, "wall_s_min": None,
                                "restart_t": None, **_sha(sha)}
            else:
                running.pop(job, None)
        for job, rec in running.items():  # its runner lived at least to the log's last timestamp
            pending.setdefault(job, []).append((i, {**rec, "wall_s_min": round(max(0.0, last - rec["log_t"]), 1)}))
    return [sorted(recs, key=lambda r: r["log_t"]) for recs in out]


def _same_attempt(a: dict, b: dict) -> bool:
    """One attempt read twice: same job and the same line of the same log (``log_sha``, whatever the log is called
    now: a live ``runner.log`` read, then renamed ``runner-<n>.log`` and read again), or (a runner's own line and the
    log line that reports it) same job, state, wall and CPU seconds (both logged to 0.1 s). A killed attempt (no
    seconds to compare) is the same only as a killed one of the same job and start line. Lines backfilled before
    ``log_sha`` existed compare by log name and time instead (``source``, ``log_t``), which two runs' ``runner.log``
    can share: with both hashes that is never enough."""
    if a["job"] != b["job"]:
        return False
    hashed = a.get("log_sha") is not None and b.get("log_sha") is not None
    if hashed and a["log_sha"] == b["log_sha"]:
        return True
    same_line = not hashed and a.get("log_t") is not None and \
        (a.get("source"), a.get("log_t")) == (b.get("source"), b.get("log_t"))
    if "killed" in (a.get("state"), b.get("state")):
        return a.get("state") == b.get("state") and same_line
    if same_line:
        return True
    return (a.get("state"), a.get("wall_s"), a.get("cpu_s")) == (b.get("state"), b.get("wall_s"), b.get("cpu_s"))


def backfill(logs, into: str | os.PathLike) -> list[dict]:
    """Append the attempts of the runner logs ``logs`` (oldest first: :func:`parse_runner_log`'s ended ones, then
    its :func:`killed_attempts`) to the ledger ``into``, each only if the ledger does not hold it already
    (:func:`_same_attempt`): running it twice adds nothing, nor does a log read again under another name, nor a log
    of a runner that wrote the ledger itself. Refused, before anything is appended, where the logs' start lines
    show them out of order (:func:`check_log_order`). Returns the records appended."""
    logs = [logs] if isinstance(logs, (str, os.PathLike)) else list(logs)
    held = read_ledger(into)
    added = []
    for log, killed in zip(logs, killed_attempts(logs)):
        for rec in parse_runner_log(log) + killed:
            if any(_same_attempt(rec, h) for h in held):
                continue
            append_attempt(into, rec)
            held.append(rec)
            added.append(rec)
    return added


# ------------------------------------------------------------------------------------ into manifest entries
def _run_of(model_path: str) -> tuple[str, str, str]:
    """``(task, member, seed)`` of a model collected from ``<runs>/<task>/<member>-s<seed>/final`` (seed as written;
    the whole folder name where it has no ``-s``)."""
    parts = Path(model_path).parts
    if len(parts) < 3 or parts[-1] != "final":
        raise ValueError(f"model path {model_path!r} is not a zoo run's <runs>/<task>/<member>-s<seed>/final")
    member, _, seed = parts[-2].rpartition("-s")
    return parts[-3], member, seed


def _finished_cpu(table, jobs: list[str]) -> float | None:
    """CPU seconds of ``jobs`` summed over their attempts, or None unless each has a done attempt with every attempt's
    CPU known (a partial sum is not written)."""
    if not jobs or any(j not in table.index for j in jobs):
        return None
    rows = table.loc[jobs]
    if (rows["done"] < 1).any() or (rows["cpu_unknown"] > 0).any():
        return None
    return round(float(rows["cpu_s"].sum()), 1)


def _killed(table, jobs: list[str]) -> tuple[str, float] | None:
    """Where an attempt of one of ``jobs`` was killed (:func:`killed_attempts`), so their CPU seconds are unknown:
    why (the killed jobs, and the CPU seconds their logs saw them use, where the runner logged
    :func:`progress_line`) and a lower bound on the CPU seconds of ``jobs``: the known attempts' sum plus those
    figures; None where none was killed."""
    rows = table.loc[[j for j in jobs if j in table.index]]
    killed = rows.index[rows["killed"] > 0].tolist()
    if not killed:
        return None
    n, k = int(rows["killed"].sum()), int(rows["killed_bounded"].sum())
    at_least = round(float(rows["killed_cpu_s_min"].sum()), 1)
    what = f"{n} attempt{'s' * (n > 1)} of {', '.join(killed)} killed with its runner"
    if k == 0:  # its runner logged no CPU figure of it (runners before progress lines)
        what += " (no CPU figure)"
    elif k == n:
        what += f" after >= {at_least:,.1f} CPU s" + (" together" if n > 1 else "")
    else:
        what += f" ({k} after >= {at_least:,.1f} CPU s together, {n - k} with no CPU figure)"
    return what, round(float(rows["cpu_s"].sum()) + at_least, 1)


def with_cpu_seconds(key: str, entry: dict, models: list[dict], table) -> dict:
    """``entry`` (manifest key ``key``) with ``train_cpu_s`` on each trained model record and ``collect_cpu_s``, from
    ``table`` (:func:`spent`) where the ledger knows them.

    ``models``: the cache header's model records (their ``path`` names the run, so the train job, that made each).
    A model's ``train_cpu_s`` is its train job's attempts plus, for a ranking (difficulty-aware) model, its
    difficulty folds' (the ledger's ``<train job>/fold<k>``, k = 0, 1, ...; at least two); ``collect_cpu_s`` is the
    set's collect job, which collects cal and test together (the same number on both entries). A number is written
    only where every job it sums has a done attempt and every attempt's CPU is known; where an attempt of one was
    killed (state ``killed``), ``train_cpu_unknown`` / ``collect_cpu_unknown`` says so (the killed jobs) and
    ``train_cpu_s_min`` / ``collect_cpu_s_min`` gives the known attempts' sum plus what the killed ones were seen
    to use (their ``cpu_s_at_least``), a lower bound, instead. Borrowed models get none, and an entry whose key is
    not a per-seed zoo cache's (``<task>/<set>-s<seed>-<split>``) is returned as it is.
    """
    m = cache_key_parts(key)
    if not m or entry.get("kind", "classification") != "classification":
        return entry  # not a per-seed zoo cache: no job of the runner made it
    if len(models) != len(entry.get("models", [])):
        raise ValueError(f"{key}: the cache has {len(models)} models, its manifest entry {len(entry.get('models', []))}")
    out = {**entry, "models": [dict(r) for r in entry["models"]]}
    for rec, model in zip(out["models"], models):
        if rec.get("borrowed_from") or model.get("borrowed_from"):
            continue
        task, member, seed = _run_of(model["path"])
        if task != m["task"] or seed != m["seed"]:
            raise ValueError(f"{key}: model {rec.get('name')!r} was trained in {model['path']}, not a "
                             f"{m['task']} seed {m['seed']} run")
        job = job_id(task, member, seed)
        jobs = [job]
        if rec.get("objective") == "ranking":  # its folds 0, 1, ..., k-1 (k >= 2), none missing
            folds = {j for j in table.index if kind_of(j) == "fold" and j.rsplit("/", 1)[0] == job}
            want = [job_id(task, member, seed, "fold", k) for k in range(len(folds))]
            if len(folds) < 2 or folds != set(want):
                continue
            jobs += want
        _put_cpu(rec, "train", table, jobs)
    _put_cpu(out, "collect", table, [job_id(m["task"], m["set"], m["seed"], "collect")])
    return out


def _put_cpu(rec: dict, part: str, table, jobs: list[str]) -> None:
    """Write ``<part>_cpu_s`` (``jobs``' CPU seconds) on ``rec`` where the ledger knows it; where an attempt was
    killed, ``<part>_cpu_unknown`` (why) and ``<part>_cpu_s_min`` (:func:`_killed`'s lower bound) instead
    (a stale ``<part>_cpu_s`` is dropped)."""
    cpu, killed = _finished_cpu(table, jobs), _killed(table, jobs)
    if killed is not None:
        rec.pop(f"{part}_cpu_s", None)
        rec[f"{part}_cpu_unknown"], rec[f"{part}_cpu_s_min"] = killed
    elif cpu is not None:
        rec[f"{part}_cpu_s"] = cpu
