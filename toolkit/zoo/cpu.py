"""CPU seconds the CPU zoo spent, per job, as the manifest records them (``train_cpu_s`` per trained model,
``collect_cpu_s`` per entry, written by ``scripts/gpu_zoo.py --merge`` from the runner's ledger,
:func:`toolkit.zoo.ledger.with_cpu_seconds`). Analysis side: pandas, no torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.zoo.ledger import cache_key, cache_key_parts

SECTION = "cpu-table"
COLUMNS = ["task", "set", "seed", "part", "member", "device", "cpu_s", "cpu_s_min", "why"]


def _cpu_zoo(key: str, entry: dict) -> bool:
    """A per-seed cache of the CPU zoo: a ``<task>/<set>-s<seed>-<split>`` classification entry with ``train_seed``
    whose every trained (not borrowed) model ran on ``device`` cpu."""
    trained = [r for r in entry.get("models", []) if not r.get("borrowed_from")]
    return (cache_key_parts(key) is not None and entry.get("kind", "classification") == "classification"
            and "train_seed" in entry and bool(trained) and all(r.get("device") == "cpu" for r in trained))


def cpu_spent(data_dir: str | os.PathLike = "data") -> pd.DataFrame:
    """One row per job the CPU zoo ran for a shipped per-seed set (task, set, training seed): ``part`` "train" (one
    per trained member, its difficulty folds included) or "collect" (one per set: a collect job makes both the cal
    and the test cache, so it is read from the test entry once). ``cpu_s``: CPU seconds summed over the job's
    attempts, NaN where the manifest has none (an attempt cut off by a kill, or a run older than the ledger's logs);
    ``why`` and ``cpu_s_min``: the manifest's reason for a NaN (``train_cpu_unknown``/``collect_cpu_unknown``: an
    attempt killed with its runner) and the lower bound it knows (``train_cpu_s_min``/``collect_cpu_s_min``: the
    known attempts, plus the CPU seconds a killed attempt's runner last logged it had used, where its log says,
    :func:`toolkit.zoo.ledger.with_cpu_seconds`), None and NaN where it gives none. Borrowed members (``borrowed_from``) were not trained by the
    zoo and have no row."""
    path = Path(data_dir) / "MANIFEST.json"
    caches = json.loads(path.read_text())["caches"]
    rows = []
    for key, e in sorted(caches.items()):
        m = cache_key_parts(key)
        if not _cpu_zoo(key, e) or m["split"] != "test":
            continue
        cal = caches.get(cache_key(m["task"], m["set"], m["seed"], "cal"))
        if cal is not None and cal.get("collect_cpu_s") != e.get("collect_cpu_s"):
            raise ValueError(f"{path}: {key} and its cal twin record different collect_cpu_s "
                             f"({e.get('collect_cpu_s')} vs {cal.get('collect_cpu_s')}), yet one collect job makes "
                             f"both; re-merge the set (scripts/gpu_zoo.py --merge)")
        where = {"task": m["task"], "set": m["set"], "seed": int(m["seed"])}
        rows += [{**where, "part": "train", "member": r["name"], "device": r["device"],
                  "cpu_s": r.get("train_cpu_s", np.nan), "cpu_s_min": r.get("train_cpu_s_min", np.nan),
                  "why": r.get("train_cpu_unknown")}
                 for r in e["models"] if not r.get("borrowed_from")]
        rows.append({**where, "part": "collect", "member": None, "device": "cpu",
                     "cpu_s": e.get("collect_cpu_s", np.nan), "cpu_s_min": e.get("collect_cpu_s_min", np.nan),
                     "why": e.get("collect_cpu_unknown")})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame[["cpu_s", "cpu_s_min"]] = frame[["cpu_s", "cpu_s_min"]].astype(float)
    return frame


def cpu_totals(spent: pd.DataFrame) -> pd.DataFrame:
    """Per set (task, set, seed) of :func:`cpu_spent`: ``known_cpu_s`` (sum of the known parts and of the unknown
    parts' lower bounds, ``cpu_s_min``), ``n_unknown`` (parts without a number), ``cpu_s`` (the set's total, NaN
    unless every part is known) and ``cpu_hours`` (the same in hours)."""
    keys = [spent["task"], spent["set"], spent["seed"]]
    out = pd.DataFrame({"known_cpu_s": spent["cpu_s"].fillna(spent["cpu_s_min"]).groupby(keys).sum().astype(float),
                        "n_unknown": spent["cpu_s"].isna().groupby(keys).sum().astype(int)})
    out["cpu_s"] = out["known_cpu_s"].where(out["n_unknown"] == 0)
    out["cpu_hours"] = out["cpu_s"] / 3600
    return out


def _s(x: float, at_least: float = np.nan) -> str:
    """``x`` (CPU s) as the table writes it: "–" where unknown, or "≥ <at_least>" where a lower bound is known."""
    if np.isnan(x):
        return "–" if np.isnan(at_least) else f"≥ {at_least:,.1f}"
    return f"{x:,.1f}"


def cpu_table(data_dir: str | os.PathLike = "data") -> str:
    """Markdown table of :func:`cpu_spent`: one row per (task, set, seed) with each trained member's train CPU s and
    device, the collect CPU s, the set's total CPU s and CPU-hours ("≥" a lower bound where a part is unknown, shown
    as "–", or as "≥ x" where the manifest knows a lower bound x), then a line with the CPU-hours of the fully known
    sets and how many sets have unknown parts, and one line per unknown part whose cause the manifest records
    (``why`` of :func:`cpu_spent`)."""
    spent = cpu_spent(data_dir)
    totals = cpu_totals(spent)
    lines = ["| task | set | seed | trained members: CPU s (device) | collect CPU s | total CPU s | CPU-hours |",
             "|---|---|---|---|---|---|---|"]
    for (task, s, seed), t in totals.iterrows():
        parts = spent[(spent["task"] == task) & (spent["set"] == s) & (spent["seed"] == seed)]
        train = parts[parts["part"] == "train"]
        members = "; ".join(f"{r.member} {_s(r.cpu_s, r.cpu_s_min)} ({r.device})" for r in train.itertuples())
        collect = next(_s(r.cpu_s, r.cpu_s_min) for r in parts[parts["part"] == "collect"].itertuples())
        if t["n_unknown"] == 0:
            total, hours = _s(t["cpu_s"]), f"{t['cpu_hours']:.2f}"
        elif t["n_unknown"] < len(parts) or parts["cpu_s_min"].notna().any():
            total, hours = f"≥ {_s(t['known_cpu_s'])}", f"≥ {t['known_cpu_s'] / 3600:.2f}"
        else:
            total, hours = "–", "–"
        lines.append(f"| {task} | {s} | {seed} | {members} | {collect} | {total} | {hours} |")
    known = totals["n_unknown"] == 0
    lines.append("")
    lines.append(f"Total: {totals.loc[known, 'cpu_s'].sum() / 3600:.2f} CPU-hours over the sets with every part "
                 f"known ({int(known.sum())}); sets with unknown parts: {int((~known).sum())}, whose known parts add "
                 f"{totals.loc[~known, 'known_cpu_s'].sum() / 3600:.2f} CPU-hours (a lower bound).")
    why = spent[spent["cpu_s"].isna() & spent["why"].notna()]
    lines += [""] * (len(why) > 0) + [f"- unknown: {r.task} {r.set} {r.seed} {r.member or 'collect'}: {r.why}."
                                      for r in why.itertuples()]
    return "\n".join(lines)


def section(data_dir: str | os.PathLike = "data") -> str:
    """:func:`cpu_table` between its markers, as :func:`toolkit.zoo.readme.write` takes it."""
    from toolkit.zoo.readme import markers

    start, end = markers(SECTION)
    return f"{start}\n{cpu_table(data_dir)}\n{end}"
