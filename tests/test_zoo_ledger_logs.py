"""Backfilling the zoo ledger from runner logs (toolkit.zoo.ledger.backfill, scripts/gpu_zoo.py --ledger-from-log):
a log read again under another name (the live runner.log, renamed runner-<n>.log) adds nothing, two runs' logs that
shared a name keep their own attempts, and logs passed out of order are refused where their start lines show it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from toolkit.zoo.ledger import backfill, check_log_order, log_started, read_ledger, spent, started_line

REPO = Path(__file__).resolve().parents[1]

# a runner killed (SIGKILL) while sst2/minilm6_me-s42 ran, restarted within the same log (a start, no end, a start)
LIVE = """\
    5.6s [zoo] 58 jobs on cpu (cpu recipes), 2 workers, 1 thread(s) each, deadline none s
   11.5s [zoo] start: sst2/minilm6_me-s42 (estimate 955 s)
   20.0s [zoo] start: sst2/minilm6_me-s42 (estimate 955 s)
 1238.8s [zoo] done: sst2/minilm6_me-s42 (1218.8 s, 693.4 CPU s)
 1238.8s [zoo] start: sst2/minilm6_me-s43 (estimate 955 s)
"""
GROWN = " 2200.0s [zoo] done: sst2/minilm6_me-s43 (961.2 s, 700.1 CPU s)\n"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc).timestamp()


def _gpu_zoo():
    spec = importlib.util.spec_from_file_location("gpu_zoo", REPO / "scripts" / "gpu_zoo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sha(text: str, lines: int) -> str:
    """The first 16 hex digits of the sha256 of ``text``'s first ``lines`` lines (each with its newline)."""
    return hashlib.sha256("".join(text.splitlines(keepends=True)[:lines]).encode()).hexdigest()[:16]


def test_a_live_log_renamed_and_read_again_adds_nothing(tmp_path):
    """runner.log is read while it runs, then renamed runner-6.log (it grew meanwhile) and read again beside the next
    run's runner.log: its killed attempt and its done ones are not recorded twice, only the new lines are added.
    The old code keyed a killed attempt by its log's name and recorded it again."""
    ledger = tmp_path / "logs" / "ledger.jsonl"
    live = _dated(tmp_path, "runner.log", T0)
    text = live.read_text()
    first = backfill([live], ledger)
    killed = [r for r in first if r["state"] == "killed"]
    assert [(r["job"], r["log_t"], r["restart_t"], r["log_sha"]) for r in killed] == [
        ("sst2/minilm6_me-s42", 11.5, 20.0, _sha(text, 3))]
    live.rename(tmp_path / "runner-6.log")
    (tmp_path / "runner-6.log").write_text(text + GROWN)
    _dated(tmp_path, "runner.log", T0 + 7200, "    5.5s [zoo] 23 jobs on cpu (cpu recipes), 2 workers\n")
    logs = [tmp_path / "runner-6.log", live]
    again = backfill(logs, ledger)
    assert [(r["job"], r["state"], r["source"]) for r in again] == [("sst2/minilm6_me-s43", "done", "runner-6.log")]
    assert backfill(logs, ledger) == []
    table = spent(ledger)
    assert table.loc["sst2/minilm6_me-s42", ["attempts", "done", "killed"]].tolist() == [2, 1, 1]
    assert len(read_ledger(ledger)) == 3
    # the same log passed twice under two names in one call: read once
    copy = tmp_path / "copy-of-runner-6.log"
    copy.write_text((tmp_path / "runner-6.log").read_text())
    other = tmp_path / "other.jsonl"
    assert len(backfill([tmp_path / "runner-6.log", copy], other)) == 3


def test_two_runs_live_logs_of_one_name_keep_their_own_kills(tmp_path):
    """Two runs both logged to runner.log and each restarted sst2/minilm6_me-s42 within its log at the same log
    seconds: two killed attempts, though source and log_t are equal (the old code dropped the second)."""
    ledger = tmp_path / "ledger.jsonl"
    log = _dated(tmp_path, "runner.log", T0)
    backfill([log], ledger)
    log = _dated(tmp_path, "runner.log", T0 + 3600, LIVE.replace("1218.8 s, 693.4", "1219.0 s, 690.0"))  # next run
    added = backfill([log], ledger)
    assert [(r["job"], r["state"], r["log_t"]) for r in added] == [("sst2/minilm6_me-s42", "done", 1238.8),
                                                                  ("sst2/minilm6_me-s42", "killed", 11.5)]
    assert spent(ledger).loc["sst2/minilm6_me-s42", ["attempts", "killed"]].tolist() == [4, 2]


def test_lines_backfilled_before_log_sha_existed_are_still_matched(tmp_path):
    """A ledger written by the backfill before log_sha (no such key) gains nothing when the same logs are read
    again: old lines compare by log name and time, as they did."""
    ledger = tmp_path / "ledger.jsonl"
    log = _dated(tmp_path, "runner-6.log", T0)
    old = backfill([log], tmp_path / "scratch.jsonl")
    assert all(r.get("log_sha") for r in old)
    ledger.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "log_sha"}) + "\n" for r in old))
    assert backfill([log], ledger) == []


def _dated(tmp_path, name: str, t0: float, body: str = LIVE) -> Path:
    p = tmp_path / name
    p.write_text(f"{0.0:7.1f}s {started_line(t0)}\n" + body)
    return p


def test_the_runner_start_line_reads_back_as_its_utc_time(tmp_path):
    t0 = datetime(2026, 12, 7, 23, 32, 5, tzinfo=timezone.utc).timestamp() + 0.4
    log = _dated(tmp_path, "runner.log", t0)
    assert log_started(log) == datetime(2026, 12, 7, 23, 32, 5, tzinfo=timezone.utc)
    bare = tmp_path / "old.log"
    bare.write_text(LIVE)
    assert log_started(bare) is None
    assert [r.get("log_sha") for r in backfill([bare], tmp_path / "l.jsonl")] == [None, None]  # as before: no key


def test_logs_out_of_order_are_refused_naming_them(tmp_path):
    """Logs whose start lines contradict the order given are refused, by backfill and the CLI, before anything is
    appended, naming both logs and the order to pass; logs without a start line pass (they cannot be placed)."""
    older = _dated(tmp_path, "runner-7.log", T0)
    newer = _dated(tmp_path, "runner.log", T0 + 3600)
    bare = tmp_path / "runner-6.log"
    bare.write_text(LIVE.replace("58 jobs", "70 jobs"))
    check_log_order([bare, older, newer])
    ledger = tmp_path / "logs" / "ledger.jsonl"
    with pytest.raises(ValueError, match="oldest first") as e:
        backfill([bare, newer, older], ledger)
    assert f"but {older} (runner started 2026-12-07T12:00:00+00:00) comes after {newer} (started " \
           f"2026-12-07T13:00:00+00:00); pass them in the order {older} {newer}" in str(e.value)
    assert not ledger.exists()
    with pytest.raises(SystemExit, match=f"--ledger-from-log: runner logs are read oldest first, but {older}"):
        _gpu_zoo().main(["--ledger-from-log", str(newer), str(older), "--into", str(ledger)])
    assert not ledger.exists()
    added = backfill([bare, older, newer], ledger)
    # one done (the same job, wall and CPU seconds in the three logs: one attempt, as a runner's own line and its log
    # line are), the restart within each log, and sst2/minilm6_me-s43 in bare and older, started again by the next
    assert sorted((r["source"], r["job"], r["state"]) for r in added) == [
        ("runner-6.log", "sst2/minilm6_me-s42", "done"), ("runner-6.log", "sst2/minilm6_me-s42", "killed"),
        ("runner-6.log", "sst2/minilm6_me-s43", "killed"), ("runner-7.log", "sst2/minilm6_me-s42", "killed"),
        ("runner-7.log", "sst2/minilm6_me-s43", "killed"), ("runner.log", "sst2/minilm6_me-s42", "killed")]
