"""The zoo runner's ledger (toolkit.zoo.ledger): every job attempt is kept across runner restarts, a job found
complete adds nothing, the CPU seconds are summed per job over its attempts, runner logs of runs made before the
ledger are read back once, and merge writes the sums into the manifest entries.

The jobs run in this process (workers=0) with the members' training replaced by a CPU burn that writes a finished
run folder (the runner's own bookkeeping, the CPU clock and the signal handling are the real ones).
"""

import importlib.util
import json
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from toolkit.zoo.ledger import (
    FOUND_COMPLETE_MAX_WALL_S,
    append_attempt,
    backfill,
    cache_key_parts,
    killed_attempts,
    kind_of,
    parse_runner_log,
    read_ledger,
    spent,
    with_cpu_seconds,
)


def _gpu_zoo():
    spec = importlib.util.spec_from_file_location("gpu_zoo", REPO / "scripts" / "gpu_zoo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _burn(seconds: float) -> None:
    """Use about ``seconds`` of this process's CPU."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


@pytest.fixture()
def fake_zoo(tmp_path, monkeypatch):
    """Members that burn CPU and write ``<run>/final`` (``plan[i]`` says what attempt i does: "fail", "kill" (a
    real SIGTERM to this process, as a time limit sends), else train to the end); a collect that writes both caches'
    files and manifest entries."""
    from toolkit.zoo import build as zoo_build
    from toolkit.zoo import update_manifest
    from toolkit.zoo.recipes import run_dir

    where = zoo_build.Where(out=tmp_path / "data", runs=tmp_path / "runs", logs=tmp_path / "logs")
    script: list[str] = []

    def fake_member(task, member, seed, where, log=print):
        out = run_dir(where.runs, task, member, seed)
        final = out / "final"
        if (final / "config.json").exists():
            return final
        what = script.pop(0) if script else "train"
        _burn(0.3)
        (out / "checkpoints" / "checkpoint-4").mkdir(parents=True, exist_ok=True)
        if what == "fail":
            raise RuntimeError("boom")
        if what == "kill":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler's SystemExit ends this
        _burn(0.2)
        final.mkdir(parents=True)
        (final / "train_meta.json").write_text("{}")
        (final / "config.json").write_text("{}")
        return final

    def fake_collect(task, s, seed, where, splits, log):
        _burn(0.15)
        for split in splits:
            key = f"{task}/{s}-s{seed}-{split}"
            (where.out / task).mkdir(parents=True, exist_ok=True)
            (where.out / f"{key}.parquet").write_bytes(b"")
            update_manifest(where.out, key, {"split": split})

    monkeypatch.setattr(zoo_build, "train_member", fake_member)
    monkeypatch.setattr(zoo_build, "collect_set", fake_collect)
    return where, script


def _run(where, jobs, log=None):
    from toolkit.zoo.jobs import run_jobs

    return run_jobs(jobs, where, workers=0, log=log or (lambda m: None))


def test_failed_killed_and_resumed_attempts_all_count(fake_zoo):
    """A failed attempt, one killed by SIGTERM (resumable), then the one that finishes: the ledger keeps all three
    across the runner's restarts, and spent() sums their CPU and wall seconds."""
    from toolkit.zoo.jobs import plan

    where, script = fake_zoo
    jobs = plan(["mrpc"], ["minilm6_me"], [42])
    script[:] = ["fail", "kill", "train"]
    status = _run(where, jobs)
    assert status["mrpc/minilm6_me-s42"]["state"] == "failed"
    first = (where.logs / "ledger.jsonl").read_bytes()
    with pytest.raises(SystemExit, match="signal 15"):
        _run(where, jobs)
    saved = json.loads((where.logs / "status.json").read_text())["jobs"]["mrpc/minilm6_me-s42"]
    assert saved["state"] == "stopped" and saved["cpu_s"] >= 0.3
    status = _run(where, jobs)
    assert {s["state"] for s in status.values()} == {"done"}
    assert (where.logs / "ledger.jsonl").read_bytes().startswith(first)  # a restart appends, never rewrites

    lines = [r for r in read_ledger(where.logs / "ledger.jsonl") if r["job"] == "mrpc/minilm6_me-s42"]
    assert [r["state"] for r in lines] == ["failed", "stopped", "done"]
    assert [r["resumed"] for r in lines] == [False, True, True]  # the kill left a checkpoint to continue from
    assert all(r["cpu_s"] >= 0.3 and r["wall_s"] >= r["cpu_s"] - 0.2 and r["kind"] == "train" for r in lines)
    assert lines[-1]["cpu_s"] >= 0.5 and {r["worker_pid"] for r in lines} == {os.getpid()}
    assert all(r["device"] == "cuda" and r["threads"] == 1 and r["started"].endswith("+00:00") for r in lines)
    table = spent(where.logs / "ledger.jsonl")
    row = table.loc["mrpc/minilm6_me-s42"]
    assert (row["attempts"], row["done"], row["cpu_unknown"]) == (3, 1, 0)
    assert row["cpu_s"] == pytest.approx(sum(r["cpu_s"] for r in lines), abs=0.051)
    assert row["wall_s"] == pytest.approx(sum(r["wall_s"] for r in lines), abs=0.051)
    assert table.loc["mrpc/minilm6_me-s42/collect", "attempts"] == 1


def test_a_job_found_complete_adds_nothing(fake_zoo):
    """A restart finds the training and the caches complete: "already done" without seconds, no ledger line."""
    from toolkit.zoo.jobs import plan

    where, _ = fake_zoo
    jobs = plan(["mrpc"], ["minilm6_me"], [42])
    _run(where, jobs)
    before = (where.logs / "ledger.jsonl").read_bytes()
    assert [r["state"] for r in read_ledger(where.logs / "ledger.jsonl")] == ["done", "done"]
    said = []
    status = _run(where, jobs, log=said.append)
    assert {s["state"] for s in status.values()} == {"already done"}
    assert not any(k in s for s in status.values() for k in ("cpu_s", "wall_s", "started"))
    assert (where.logs / "ledger.jsonl").read_bytes() == before
    saved = json.loads((where.logs / "status.json").read_text())
    assert saved["counts"] == {"already done": 2} and saved["ledger"] == str(where.logs / "ledger.jsonl")
    assert "[zoo] already done: mrpc/minilm6_me-s42 (found complete: no work)" in said
    assert parse_runner_log_lines(said) == []  # and a backfill from this log reads no work either


def parse_runner_log_lines(messages, tmp=None) -> list[dict]:
    """The records :func:`parse_runner_log` reads from the runner's log messages, written as scripts/gpu_zoo.py
    writes them (``f"{t:7.1f}s {m}"``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        log = Path(tmp or d) / "runner.log"
        log.write_text("".join(f"{12.5 * i:7.1f}s {m}\n" for i, m in enumerate(messages)))
        return parse_runner_log(log)


# ------------------------------------------------------------------------------------------------ backfill
RUNNER_LOG = """\
    5.4s [zoo] 108 jobs on cpu (cpu recipes), 2 workers, 1 thread(s) each, deadline none s
    5.4s [zoo] start: mrpc/minilm2_da-s42/fold0 (estimate 184 s)
   11.0s [zoo] done: mrpc/minilm2_da-s42/fold0 (5.6 s, 0.0 CPU s)
   11.2s [zoo] done: mrpc/minilm2_da-s42 (0.2 s, 0.0 CPU s)
  631.1s [zoo] done: mrpc/minilm6_da-s42/fold1 (619.8 s, 465.8 CPU s)
 4293.9s [zoo] done: mrpc/cascade_da-s42/collect (53.3 s, 21.4 CPU s)
 5000.0s [zoo] failed: mrpc/minilm6-s43 (40.0 s, 12.5 CPU s)
RuntimeError: boom
 5001.0s [zoo] failed: mrpc/minilm2-s43 (41.0 s)
worker process died (exit code -9)
 6000.0s [zoo] stopped: mrpc/minilm6-s44 (100.0 s)
 6348.7s [zoo] done: mrpc/minilm2-s44 (471.0 s, 215.7 CPU s)
 6400.0s [zoo] done: mrpc/minilm2-s45 (45.0 s, 0.0 CPU s)
 6500.0s [zoo] skipped: mrpc/cascade-s43/collect
 6600.0s [zoo] finished: {'done': 2}; status in /tmp/zoo/logs/status.json
"""


def test_backfill_reads_the_runner_log_format_once(tmp_path):
    log = tmp_path / "runner-4.log"
    log.write_text(RUNNER_LOG + "11:56:21     0.0s [zoo] done: mrpc/minilm6-s42 (100.0 s, 80.0 CPU s)\n")
    recs = parse_runner_log(log)
    got = [(r["job"], r["kind"], r["state"], r["wall_s"], r["cpu_s"], r["log_t"]) for r in recs]
    assert got == [("mrpc/minilm6_da-s42/fold1", "fold", "done", 619.8, 465.8, 631.1),
                   ("mrpc/cascade_da-s42/collect", "collect", "done", 53.3, 21.4, 4293.9),
                   ("mrpc/minilm6-s43", "train", "failed", 40.0, 12.5, 5000.0),
                   ("mrpc/minilm2-s43", "train", "failed", 41.0, None, 5001.0),
                   ("mrpc/minilm6-s44", "train", "stopped", 100.0, None, 6000.0),
                   ("mrpc/minilm2-s44", "train", "done", 471.0, 215.7, 6348.7),
                   # 0.0 CPU s but a wall past the found-complete bound: kept (work that the clock missed)
                   ("mrpc/minilm2-s45", "train", "done", 45.0, 0.0, 6400.0),
                   ("mrpc/minilm6-s42", "train", "done", 100.0, 80.0, 0.0)]
    assert 45.0 > FOUND_COMPLETE_MAX_WALL_S > 5.6
    assert {r["source"] for r in recs} == {"runner-4.log"} and all(r["started"] is None for r in recs)

    ledger = tmp_path / "logs" / "ledger.jsonl"
    gz = _gpu_zoo()
    assert gz.main(["--ledger-from-log", str(log), "--into", str(ledger)]) == 0
    assert read_ledger(ledger) == json.loads(json.dumps(recs))
    once = ledger.read_bytes()
    assert gz.main(["--ledger-from-log", str(log), "--into", str(ledger)]) == 0  # twice: nothing more
    assert ledger.read_bytes() == once
    with pytest.raises(SystemExit, match="ledger.jsonl"):
        gz.main(["--ledger-from-log", str(log), "--into", str(tmp_path)])
    row = spent(ledger).loc["mrpc/minilm2-s43"]
    assert (row["attempts"], row["done"], row["cpu_unknown"], row["wall_s"]) == (1, 0, 1, 41.0)


def test_backfill_of_a_ledger_runners_log_adds_nothing(fake_zoo, tmp_path):
    """The log lines of a runner that wrote the ledger itself read back as exactly its ledger's attempts (same job,
    wall and CPU seconds), so backfilling them adds nothing."""
    from toolkit.zoo.jobs import plan

    where, script = fake_zoo
    script[:] = ["fail"]
    said = []
    _run(where, plan(["mrpc"], ["minilm6_me"], [42, 43]), log=said.append)
    own = read_ledger(where.logs / "ledger.jsonl")
    read_back = parse_runner_log_lines(said, tmp_path)
    key = ("job", "state", "wall_s", "cpu_s")
    assert [tuple(r[k] for k in key) for r in read_back] == [tuple(r[k] for k in key) for r in own]
    assert len(own) == 3 and own[0]["state"] == "failed"  # s42 failed (its collect skipped), s43 trained, collected
    assert backfill(tmp_path / "runner.log", where.logs / "ledger.jsonl") == []
    # a worker that died has no CPU figure, in the log as in the ledger: still the same attempt
    append_attempt(where.logs / "ledger.jsonl", {"job": "mrpc/minilm6_me-s44", "state": "failed", "wall_s": 41.0,
                                                 "cpu_s": None, "source": "runner"})
    (tmp_path / "runner.log").write_text(" 5001.0s [zoo] failed: mrpc/minilm6_me-s44 (41.0 s)\nworker process died\n"
                                         " 5002.0s [zoo] failed: mrpc/minilm6_me-s44 (12.0 s)\n")
    assert [r["wall_s"] for r in backfill(tmp_path / "runner.log", where.logs / "ledger.jsonl")] == [12.0]


def test_a_torn_last_line_loses_only_itself(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    append_attempt(ledger, {"job": "mrpc/minilm2-s42", "state": "done", "wall_s": 10.0, "cpu_s": 5.0})
    with open(ledger, "a") as f:
        f.write('{"job": "mrpc/minilm6-s42", "sta')  # killed mid-write
    append_attempt(ledger, {"job": "mrpc/minilm6-s42", "state": "done", "wall_s": 20.0, "cpu_s": 7.5})
    with pytest.warns(UserWarning, match="line 2"):
        recs = read_ledger(ledger)
    assert [r["job"] for r in recs] == ["mrpc/minilm2-s42", "mrpc/minilm6-s42"]
    with pytest.raises(ValueError, match="lacks"):
        append_attempt(ledger, {"job": "x", "state": "done"})


def test_worker_cpu_from_proc_matches_the_process_clock():
    """A worker stopped before it reports is charged what /proc says it used: the same clock as process_time."""
    from toolkit.zoo.jobs import _proc_cpu_s

    if _proc_cpu_s(os.getpid()) is None:
        pytest.skip("no /proc here")
    a, p = _proc_cpu_s(os.getpid()), time.process_time()
    _burn(0.3)
    used, clock = _proc_cpu_s(os.getpid()) - a, time.process_time() - p
    assert used == pytest.approx(clock, abs=0.05) and used >= 0.25


# --------------------------------------------------------------------------------------------------- merge
def _run_folder(tmp_path, seed):
    """A run's OUT/data with per-seed cascade_da caches (models trained in OUT's runs, the last one borrowed)."""
    from toolkit.caches.classification import save_cache
    from toolkit.testing import random_cascade_cache
    from toolkit.zoo import update_manifest
    from toolkit.zoo.manifest import cache_entry

    data = tmp_path / "out" / "data"
    runs = tmp_path / "runs"
    for split in ("cal", "test"):
        c = random_cascade_cache(40, exits=(1, 1, 1), seed=seed, split=split)
        models = [{"name": "minilm-l2-da", "path": str(runs / "mrpc" / f"minilm2_da-s{seed}" / "final"),
                   "objective": "ranking"},
                  {"name": "minilm-l6", "path": str(runs / "mrpc" / f"minilm6-s{seed}" / "final"),
                   "objective": "joint"},
                  {"name": "mpnet", "path": "runs/mrpc/mpnet_me/final", "borrowed_from": "mrpc/mpnet_me-test"}]
        c = c._derived(meta={**c.meta, "task": "mrpc", "models": models,
                             "data": {"fingerprint": "synthetic", "files": {}, "split_seed": 0}})
        path = data / "mrpc" / f"cascade_da-s{seed}-{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_cache(c, path)
        update_manifest(data, f"mrpc/cascade_da-s{seed}-{split}", cache_entry(path, root=data.parent))
    return data


def test_merge_writes_cpu_seconds_from_the_ledger_and_leaves_the_rest(tmp_path):
    from toolkit.zoo import check_manifest

    data = _run_folder(tmp_path, 42)
    ledger = data.parent / "logs" / "ledger.jsonl"
    attempts = [("mrpc/minilm2_da-s42/fold0", "done", 100.0), ("mrpc/minilm2_da-s42/fold1", "stopped", 30.0),
                ("mrpc/minilm2_da-s42/fold1", "done", 70.0), ("mrpc/minilm2_da-s42", "done", 200.0),
                ("mrpc/minilm6-s42", "failed", 5.0), ("mrpc/minilm6-s42", "done", 400.0),
                ("mrpc/cascade_da-s42/collect", "done", 21.4), ("mrpc/cascade_da-s43/collect", "done", 99.0)]
    for job, state, cpu in attempts:
        append_attempt(ledger, {"job": job, "state": state, "wall_s": 2 * cpu, "cpu_s": cpu})
    target = tmp_path / "repo" / "data"
    gz = _gpu_zoo()
    assert gz.main(["--merge", str(data), "--into", str(target)]) == 0
    caches = json.loads((target / "MANIFEST.json").read_text())["caches"]
    for split in ("cal", "test"):
        e = caches[f"mrpc/cascade_da-s42-{split}"]
        assert [m.get("train_cpu_s") for m in e["models"]] == [400.0, 405.0, None]  # folds + train, every attempt
        assert e["collect_cpu_s"] == 21.4
    assert check_manifest(target) == []

    # a run without a ledger: its entries are merged as they are
    bare = _run_folder(tmp_path / "other", 43)
    src = json.loads((bare / "MANIFEST.json").read_text())["caches"]
    assert gz.main(["--merge", str(bare), "--into", str(target)]) == 0
    caches = json.loads((target / "MANIFEST.json").read_text())["caches"]
    for split in ("cal", "test"):
        key = f"mrpc/cascade_da-s43-{split}"
        assert caches[key] == {**src[key], "file": f"data/{key}.parquet"}
        assert "collect_cpu_s" not in caches[key] and not any("train_cpu_s" in m for m in caches[key]["models"])



def test_merge_reads_each_cache_footer_once(tmp_path, monkeypatch):
    """merge_manifest checks each cache and takes its model records (for the CPU seconds) from one read of its
    Parquet footer, not a second read_header of every file; the merged entries are the same."""
    import pyarrow.parquet as pq

    from toolkit.zoo.manifest import merge_manifest

    data = _run_folder(tmp_path, 42)
    append_attempt(data.parent / "logs" / "ledger.jsonl",
                   {"job": "mrpc/minilm6-s42", "state": "done", "wall_s": 8.0, "cpu_s": 4.0})
    reads = {}

    def counted(real):
        def read(path, *args, **kwargs):
            key = Path(path).resolve()
            reads[key] = reads.get(key, 0) + 1
            return real(path, *args, **kwargs)
        return read

    for name in ("ParquetFile", "read_schema", "read_metadata", "read_table"):
        monkeypatch.setattr(pq, name, counted(getattr(pq, name)))
    keys = merge_manifest(data, tmp_path / "into")
    assert reads == {(data / f"{k}.parquet").resolve(): 1 for k in keys} and len(keys) == 2
    caches = json.loads((tmp_path / "into" / "MANIFEST.json").read_text())["caches"]
    assert all([m.get("train_cpu_s") for m in caches[k]["models"]] == [None, 4.0, None] for k in keys)

def test_cpu_seconds_are_written_only_where_every_job_is_known(tmp_path):
    """No partial sums: a model whose folds the ledger lacks, or an attempt whose CPU is unknown, or a job with no
    finished attempt, gets no number; a model trained in another run is refused."""
    from toolkit.caches.io import read_header

    data = _run_folder(tmp_path, 42)
    key = "mrpc/cascade_da-s42-test"
    entry = json.loads((data / "MANIFEST.json").read_text())["caches"][key]
    models = read_header(data / f"{key}.parquet")["meta"]["models"]
    rec = [{"job": "mrpc/minilm2_da-s42", "state": "done", "wall_s": 1.0, "cpu_s": 1.0},  # no folds in the ledger
           {"job": "mrpc/minilm6-s42", "state": "stopped", "wall_s": 9.0, "cpu_s": None},  # unknown CPU
           {"job": "mrpc/minilm6-s42", "state": "done", "wall_s": 3.0, "cpu_s": 2.0},
           {"job": "mrpc/cascade_da-s42/collect", "state": "failed", "wall_s": 3.0, "cpu_s": 2.0}]  # never done
    out = with_cpu_seconds(key, entry, models, spent(rec))
    assert not any("train_cpu_s" in m for m in out["models"]) and "collect_cpu_s" not in out
    assert out["models"] is not entry["models"] and entry == json.loads((data / "MANIFEST.json").read_text())[
        "caches"][key]
    moved = [{**models[0], "path": str(tmp_path / "runs" / "mrpc" / "minilm2_da-s7" / "final")}, *models[1:]]
    with pytest.raises(ValueError, match="seed 42 run"):
        with_cpu_seconds(key, entry, moved, spent(rec))
    assert with_cpu_seconds("mrpc/cascade-test", entry, models, spent(rec)) == entry  # not a per-seed zoo cache


_NAME = st.text(st.sampled_from("abcz019_-s"), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(task=_NAME.filter(lambda t: "/" not in t), s=st.one_of(st.sampled_from(["cascade_da", "minilm6_me"]), _NAME),
       seed=st.integers(0, 10_000), split=st.sampled_from(["cal", "test", "val"]))
def test_cache_key_parts_reads_back_every_key_the_zoo_writes(task, s, seed, split):
    """The ledger's (and toolkit.zoo.cpu's) reading of a manifest key is the inverse of ledger.cache_key, which the zoo
    writes it with, even for set names holding "-s<digits>"; fails if the two drift apart."""
    from toolkit.zoo.ledger import cache_key

    assert cache_key_parts(cache_key(task, s, seed, split)) == {"task": task, "set": s, "seed": str(seed),
                                                                "split": split}


@pytest.mark.parametrize("key", ["sst2/cascade-cal", "sst2/cascade-s42", "cascade-s42-cal", "sst2/cascade-s42-cal/x",
                                 "sst2/llm/smollm2-s0-test-gen/x", ""])
def test_cache_key_parts_refuses_other_keys(key):
    assert cache_key_parts(key) is None


def test_the_ledger_reads_the_job_ids_the_runner_plans():
    """with_cpu_seconds finds every job build.plan names for a set (Job.id: each member's train job, a ranking
    member's difficulty folds, the collect job) and kind_of reads each id's kind back: fails if the runner's job ids
    and the ledger's drift apart."""
    from toolkit.zoo.build import SETS, plan
    from toolkit.zoo.recipes import DIFFICULTY, run_dir

    jobs = plan(["mrpc"], ["cascade_da", "minilm6_me", "cascade"], [42])
    assert all(kind_of(j.id) == j.kind for j in jobs) and {"train", "fold", "collect"} <= {j.kind for j in jobs}
    cpu = {j.id: 2.0 ** i for i, j in enumerate(jobs)}  # every sum of distinct jobs is a distinct number
    table = spent([{"job": j, "state": "done", "wall_s": 1.0, "cpu_s": c} for j, c in cpu.items()])
    for s in ("cascade_da", "cascade"):
        models = [{"name": m, "path": str(run_dir("runs", "mrpc", m, 42) / "final"),
                   "objective": "ranking" if m in DIFFICULTY else "joint"} for m in SETS[s]]
        out = with_cpu_seconds(f"mrpc/{s}-s42-test", {"models": models}, models, table)
        for rec in out["models"]:
            mine = [j.id for j in jobs if j.name == rec["name"] and j.kind in ("train", "fold")]
            assert rec["train_cpu_s"] == sum(cpu[j] for j in mine) and len(mine) == (3 if rec["name"] in DIFFICULTY
                                                                                       else 1)
        assert out["collect_cpu_s"] == cpu[next(j.id for j in jobs if j.kind == "collect" and j.name == s)]


# ------------------------------------------------------------------------------ attempts killed with the runner
# runner-4's runner was killed hard while mrpc/minilm6_da-s44/fold1 and sst2/minilm2-s42 ran (no end lines);
# runner.log resumes the fold (a later start) and is itself still running sst2/minilm6-s42 (live: no line)
KILLED_LOG = """\
    5.4s [zoo] 108 jobs on cpu (cpu recipes), 2 workers, 1 thread(s) each, deadline none s
 9042.7s [zoo] start: mrpc/minilm6_da-s44/fold1 (estimate 513 s)
 9100.0s [zoo] start: mrpc/minilm6_da-s44/fold0 (estimate 513 s)
 9425.1s [zoo] done: mrpc/minilm6_da-s44/fold0 (325.1 s, 300.0 CPU s)
 9425.1s [zoo] start: sst2/minilm2-s42 (estimate 332 s)
 9500.0s [zoo] status: 2 running
"""
RESUMING_LOG = """\
    5.7s [zoo] 88 jobs on cpu (cpu recipes), 2 workers, 1 thread(s) each, deadline none s
    5.7s [zoo] start: mrpc/minilm6_da-s44/fold0 (estimate 513 s)
   11.3s [zoo] already done: mrpc/minilm6_da-s44/fold0 (found complete: no work)
   11.5s [zoo] start: mrpc/minilm6_da-s44/fold1 (estimate 513 s)
  546.3s [zoo] done: mrpc/minilm6_da-s44/fold1 (534.8 s, 334.3 CPU s)
  546.3s [zoo] start: sst2/minilm6-s42 (estimate 955 s)
"""


def _logs(tmp_path, **texts) -> list[Path]:
    out = []
    for name, text in texts.items():
        (tmp_path / f"{name}.log").write_text(text)
        out.append(tmp_path / f"{name}.log")
    return out


def test_an_attempt_killed_with_its_runner_is_read_back_once_from_its_restart(tmp_path):
    """A start with no end that a later log starts again is a killed attempt: recorded with unknown seconds (wall
    at least its log's last timestamp minus its start), counted by spent as an attempt of unknown CPU; a start that
    nothing follows (a job running now, or killed in the last log) is not; backfilling again adds nothing."""
    logs = _logs(tmp_path, **{"runner-4": KILLED_LOG, "runner": RESUMING_LOG})
    ledger = tmp_path / "logs" / "ledger.jsonl"
    added = backfill(logs, ledger)
    killed = [r for r in added if r["state"] == "killed"]
    assert killed == [{"job": "mrpc/minilm6_da-s44/fold1", "kind": "fold", "state": "killed", "started": None,
                       "wall_s": None, "cpu_s": None, "worker_pid": None, "device": None, "threads": None,
                       "resumed": None, "source": "runner-4.log", "log_t": 9042.7, "wall_s_min": 457.3,
                       "restart_t": None}]
    assert [(r["job"], r["state"]) for r in added] == [("mrpc/minilm6_da-s44/fold0", "done"),
                                                       ("mrpc/minilm6_da-s44/fold1", "killed"),
                                                       ("mrpc/minilm6_da-s44/fold1", "done")]
    assert read_ledger(ledger) == added
    once = ledger.read_bytes()
    assert backfill(logs, ledger) == [] and ledger.read_bytes() == once  # twice: nothing more
    gz = _gpu_zoo()
    assert gz.main(["--ledger-from-log", *map(str, logs), "--into", str(ledger)]) == 0
    assert ledger.read_bytes() == once
    row = spent(ledger).loc["mrpc/minilm6_da-s44/fold1"]
    assert (row["attempts"], row["done"], row["killed"], row["cpu_unknown"], row["cpu_s"], row["wall_s"]) == (
        2, 1, 1, 1, 334.3, 534.8)
    assert spent(ledger).loc["mrpc/minilm6_da-s44/fold0", "killed"] == 0

    # sst2/minilm2-s42 is restarted by the next runner's log: killed, though it started at runner-4's last job line
    logs += _logs(tmp_path, **{"runner-6": "   11.7s [zoo] start: sst2/minilm2-s42 (estimate 332 s)\n"})
    new = backfill(logs, ledger)
    assert [(r["job"], r["source"], r["log_t"], r["wall_s_min"]) for r in new] == [
        ("sst2/minilm2-s42", "runner-4.log", 9425.1, 74.9)]
    assert backfill(logs, ledger) == []


def test_an_attempt_started_again_in_its_own_log_is_killed(tmp_path):
    """Killed and resumed within one log (a start, no end, a later start of the same job): recorded with its
    restart's time and no wall bound; read again, it adds nothing."""
    text = ("   11.5s [zoo] start: sst2/minilm6_me-s42 (estimate 955 s)\n"
            "   20.0s [zoo] start: sst2/minilm6_me-s42 (estimate 955 s)\n"
            " 1238.8s [zoo] done: sst2/minilm6_me-s42 (1218.8 s, 693.4 CPU s)\n"
            " 1238.8s [zoo] start: sst2/minilm6_me-s43 (estimate 955 s)\n")
    (log,) = _logs(tmp_path, runner=text)
    ledger = tmp_path / "ledger.jsonl"
    added = backfill([log], ledger)
    got = [(r["job"], r["state"], r["log_t"], r.get("restart_t"), r.get("wall_s_min"), r["cpu_s"]) for r in added]
    assert got == [("sst2/minilm6_me-s42", "done", 1238.8, None, None, 693.4),
                   ("sst2/minilm6_me-s42", "killed", 11.5, 20.0, None, None)]
    assert not any(r["job"] == "sst2/minilm6_me-s43" for r in read_ledger(ledger))  # running now: no line
    assert backfill([log], ledger) == []
    assert spent(ledger).loc["sst2/minilm6_me-s42", ["attempts", "killed", "cpu_unknown"]].tolist() == [2, 1, 1]


def test_a_set_with_a_killed_attempt_is_a_lower_bound_in_the_cpu_table(tmp_path):
    """From the runner logs to docs' CPU table: a member whose difficulty fold lost an attempt to a kill gets no
    train_cpu_s but the reason and its known attempts' sum, so the table shows the set as a lower bound ("≥") and
    says why; the fully known members and the collect keep their exact sums."""
    from toolkit.zoo import cpu_table

    logs = _logs(tmp_path, **{"runner-4": KILLED_LOG, "runner": RESUMING_LOG + (
        "  900.0s [zoo] start: mrpc/minilm6_da-s44 (estimate 1073 s)\n"
        " 1900.0s [zoo] done: mrpc/minilm6_da-s44 (1000.0 s, 900.0 CPU s)\n"
        " 1900.0s [zoo] start: mrpc/minilm2-s44 (estimate 300 s)\n"
        " 2100.0s [zoo] done: mrpc/minilm2-s44 (200.0 s, 150.0 CPU s)\n"
        " 2100.0s [zoo] start: mrpc/cascade_da-s44/collect (estimate 58 s)\n"
        " 2130.0s [zoo] done: mrpc/cascade_da-s44/collect (30.0 s, 21.7 CPU s)\n")})
    ledger = tmp_path / "ledger.jsonl"
    backfill(logs, ledger)
    models = [{"name": "minilm-l2", "path": "runs/mrpc/minilm2-s44/final", "objective": "joint", "device": "cpu"},
              {"name": "minilm-l6-da", "path": "runs/mrpc/minilm6_da-s44/final", "objective": "ranking",
               "device": "cpu"}]
    caches = {}
    for split in ("cal", "test"):
        key = f"mrpc/cascade_da-s44-{split}"
        caches[key] = with_cpu_seconds(key, {"split": split, "train_seed": 44, "models": models}, models,
                                       spent(ledger))
    l2, l6 = caches["mrpc/cascade_da-s44-test"]["models"]
    assert l2["train_cpu_s"] == 150.0 and caches["mrpc/cascade_da-s44-test"]["collect_cpu_s"] == 21.7
    assert "train_cpu_s" not in l6 and l6["train_cpu_s_min"] == 300.0 + 334.3 + 900.0
    assert l6["train_cpu_unknown"] == "1 attempt of mrpc/minilm6_da-s44/fold1 killed with its runner (no CPU figure)"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "MANIFEST.json").write_text(json.dumps({"caches": caches}))
    assert cpu_table(tmp_path / "data").splitlines()[2:] == [
        "| mrpc | cascade_da | 44 | minilm-l2 150.0 (cpu); minilm-l6-da ≥ 1,534.3 (cpu) | 21.7 | ≥ 1,706.0 "
        "| ≥ 0.47 |",
        "",
        "Total: 0.00 CPU-hours over the sets with every part known (0); sets with unknown parts: 1, whose known parts "
        "add 0.47 CPU-hours (a lower bound).",
        "",
        "- unknown: mrpc cascade_da 44 minilm-l6-da: 1 attempt of mrpc/minilm6_da-s44/fold1 killed with its runner "
        "(no CPU figure)."]
    # a stale number from an earlier merge (made before the kill was read back) does not survive
    stale = [{**models[0]}, {**models[1], "train_cpu_s": 1534.3}]
    out = with_cpu_seconds("mrpc/cascade_da-s44-test", {"train_seed": 44, "models": stale}, models, spent(ledger))
    assert "train_cpu_s" not in out["models"][1] and out["models"][1]["train_cpu_s_min"] == 1534.3


_EVENT = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["start", "done", "failed", "already done"]))


@settings(max_examples=60, deadline=None)
@given(logs=st.lists(st.lists(_EVENT, max_size=8), min_size=1, max_size=3))
def test_killed_attempts_match_a_brute_force_reading(tmp_path_factory, logs):
    """On any sequence of job lines over up to three logs, the killed attempts are exactly the starts whose next
    line of the same job in their log is a start, or which have none there and a start or "already done" of the job
    in a later log (brute force, line by line); backfilling them twice adds nothing."""
    tmp = tmp_path_factory.mktemp("logs")
    paths, want = [], []
    for i, events in enumerate(logs):
        lines = []
        for n, (job, event) in enumerate(events):
            t = 10.0 * (n + 1)
            tail = {"start": " (estimate 1 s)", "already done": " (found complete: no work)"}.get(
                event, f" ({t} s, {t} CPU s)")
            lines.append(f"{t:7.1f}s [zoo] {event}: mrpc/{job}-s42{tail}")
        paths.append(tmp / f"runner-{i}.log")
        paths[-1].write_text("".join(f"{line}\n" for line in lines))
        for n, (job, event) in enumerate(events):
            if event != "start":
                continue
            after = [e for j, e in events[n + 1:] if j == job]
            later = [e for other in logs[i + 1:] for j, e in other if j == job and e in ("start", "already done")]
            if (after and after[0] == "start") or (not after and later):
                want.append((f"runner-{i}.log", f"mrpc/{job}-s42", 10.0 * (n + 1)))
    got = [(r["source"], r["job"], r["log_t"]) for per_log in killed_attempts(paths) for r in per_log]
    assert got == want
    ledger = tmp / "ledger.jsonl"
    assert sorted((r["source"], r["job"], r["log_t"]) for r in backfill(paths, ledger) if r["state"] == "killed") == \
        sorted(want)
    assert backfill(paths, ledger) == []
