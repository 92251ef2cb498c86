"""Served models' logprob records to a classification cache over label words (OpenAI-style, also vLLM's).

A record is one line of JSONL: a chat completion (``{"choices": [{"logprobs": {"content": [{"token", "logprob",
"top_logprobs": [{"token", "logprob"}, ...]}, ...]}}], "usage": {...}, "model": ...}``), as the OpenAI API and
vLLM's OpenAI-compatible server return for ``logprobs=true, top_logprobs=k``, or a Batch API output line
(``{"custom_id", "response": {"body": <chat completion>}}``). :func:`import_chat_logprobs` reads one file per
model (the cheapest first) into one cascade cache:

- **position**: the first generated position whose ``top_logprobs`` hold any form of any label word (a model
  that writes "The answer is positive" is read at "positive"); if none does, position 0;
- **class score**: ``logsumexp`` of the logprobs of the class's forms found there (forms are matched to a token
  with surrounding whitespace stripped, case as listed: list "positive" and "Positive" to accept both);
- **missing label words** (top-k truncation): a class none of whose forms is among the top k gets the smallest
  logprob listed at that position, an upper bound on its true logprob (it ranked below every listed token). The
  entry is flagged: ``meta["models"][e]["floored"]`` counts them and ``meta["models"][e]["floored_ids"]`` lists
  the examples; rank with care where many are floored (raise k);
- **ids**: ``custom_id`` when present, else the record's 0-based line index; files are joined on ids and must
  hold the same ones; **labels** are given (aligned with the first file's records, or a mapping id -> label; an
  index or a label word);
- **cost**: ``usage.total_tokens`` (prompt + completion tokens) per record, unit "tokens"; ``costs=`` with
  ``cost_unit=`` overrides (dollars, seconds ...). Cumulative across stages.

No prompt or completion text is stored (only the label words).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from toolkit.caches.classification import Cache, save_cache
from toolkit.caches.inputs import from_log_probs
from toolkit.data.tasks import sha256_file
from toolkit.imports.records import RecordError, field, log_prob, read_jsonl

__all__ = ["import_chat_logprobs", "read_chat_logprobs", "TOKENS"]
TOKENS = "tokens"
MISSING_POLICY = ("a label word absent from the top-k logprobs at the read position gets the smallest logprob listed "
                  "there (an upper bound), flagged per example")


def _forms(label_words) -> list[tuple[str, ...]]:
    forms = [(w,) if isinstance(w, str) else tuple(w) for w in label_words]
    if len(forms) < 2 or not all(forms) or not all(isinstance(f, str) and f.strip() for fs in forms for f in fs):
        raise RecordError(f"label_words must name at least two classes, each by one or more non-empty words, got "
                          f"{label_words!r}")
    return forms


def _body(obj: dict, path, line: int) -> dict:
    if "response" in obj and isinstance(obj["response"], dict):  # Batch API output line
        body = obj["response"].get("body")
        if not isinstance(body, dict):
            raise RecordError(f"{path}:{line}: key 'response' has no 'body' object (a failed batch request?)")
        return body
    return obj


def _positions(body: dict, path, line: int) -> list[dict]:
    choices = field(body, "choices", path, line, list)
    if not choices or not isinstance(choices[0], dict):
        raise RecordError(f"{path}:{line}: key 'choices' is empty")
    lp = choices[0].get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(content, list) or not content:
        raise RecordError(f"{path}:{line}: choices[0] has no logprobs.content: request with logprobs=true and "
                          f"top_logprobs=k (k >= 2)")
    for t, pos in enumerate(content):
        if not isinstance(pos, dict) or not isinstance(pos.get("top_logprobs"), list) or not pos["top_logprobs"]:
            raise RecordError(f"{path}:{line}: logprobs.content[{t}] has no top_logprobs list")
    return content


def _read_position(content: list[dict], forms, path, line: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(class log-probabilities [C], floored [C] bool, position read) of one record."""
    word_class = {w: c for c, fs in enumerate(forms) for w in fs}
    chosen = 0
    for t, pos in enumerate(content):
        if any(isinstance(e, dict) and str(e.get("token", "")).strip() in word_class for e in pos["top_logprobs"]):
            chosen = t
            break
    tops = content[chosen]["top_logprobs"]
    found: list[list[float]] = [[] for _ in forms]
    seen, lps = set(), []
    for k, e in enumerate(tops):
        if not isinstance(e, dict) or "token" not in e:
            raise RecordError(f"{path}:{line}: logprobs.content[{chosen}].top_logprobs[{k}] has no token")
        v = log_prob(e.get("logprob"), path, line, f"logprobs.content[{chosen}].top_logprobs[{k}].logprob")
        lps.append(v)
        tok = str(e["token"])
        c = word_class.get(tok.strip())
        if c is not None and tok not in seen:  # each distinct token once (" positive" and "positive" both count)
            found[c].append(v)
            seen.add(tok)
    floor = min(lps)
    out = np.array([np.logaddexp.reduce(f) if f else floor for f in found])
    return np.minimum(out, 0.0), np.array([not f for f in found]), chosen


def read_chat_logprobs(path: str | os.PathLike, label_words) -> dict:
    """One file's records: ids, class log-probabilities ``[N, C]``, floored flags, positions, tokens, model names."""
    path = Path(path)
    forms = _forms(label_words)
    ids, lp, floored, pos, tokens, models, lines = [], [], [], [], [], set(), []
    for line, obj in read_jsonl(path):
        body = _body(obj, path, line)
        content = _positions(body, path, line)
        v, f, t = _read_position(content, forms, path, line)
        ids.append(str(obj["custom_id"]) if "custom_id" in obj else str(len(ids)))
        lp.append(v)
        floored.append(f)
        pos.append(t)
        usage = body.get("usage")
        tokens.append(usage.get("total_tokens") if isinstance(usage, dict) else None)
        if body.get("model"):
            models.add(str(body["model"]))
        lines.append(line)
    if not ids:
        raise RecordError(f"{path}: no records")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RecordError(f"{path}:{lines[ids.index(dup)]}: custom_id {dup!r} occurs more than once")
    return {"path": path, "ids": np.array(ids), "log_probs": np.array(lp), "floored": np.array(floored),
            "positions": np.array(pos), "tokens": tokens, "models": sorted(models), "lines": np.array(lines)}


def _labels(labels, ids: np.ndarray, forms) -> np.ndarray:
    word = {w: c for c, fs in enumerate(forms) for w in fs}
    vals = [labels[i] for i in ids] if isinstance(labels, Mapping) else list(labels)
    if len(vals) != len(ids):
        raise RecordError(f"{len(vals)} labels for {len(ids)} records")
    out = []
    for i, v in zip(ids, vals):
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < len(forms):
            out.append(int(v))
        elif isinstance(v, str) and v.strip() in word:
            out.append(word[v.strip()])
        else:
            raise RecordError(f"record {i}: label {v!r} is neither a class index below {len(forms)} nor a label word")
    return np.array(out, dtype=np.int64)


def import_chat_logprobs(files: Sequence[str | os.PathLike], labels, *, label_words, out=None,
                         names: Sequence[str] | None = None, costs=None, cost_unit: str | None = None,
                         task: str | None = None, split: str | None = None) -> Cache:
    """Chat-completion logprob records (one file per model, the cheapest first) as one cascade cache.

    ``label_words``: per class a word or a tuple of its surface forms, e.g. ``[("negative", "Negative"),
    ("positive", "Positive")]``. ``labels``: per record of the first file (or a mapping id -> label), an index or
    a label word. Policy for positions, missing label words, ids and cost: the module docstring.
    """
    paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(p) for p in files]
    forms = _forms(label_words)
    runs = [read_chat_logprobs(p, forms) for p in paths]
    ref = runs[0]
    order = [np.argsort(r["ids"], kind="stable") for r in runs]
    for r, o in zip(runs[1:], order[1:]):
        if len(r["ids"]) != len(ref["ids"]) or (r["ids"][o] != ref["ids"][order[0]]).any():
            miss = sorted(set(ref["ids"]) ^ set(r["ids"]))[:3]
            raise RecordError(f"{r['path']}: its record ids differ from {ref['path'].name}'s (e.g. {miss}); files "
                              f"of one cascade must answer the same requests")
    # align every file to the first one's record order
    inv = np.empty_like(order[0])
    inv[order[0]] = np.arange(len(inv))
    take = [o[inv] for o in order]
    y = _labels(labels, ref["ids"], forms)
    if costs is not None:
        if cost_unit is None or len(costs) != len(runs):
            raise RecordError("costs need cost_unit and one entry per file")
        alone = np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (len(y),)) for c in costs], 1)
        unit = cost_unit
    else:
        for r, t in zip(runs, take):
            bad = [k for k in t if not isinstance(r["tokens"][k], (int, float))]
            if bad:
                raise RecordError(f"{r['path']}:{r['lines'][bad[0]]}: no usage.total_tokens for the default cost; "
                                  f"pass costs= and cost_unit=")
        alone, unit = np.stack([np.asarray(r["tokens"], dtype=np.float64)[t] for r, t in zip(runs, take)], 1), TOKENS
    stage_names = list(names) if names is not None else [
        (r["models"][0] if len(r["models"]) == 1 else r["path"].stem) for r in runs]
    models = [{"name": n, "model": r["models"], "file": r["path"].name, "sha256": sha256_file(r["path"]),
               "floored": int(r["floored"].sum()),
               "floored_ids": sorted({str(i) for i in r["ids"][r["floored"].any(1)]}),
               "position_histogram": np.bincount(r["positions"]).tolist()} for n, r in zip(stage_names, runs)]
    meta = {"task": task or "chat-logprobs", "split": split or "unknown", "source": "chat-logprobs",
            "label_names": [f[0] for f in forms], "label_words": [list(f) for f in forms], "models": models,
            "missing_label_policy": MISSING_POLICY,
            "cost_rule": "usage.total_tokens per record" if costs is None else "given per file"}
    stage_info = [{"name": n, "kind": "model", "model": n, "model_index": e} for e, n in enumerate(stage_names)]
    cache = from_log_probs(np.stack([r["log_probs"][t] for r, t in zip(runs, take)], 1), y, np.cumsum(alone, 1),
                           cost_unit=unit, meta=meta, stage_info=stage_info, example_ids=ref["ids"])
    if out is not None:
        save_cache(cache, out)
    return cache
