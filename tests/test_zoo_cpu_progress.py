"""The zoo runner's progress lines (``[zoo] cpu: <job> <s> CPU s so far``, toolkit.zoo.ledger.progress_line): the
runner logs them while a job runs, in-process and from worker processes, and the ledger backfill turns a killed
attempt's last one into a lower bound on its CPU seconds, which the manifest and the docs' CPU table carry; logs
without them read as before. A log cut mid-line by the kill still parses."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.zoo.ledger import (
    backfill,
    job_id,
    killed_attempts,
    parse_progress,
    progress_line,
    spent,
    with_cpu_seconds,
)

JOB = "mrpc/minilm6_da-s44/fold1"
# a runner killed while JOB ran (its last line cut by the kill), and the next runner's log, which starts JOB again
KILLED = f"""\
    5.4s [zoo] 108 jobs on cpu (cpu recipes), 2 workers, 1 thread(s) each, deadline none s
 9042.7s [zoo] start: {JOB} (estimate 184 s)
 9102.7s [zoo] cpu: {JOB} 58.9 CPU s so far
 9162.8s [zoo] cpu: {JOB} 117.6 CPU s so far
 9222.8s [zoo] cpu: {JOB} 176.2 CP"""
RESTART = f"""\
    5.5s [zoo] 23 jobs on cpu (cpu recipes), 2 workers, 1 thread(s) each, deadline none s
   11.2s [zoo] start: {JOB} (estimate 184 s)
  345.5s [zoo] done: {JOB} (334.3 s, 334.3 CPU s)
  345.5s [zoo] start: mrpc/minilm6_da-s44 (estimate 1073 s)
 1345.5s [zoo] done: mrpc/minilm6_da-s44 (1000.0 s, 900.0 CPU s)
 1345.5s [zoo] start: mrpc/minilm6_da-s44/fold0 (estimate 184 s)
 1645.5s [zoo] done: mrpc/minilm6_da-s44/fold0 (300.0 s, 300.0 CPU s)
 1645.5s [zoo] start: mrpc/cascade_da-s44/collect (estimate 58 s)
 1675.5s [zoo] done: mrpc/cascade_da-s44/collect (30.0 s, 21.7 CPU s)
"""
MODELS = [{"name": "minilm-l6-da", "path": "runs/mrpc/minilm6_da-s44/final", "objective": "ranking",
           "device": "cpu"}]
_JOBS = st.builds(lambda t, n, s, k: job_id(t, n, s, "fold", k) if k is not None else job_id(t, n, s),
                  st.sampled_from(["sst2", "mrpc", "agnews"]), st.sampled_from(["minilm6_me", "minilm2_da"]),
                  st.integers(0, 99), st.none() | st.integers(0, 4))


def _logs(tmp_path, **texts):
    out = []
    for name, text in texts.items():
        (tmp_path / f"{name}.log").write_text(text)
        out.append(tmp_path / f"{name}.log")
    return out


@settings(max_examples=100, deadline=None)
@given(_JOBS, st.floats(0, 1e6, allow_nan=False), st.floats(0, 1e5, allow_nan=False), st.booleans())
def test_progress_line_round_trip_and_every_cut_is_refused(job, cpu, t, clock):
    """A progress line as the runner logs it (``<t>s`` stamp, optionally after a clock) reads back to its job and
    CPU s (to the 0.1 s it is written with); a line cut anywhere short of its end reads as nothing."""
    line = ("12:00:01 " if clock else "") + f"{t:7.1f}s " + progress_line(job, cpu)
    got = parse_progress(line)
    assert got == (float(f"{t:.1f}"), job, float(f"{cpu:.1f}"))
    assert all(parse_progress(line[:k]) is None for k in range(len(line)))


def test_progress_line_refuses_what_cannot_be_read_back():
    for cpu in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="CPU seconds of mrpc/minilm2-s42"):
            progress_line("mrpc/minilm2-s42", cpu)
    with pytest.raises(ValueError, match="one word"):
        progress_line("mrpc/minilm2 s42", 1.0)


def test_a_killed_attempt_with_progress_lines_is_a_lower_bound_in_the_cpu_table(tmp_path):
    """The killed attempt's last whole progress line (117.6: the next was cut by the kill) is its cpu_s_at_least;
    the member's train_cpu_s_min adds it to the known attempts, the reason says it, and the table's total is a
    tighter lower bound. The same logs without progress lines give today's record and text."""
    from toolkit.zoo import cpu_table

    def table(killed_log: str, where) -> tuple[dict, list[str]]:
        where.mkdir()
        backfill(_logs(where, **{"runner-4": killed_log, "runner": RESTART}), where / "ledger.jsonl")
        caches = {}
        for split in ("cal", "test"):
            key = f"mrpc/cascade_da-s44-{split}"
            caches[key] = with_cpu_seconds(key, {"split": split, "train_seed": 44, "models": MODELS}, MODELS,
                                           spent(where / "ledger.jsonl"))
        (where / "data").mkdir()
        (where / "data" / "MANIFEST.json").write_text(json.dumps({"caches": caches}))
        killed = [r for r in map(json.loads, (where / "ledger.jsonl").read_text().splitlines())
                  if r["state"] == "killed"]
        return killed, caches["mrpc/cascade_da-s44-test"]["models"][0], cpu_table(where / "data").splitlines()

    (rec,), l6, lines = table(KILLED, tmp_path / "with")
    assert rec["cpu_s_at_least"] == 117.6 and rec["cpu_s"] is None and rec["wall_s_min"] == 180.1
    assert l6["train_cpu_s_min"] == pytest.approx(334.3 + 900.0 + 300.0 + 117.6) and "train_cpu_s" not in l6
    why = f"1 attempt of {JOB} killed with its runner after >= 117.6 CPU s"
    assert l6["train_cpu_unknown"] == why
    assert lines[2] == "| mrpc | cascade_da | 44 | minilm-l6-da ≥ 1,651.9 (cpu) | 21.7 | ≥ 1,673.6 | ≥ 0.46 |"
    assert lines[-1] == f"- unknown: mrpc cascade_da 44 minilm-l6-da: {why}."

    old = "\n".join(line for line in KILLED.splitlines() if "[zoo] cpu:" not in line) + "\n"
    (rec,), l6, lines = table(old, tmp_path / "without")
    assert "cpu_s_at_least" not in rec  # the record older logs always gave
    assert l6["train_cpu_s_min"] == pytest.approx(334.3 + 900.0 + 300.0)
    assert l6["train_cpu_unknown"] == f"1 attempt of {JOB} killed with its runner (no CPU figure)"
    assert lines[2] == "| mrpc | cascade_da | 44 | minilm-l6-da ≥ 1,534.3 (cpu) | 21.7 | ≥ 1,556.0 | ≥ 0.43 |"


def test_several_killed_attempts_say_what_they_add_together():
    """Two killed attempts of one job, one with a figure and one without, and another job's with one: the reason
    names how many had a figure, the bound adds the figures that exist."""
    from toolkit.zoo.ledger import _killed

    recs = [{"job": JOB, "state": "killed", "wall_s": None, "cpu_s": None, "cpu_s_at_least": 50.0},
            {"job": JOB, "state": "killed", "wall_s": None, "cpu_s": None},
            {"job": JOB, "state": "done", "wall_s": 10.0, "cpu_s": 8.0},
            {"job": "mrpc/minilm6_da-s44", "state": "killed", "wall_s": None, "cpu_s": None, "cpu_s_at_least": 7.5},
            {"job": "mrpc/minilm6_da-s44", "state": "done", "wall_s": 10.0, "cpu_s": 9.0}]
    t = spent(recs)
    assert t.loc[JOB, ["killed", "killed_bounded", "killed_cpu_s_min"]].tolist() == [2, 1, 50.0]
    assert _killed(t, [JOB]) == (f"2 attempts of {JOB} killed with its runner (1 after >= 50.0 CPU s together, 1 "
                                 f"with no CPU figure)", 58.0)
    assert _killed(t, ["mrpc/minilm6_da-s44"]) == (
        "1 attempt of mrpc/minilm6_da-s44 killed with its runner after >= 7.5 CPU s", 16.5)
    t = spent(recs[:1] + recs[2:])
    assert _killed(t, [JOB, "mrpc/minilm6_da-s44"])[0] == (
        f"2 attempts of {JOB}, mrpc/minilm6_da-s44 killed with its runner after >= 57.5 CPU s together")


_JUNK = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85"
                              "\u2028\u2029"), max_size=40).filter(lambda s: "[zoo]" not in s)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 1e5, allow_nan=False), max_size=5), st.lists(_JUNK, max_size=4), st.integers(0, 200),
       st.booleans())
def test_a_log_cut_anywhere_by_the_kill_parses(tmp_path_factory, figures, junk, cut, other_job):
    """A killed runner's log: a start, progress lines (some of another job), junk lines, and a last progress line
    cut anywhere by the kill. Backfilled with the restart, it gives one killed attempt whose cpu_s_at_least is its
    last whole progress line (absent where there is none); never an error."""
    tmp = tmp_path_factory.mktemp("cut")
    figures = sorted(round(f, 1) for f in figures)
    lines = [f"   10.0s [zoo] start: {JOB} (estimate 184 s)"]
    for i, f in enumerate(figures):
        lines.append(f"{70.0 + 60 * i:7.1f}s " + progress_line(JOB, f))
        if other_job:
            lines.append(f"{70.0 + 60 * i:7.1f}s " + progress_line("mrpc/minilm2-s44", 1e6))
        lines += junk[i:i + 1]
    last = f"{9999.9:7.1f}s " + progress_line(JOB, 2e6)
    cut = min(cut, len(last))
    text = "\n".join(lines) + "\n" + last[:cut]
    (killed,), _ = killed_attempts(_logs(tmp, **{"runner-4": text, "runner": RESTART}))
    whole = figures + ([2e6] if cut == len(last) else [])
    assert killed["job"] == JOB and killed.get("cpu_s_at_least") == (whole[-1] if whole else None)


# ------------------------------------------------------------------------------------------------ the runner
def _burn(seconds: float) -> None:
    """Use ``seconds`` of this process's CPU."""
    t = time.process_time()
    while time.process_time() - t < seconds:
        sum(range(1000))


def test_the_runner_logs_progress_in_process_and_a_kill_leaves_it_as_the_bound(tmp_path, monkeypatch):
    """workers=0: while a training job burns 1 CPU s the runner logs its CPU so far every 0.2 s (a handful of lines,
    not one per scheduler tick), rising, none above the done line's figure; the log cut after the last one (a kill)
    and restarted gives that figure as the killed attempt's bound. With cpu_every=None it logs none."""
    from toolkit.zoo import build as zoo_build
    from toolkit.zoo.jobs import plan, run_jobs

    (tmp_path / "train_meta.json").write_text("{}")
    monkeypatch.setattr(zoo_build, "train_member", lambda *a, **k: _burn(1.0) or tmp_path)
    monkeypatch.setattr(zoo_build, "collect_set", lambda *a, **k: None)
    where = zoo_build.Where(out=tmp_path / "data", runs=tmp_path / "runs", logs=tmp_path / "logs")
    t0, said = time.time(), []
    status = run_jobs(plan(["mrpc"], ["minilm6_me"], [42]), where, workers=0, cpu_every=0.2,
                      log=lambda m: said.append(f"{time.time() - t0:7.1f}s {m}"))
    train = "mrpc/minilm6_me-s42"
    got = [p for p in map(parse_progress, said) if p is not None]
    assert {p[1] for p in got} == {train}
    figures = [p[2] for p in got]
    wall = status[train]["wall_s"]
    assert 2 <= len(figures) <= wall / 0.2 + 1, said
    assert figures == sorted(figures) and figures[-1] <= status[train]["cpu_s"]
    assert figures[-1] >= 0.2  # it counts this process's CPU, not the wall (the burn is most of it)

    end = max(i for i, m in enumerate(said) if parse_progress(m))
    log = _logs(tmp_path, **{"runner-1": "\n".join(said[:end + 1]) + "\n" + said[end + 1][:9],
                             "runner": f"   11.2s [zoo] start: {train} (estimate 184 s)\n"})
    (killed,), _ = killed_attempts(log)
    assert killed["job"] == train and killed["cpu_s_at_least"] == figures[-1]

    said.clear()
    monkeypatch.setattr(zoo_build, "train_member", lambda *a, **k: _burn(0.4) or tmp_path)
    where = zoo_build.Where(out=tmp_path / "data2", runs=tmp_path / "runs2", logs=tmp_path / "logs2")
    run_jobs(plan(["mrpc"], ["minilm6_me"], [43]), where, workers=0, cpu_every=None, log=said.append)
    assert not [m for m in said if "[zoo] cpu:" in m] and any("[zoo] done:" in m for m in said)
    with pytest.raises(ValueError, match="cpu_every"):
        run_jobs([], where, cpu_every=0)


def test_a_worker_sends_its_cpu_so_far_then_its_result(tmp_path, monkeypatch):
    """A worker process (forked here, so it runs a stand-in job that burns 0.8 CPU s) sends its CPU so far every
    0.15 s while the job runs, rising, then the result, whose figure is no smaller; nothing after it."""
    import multiprocessing as mp

    from toolkit.zoo import jobs as zoo_jobs
    from toolkit.zoo.build import Where

    monkeypatch.setattr(zoo_jobs, "run_job", lambda job, where, log=print: _burn(0.8))
    where = Where(out=tmp_path / "data", runs=tmp_path / "runs", logs=tmp_path / "logs")
    ctx = mp.get_context("fork")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=zoo_jobs._worker_main, args=(child, where, 1, 0.15), daemon=True)
    proc.start()
    child.close()
    try:
        conn.send(zoo_jobs.plan(["mrpc"], ["minilm6_me"], [42])[0])
        got = []
        while not got or "cpu_so_far" in got[-1]:
            assert conn.poll(60), f"no message from the worker after {got}"
            got.append(conn.recv())
        conn.send(None)
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
    figures = [m["cpu_so_far"] for m in got[:-1]]
    assert got[-1]["ok"] and len(figures) >= 2 and figures == sorted(figures) and figures[-1] <= got[-1]["cpu_s"]
    assert proc.exitcode == 0
    with pytest.raises(EOFError):  # it has ended, and sent nothing after its result
        conn.recv()
