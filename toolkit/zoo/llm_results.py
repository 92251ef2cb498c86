"""The committed results of the LLM runtime benchmarks, read into tables (one reader each, used by notebook 10 and
anyone comparing the real decoders with the offline predictions):

- :func:`cache_fidelity`: ``benchmarks/llm_cache_fidelity.json`` (``benchmarks/llm_cache_fidelity.py``): the real
  self-speculative decoder against the shipped token caches, output and accepted counts block for block;
- :func:`calm_fidelity`: ``benchmarks/llm_calm_fidelity.json``: the real CALM decoder against the teacher-forced
  estimate;
- :func:`runtime_runs`: ``benchmarks/bench_llm_*.json`` (``benchmarks/bench_llm_runtime.py --out``): measured
  wall-clock speed-ups next to the FLOPs predictions.

A file that is absent gives ``None`` (or an empty table): nothing is typed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.analysis.engine.results import _Table

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


@dataclass(frozen=True, repr=False, eq=False)
class Records(_Table):
    """Rows read from committed benchmark results: ``frame``, where from (``source``) and the run's header."""

    frame: pd.DataFrame
    source: str
    title: str
    meta: Mapping = field(default_factory=dict)


def _read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); rerun the benchmark that writes it") from None


def cache_fidelity(path=BENCH_DIR / "llm_cache_fidelity.json", *, chosen: Mapping | None = None) -> Records | None:
    """One row per (cache, family, pair, batch): prompts, tokens, ``tokens_equal``, ``accepted_equal``, blocks
    (and ``block_costs_equal_offline`` where measured), and ``chosen on cal here``: whether the pair is
    ``chosen[family]`` (a ``(layer, draft_length)``, e.g. from :func:`toolkit.analysis.llm.exits.choose_self_speculative`)."""
    path = Path(path)
    if not path.exists():
        return None
    d = _read(path)
    frame = pd.DataFrame(d["results"])
    chosen = {f: (int(c[0]), int(c[1])) for f, c in (chosen or {}).items()}
    frame["chosen on cal here"] = [chosen.get(r.family) == (int(r.layer), int(r.draft_length))
                                   for r in frame.itertuples()]
    return Records(frame, str(path), "real self-speculative decoder against the shipped caches",
                   {"model": d.get("model"), "threads": d.get("threads")})


def calm_fidelity(path=BENCH_DIR / "llm_calm_fidelity.json") -> Records | None:
    """One row per (cache, family, design): the threshold, the offline (teacher-forced) agreement and speed-up, the
    real decode's position-wise agreement, identical outputs, whether the first difference falls where predicted,
    its FLOPs speed-up and answer quality against the full model's."""
    path = Path(path)
    if not path.exists():
        return None
    d = _read(path)
    rows = []
    for r in d["results"]:
        qk = next(iter(r["real"]["quality"]))
        rows.append({"cache": r["cache"].replace("smollm2_", ""), "family": r["family"], "design": r["design"],
                     "threshold": r["threshold"], "offline agreement": r["offline"]["agreement"],
                     "offline speed-up": r["offline"]["flops_speedup"],
                     "real agreement": r["real"]["positionwise_agreement"],
                     "identical outputs": r["real"]["identical_outputs"],
                     "first difference where predicted": r["real"]["first_difference_where_predicted"],
                     "real speed-up": r["real"]["flops_speedup"], "quality": qk,
                     "real quality": r["real"]["quality"][qk], "full model quality": r["full_model"]["quality"][qk]})
    target = d["results"][0].get("target_agreement_on_cal") if d["results"] else None
    return Records(pd.DataFrame(rows), str(path), "real CALM decoder against the teacher-forced estimate",
                   {"model": d.get("model"), "threads": d.get("threads"), "target_agreement_on_cal": target})


def runtime_runs(bench_dir=BENCH_DIR) -> Records:
    """One row per measured run of every ``bench_llm_*.json`` in ``bench_dir``: device, dtype, threads, batch,
    method, operating point, predicted (FLOPs) and measured speed-up (median, min, max), their ratio, whether the
    output equals greedy decoding and the machine's load; ``meta['files']`` the header of each file."""
    runs, files = [], {}
    for path in sorted(Path(bench_dir).glob("bench_llm_*.json")):
        d = _read(path)
        if not {"meta", "rows"} <= set(d):
            continue
        meta = d["meta"]
        files[path.name] = {k: meta.get(k) for k in ("model", "prompts", "prompt_set", "max_new_tokens", "repeats",
                                                     "loadavg_start")}
        for r in d["rows"]:
            if "measured_speedup" not in r:
                continue
            lo, hi = r.get("measured_min_max", (np.nan, np.nan))
            runs.append({"file": path.name, "device": meta.get("gpu") or meta.get("device"),
                         "dtype": meta.get("dtype"), "threads": meta.get("threads"), "batch": r["batch_size"],
                         "method": r["method"], "operating point": r["operating_point"],
                         "predicted (FLOPs)": r["predicted_speedup"], "measured": r["measured_speedup"],
                         "measured min": lo, "measured max": hi,
                         "measured / predicted": r["measured_speedup"] / r["predicted_speedup"],
                         "equal to greedy": r.get("tokens_equal_greedy"),
                         "acceptance = offline": r.get("acceptance_equal_offline"),
                         "offline agreement (CALM)": r.get("offline_token_agreement"),
                         "realized FLOPs speed-up (CALM)": r.get("real_flops_speedup"),
                         "load before": (r.get("loadavg_before") or [np.nan])[0]})
    return Records(pd.DataFrame(runs), str(bench_dir), "LLM decoders: measured against predicted", {"files": files})
