"""lm-evaluation-harness logs to a cascade cache: one stage per run, no new inference.

``lm_eval ... --log_samples`` writes, per task, ``samples_<task>_<time>.jsonl`` (one line per document:
``doc_id``, ``doc`` (the dataset row: never stored here), ``target``, ``arguments`` (the requests: prompt and each
choice's continuation), ``filtered_resps`` (per choice ``[log-likelihood, is_greedy]``, as strings),
``doc_hash``) and beside it ``results_<time>.json`` (``config.model_args``, ``config.model_num_parameters``,
``task_hashes``, ``n-shot``, ``chat_template``). :func:`import_lm_eval` reads several such runs of a
multiple-choice task (the smallest model first) into one :class:`~toolkit.caches.classification.Cache`:

- stage e = run e; ``logits[n, e, c]`` = the logged log-likelihood of choice c (the sum over the continuation's
  tokens, unnormalised: the harness's ``acc``, not ``acc_norm``); ``labels`` = the targets (an index, or a
  choice's text); ``example_ids`` = ``"<task>:<doc_id>"`` or a column of the document (``id_field``);
- runs are joined on ``doc_id`` and must cover the same documents (``doc_hash``), the same choices and the same
  targets, of the same task (unless ``allow_different_tasks``): prompts may differ (few-shot, chat template);
- the header holds provenance (each run's model, parameters, dtype, revision, n-shot, chat template, the task
  hash, lm-eval's version, the samples file's name and sha256) and the label words when every document has the
  same choices; no document text, prompt or per-document choice text is stored.

**Cost rule.** By default the cost of an example at a stage is what the run records:

- ``parameters x tokens`` when every run's tokenizer is at hand (a local ``tokenizer.json`` in the folder of
  ``model_args.pretrained`` / ``tokenizer``, or ``tokenizers=``): the model's parameter count times the tokens of
  the example's requests (prompt + continuation, summed over the choices, counted as the harness sends them, no
  special tokens; about half the forward FLOPs, ignoring attention);
- else ``parameters``: the parameter count per example (the same for every example);
- ``costs=`` (one per run: a number, or an array over the documents in ``doc_id`` order) with ``cost_unit=``
  overrides both (seconds, dollars, FLOPs ...).

Costs are cumulative along the stages, as for any cascade: an example that reaches run e has paid runs 1..e.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.caches.classification import Cache, save_cache
from toolkit.caches.inputs import from_log_probs
from toolkit.data.tasks import sha256_file
from toolkit.imports.records import RecordError, count_tokens, load_tokenizer, log_prob, read_jsonl
from toolkit.imports.records import field as get

__all__ = ["LMEvalRun", "read_lm_eval", "import_lm_eval", "PARAMS_X_TOKENS", "PARAMETERS"]
PARAMS_X_TOKENS = "parameters x tokens"
PARAMETERS = "parameters"
_SAMPLES = re.compile(r"^samples_(?P<task>.+)_(?P<time>\d{4}-\d{2}-\d{2}T[\d\-.]+)\.jsonl$")


@dataclass(frozen=True)
class LMEvalRun:
    """One ``--log_samples`` file, parsed: arrays over its documents in ``doc_id`` order (no text)."""

    path: Path
    task: str
    doc_ids: np.ndarray  # [N] int
    lines: np.ndarray  # [N] int: the line of each document in the file (for messages)
    example_ids: np.ndarray  # [N] str
    log_likelihoods: np.ndarray  # [N, C] float64
    targets: np.ndarray  # [N] int
    doc_hashes: np.ndarray  # [N] str
    choice_hashes: np.ndarray  # [N] str: sha256 of each document's choices (stripped)
    label_words: list[str] | None  # the choices when every document has the same ones
    request_tokens: np.ndarray | None  # [N] int: tokens of the example's requests; None without a tokenizer
    prompt_tokens: np.ndarray | None  # [N] int: tokens of the prompt alone
    provenance: dict = field(default_factory=dict)

    @property
    def num_parameters(self) -> int | None:
        return self.provenance.get("num_parameters")

    @property
    def name(self) -> str:
        """A stage name: the model folder's name, with the chat template and n-shot when used."""
        p = self.provenance
        base = Path(str(p.get("model") or "model")).name
        return base + (" chat" if p.get("chat_template") else "") + (f" {p['n_shot']}-shot" if p.get("n_shot") else "")


def _choices(args, path, line: int) -> tuple[list[str], list[str]]:
    """(prompts, continuations) of a document's requests: lm-eval 0.4 writes ``{"gen_args_i": {"arg_0", "arg_1"}}``,
    older versions ``[[prompt, continuation], ...]``."""
    if isinstance(args, dict):
        keys = sorted(args, key=lambda k: int(k.rsplit("_", 1)[-1]) if k.rsplit("_", 1)[-1].isdigit() else -1)
        pairs = [(args[k].get("arg_0"), args[k].get("arg_1")) if isinstance(args[k], dict) else (None, None)
                 for k in keys]
    elif isinstance(args, list):
        pairs = [tuple(a[:2]) if isinstance(a, list) and len(a) >= 2 else (None, None) for a in args]
    else:
        pairs = []
    if not pairs or not all(isinstance(a, str) and isinstance(b, str) for a, b in pairs):
        raise RecordError(f"{path}:{line}: key 'arguments' must hold one (prompt, continuation) request per choice; "
                          f"is this a multiple-choice task (output_type: multiple_choice)?")
    return [a for a, _ in pairs], [b for _, b in pairs]


def _target(t, choices: list[str], path, line: int) -> int:
    if isinstance(t, list) and len(t) == 1:
        t = t[0]
    s = str(t).strip()
    if re.fullmatch(r"\d+", s):
        i = int(s)
    elif s in (c.strip() for c in choices):
        i = [c.strip() for c in choices].index(s)
    else:
        raise RecordError(f"{path}:{line}: target {s[:40]!r} is neither a choice index nor one of the choices")
    if i >= len(choices):
        raise RecordError(f"{path}:{line}: target {i} is out of range for {len(choices)} choices")
    return i


def _results_json(path: Path, task: str) -> dict | None:
    """The ``results_<time>.json`` written with a samples file (same folder and time stamp), if any."""
    m = _SAMPLES.match(path.name)
    cand = path.with_name(f"results_{m['time']}.json") if m else None
    if cand is None or not cand.is_file():
        return None
    try:
        r = json.loads(cand.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(f"{cand}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(r, dict) or not isinstance(r.get("config", {}), dict):
        raise RecordError(f"{cand}: expected lm-eval's results object with a 'config' object")
    return r


def _provenance(path: Path, task: str, results: dict | None) -> dict:
    prov = {"samples_file": path.name, "samples_sha256": sha256_file(path), "results_file": None}
    if results is None:
        return prov
    cfg = results.get("config") or {}
    margs = cfg.get("model_args") or {}
    if isinstance(margs, str):  # older versions: "pretrained=...,dtype=..."
        margs = dict(kv.split("=", 1) for kv in margs.split(",") if "=" in kv)
    n_params = cfg.get("model_num_parameters")
    prov.update({
        "results_file": _results_name(path),
        "model": margs.get("pretrained") or results.get("model_name"),
        "tokenizer": margs.get("tokenizer"),
        "num_parameters": int(n_params) if isinstance(n_params, (int, float)) and n_params > 0 else None,
        "dtype": cfg.get("model_dtype"), "revision": cfg.get("model_revision"), "model_sha": cfg.get("model_sha"),
        "n_shot": (results.get("n-shot") or {}).get(task),
        "chat_template": bool(results.get("chat_template")), "chat_template_sha": results.get("chat_template_sha"),
        "system_instruction_sha": results.get("system_instruction_sha"),
        "task_hash": (results.get("task_hashes") or {}).get(task),
        "lm_eval_version": results.get("lm_eval_version"), "transformers_version": results.get("transformers_version"),
        "limit": cfg.get("limit"),
    })
    return prov


def _results_name(path: Path) -> str | None:
    m = _SAMPLES.match(path.name)
    return f"results_{m['time']}.json" if m else None


def read_lm_eval(path: str | os.PathLike, *, id_field: str | None = None,
                 tokenizer: str | os.PathLike | None = None) -> LMEvalRun:
    """Parse one ``samples_<task>_<time>.jsonl`` (and the ``results_<time>.json`` beside it, when present).

    ``id_field``: a column of the documents holding stable example ids (default ``"<task>:<doc_id>"``).
    ``tokenizer``: a ``tokenizer.json`` or a folder holding one, to count request tokens (default: the run's
    ``model_args`` tokenizer or pretrained folder, when it is a local folder). Errors name the file and line.
    """
    path = Path(path)
    m = _SAMPLES.match(path.name)
    rows, seen = [], {}
    for line, obj in read_jsonl(path):
        doc_id = get(obj, "doc_id", path, line, int)
        if doc_id in seen:
            raise RecordError(f"{path}:{line}: doc_id {doc_id} again (first on line {seen[doc_id]}); one filter per "
                              f"file is expected")
        seen[doc_id] = line
        prompts, conts = _choices(get(obj, "arguments", path, line), path, line)
        resps = get(obj, "filtered_resps", path, line, list)
        if len(resps) != len(conts):
            raise RecordError(f"{path}:{line}: {len(resps)} responses for {len(conts)} choices")
        ll = [log_prob(r[0] if isinstance(r, list) and r else r, path, line, f"filtered_resps[{c}] log-likelihood")
              for c, r in enumerate(resps)]
        if id_field is not None:
            doc = get(obj, "doc", path, line, dict)
            if id_field not in doc:
                raise RecordError(f"{path}:{line}: the document has no column {id_field!r} for example ids")
            ex = str(doc[id_field])
        else:
            ex = None
        doc_hash = obj.get("doc_hash") or hashlib.sha256(
            json.dumps(obj.get("doc"), sort_keys=True, default=str).encode()).hexdigest()
        stripped = [c.strip() for c in conts]
        rows.append((doc_id, line, ex, ll, _target(get(obj, "target", path, line), conts, path, line), str(doc_hash),
                     hashlib.sha256("\x00".join(stripped).encode()).hexdigest(), stripped, prompts, conts))
    if not rows:
        raise RecordError(f"{path}: no samples (an empty log?)")
    n_choices = len(rows[0][3])
    for r in rows:
        if len(r[3]) != n_choices:
            raise RecordError(f"{path}:{r[1]}: {len(r[3])} choices, but line {rows[0][1]} has {n_choices}: a cache "
                              f"needs the same number of choices for every document")
    rows.sort(key=lambda r: r[0])
    task = m["task"] if m else path.stem
    results = _results_json(path, task)
    prov = _provenance(path, task, results)
    doc_ids = np.array([r[0] for r in rows], dtype=np.int64)
    ids = np.array([r[2] if id_field else f"{task}:{r[0]}" for r in rows], dtype=object).astype(str)
    if id_field and len(set(ids)) != len(ids):
        raise RecordError(f"{path}: column {id_field!r} does not hold unique ids")
    words = rows[0][7] if all(r[7] == rows[0][7] for r in rows) else None
    tok = load_tokenizer(tokenizer if tokenizer is not None else _local(prov.get("tokenizer") or prov.get("model")))
    req = prm = None
    if tok is not None:
        counts = count_tokens(tok, [p + c for r in rows for p, c in zip(r[8], r[9])])
        req = np.asarray(counts, dtype=np.int64).reshape(len(rows), n_choices).sum(1)
        prm = np.asarray(count_tokens(tok, [r[8][0] for r in rows]), dtype=np.int64)
        prov["tokenizer_used"] = str(tokenizer if tokenizer is not None else prov.get("tokenizer") or prov["model"])
    return LMEvalRun(path=path, task=task, doc_ids=doc_ids, lines=np.array([r[1] for r in rows]), example_ids=ids,
                     log_likelihoods=np.array([r[3] for r in rows], dtype=np.float64),
                     targets=np.array([r[4] for r in rows], dtype=np.int64),
                     doc_hashes=np.array([r[5] for r in rows]), choice_hashes=np.array([r[6] for r in rows]),
                     label_words=words, request_tokens=req, prompt_tokens=prm, provenance=prov)


def _local(where) -> str | None:
    return str(where) if where and Path(str(where)).is_dir() else None


def _check_same(ref: LMEvalRun, run: LMEvalRun, allow_different_tasks: bool, ids: bool) -> None:
    """Refuse a run over other documents, task, choices or targets than the first; name the file and line."""
    if run.task != ref.task and not allow_different_tasks:
        raise RecordError(f"{run.path}: task {run.task!r}, but {ref.path.name} is task {ref.task!r}; runs of one "
                          f"cascade must be over the same task (allow_different_tasks / --allow-different-tasks "
                          f"for prompt variants saved under another name, over the same documents)")
    if len(run.doc_ids) != len(ref.doc_ids) or (run.doc_ids != ref.doc_ids).any():
        extra = np.setdiff1d(run.doc_ids, ref.doc_ids)
        missing = np.setdiff1d(ref.doc_ids, run.doc_ids)
        where = (f"line {run.lines[np.searchsorted(run.doc_ids, extra[0])]} has doc_id {extra[0]}, absent from "
                 f"{ref.path.name}" if len(extra) else f"doc_id {missing[0]} of {ref.path.name} is missing")
        raise RecordError(f"{run.path}: {len(run.doc_ids)} documents, {ref.path.name} has {len(ref.doc_ids)}: "
                          f"{where} (a different --limit or data file?)")
    for what, a, b in (("document (doc_hash)", ref.doc_hashes, run.doc_hashes),
                       ("choices", ref.choice_hashes, run.choice_hashes),
                       ("target", ref.targets, run.targets),
                       *((("example id", ref.example_ids, run.example_ids),) if ids else ())):
        bad = np.flatnonzero(a != b)
        if len(bad):
            i = bad[0]
            raise RecordError(f"{run.path}:{run.lines[i]}: doc_id {run.doc_ids[i]} has another {what} than line "
                              f"{ref.lines[i]} of {ref.path.name} ({len(bad)} documents differ): runs of one cascade "
                              f"must be over the same documents, choices and targets")


def _stage_costs(runs: list[LMEvalRun], costs, cost_unit: str | None) -> tuple[np.ndarray, str, str]:
    """Per-example cost of each run alone ``[N, E]``, its unit, and the rule used (see the module docstring)."""
    N = len(runs[0].doc_ids)
    if costs is not None:
        if cost_unit is None:
            raise RecordError("costs given without cost_unit: name what they count (seconds, dollars, FLOPs ...)")
        if len(costs) != len(runs):
            raise RecordError(f"{len(costs)} costs for {len(runs)} runs: give one per run")
        cols = []
        for r, c in zip(runs, costs):
            a = np.broadcast_to(np.asarray(c, dtype=np.float64), (N,)) if np.ndim(c) == 0 or np.shape(c) == (N,) \
                else None
            if a is None or not np.isfinite(a).all() or (a < 0).any():
                raise RecordError(f"cost for {r.path.name} must be a non-negative number or {N} of them, got shape "
                                  f"{np.shape(c)}")
            cols.append(a)
        return np.stack(cols, 1), cost_unit, "given per run"
    no_params = [r.path for r in runs if r.num_parameters is None]
    if no_params:
        raise RecordError(f"{no_params[0]}: no parameter count (results_*.json beside it missing or without "
                          f"config.model_num_parameters); pass costs= and cost_unit= (--cost, --cost-unit)")
    params = np.array([r.num_parameters for r in runs], dtype=np.float64)
    if all(r.request_tokens is not None for r in runs):
        return (np.stack([r.request_tokens for r in runs], 1) * params, PARAMS_X_TOKENS,
                "the model's parameter count x the tokens of the example's requests (prompt + continuation, summed "
                "over the choices)")
    return np.broadcast_to(params, (N, len(runs))).copy(), PARAMETERS, \
        "the model's parameter count per example (a tokenizer was not at hand for every run)"


def import_lm_eval(samples, *, out: str | os.PathLike | None = None, names: list[str] | None = None,
                   costs=None, cost_unit: str | None = None, tokenizers: list | None = None,
                   id_field: str | None = None, task: str | None = None, split: str | None = None,
                   allow_different_tasks: bool = False, meta: dict | None = None) -> Cache:
    """Several lm-eval runs (``samples_*.jsonl``, the cheapest first) as one cascade cache; saved to ``out`` if given.

    ``names``: stage names (default: model folder name, with " chat" and " k-shot" where used). ``costs``: one per
    run (number or per-document array) with ``cost_unit``, overriding the recorded cost (module docstring).
    ``tokenizers``: one per run (path or None), to count tokens where the model folder is gone. ``task``, ``split``:
    the header's task (default lm-eval's task name, kept in ``meta["lm_eval_task"]``) and split (e.g. "cal").
    ``meta``: further header entries (e.g. ``data``: the source files' fingerprint, ``command``). Raises :class:`RecordError` naming the file and line.
    """
    paths = [Path(p) for p in ([samples] if isinstance(samples, (str, os.PathLike)) else samples)]
    if not paths:
        raise RecordError("no samples files given")
    toks = list(tokenizers) if tokenizers is not None else [None] * len(paths)
    if len(toks) != len(paths):
        raise RecordError(f"{len(toks)} tokenizers for {len(paths)} runs: give one per run (None to use the run's)")
    runs = [read_lm_eval(p, id_field=id_field, tokenizer=t) for p, t in zip(paths, toks)]
    for r in runs[1:]:
        _check_same(runs[0], r, allow_different_tasks, ids=id_field is not None)
    stage_names = list(names) if names is not None else [r.name for r in runs]
    if len(stage_names) != len(runs):
        raise RecordError(f"{len(stage_names)} names for {len(runs)} runs")
    if len(set(stage_names)) != len(stage_names):
        raise RecordError(f"stage names must differ, got {stage_names}: pass names= (--name) to tell the runs apart")
    alone, unit, rule = _stage_costs(runs, costs, cost_unit)
    ref = runs[0]
    stage_info = [{"name": n, "kind": "model", "model": str(r.provenance.get("model") or r.path.name),
                   "model_index": e} for e, (n, r) in enumerate(zip(stage_names, runs))]
    meta = {"task": task or ref.task, "lm_eval_task": ref.task, "split": split or "unknown", "source": "lm-eval",
            "models": [{"name": n, **r.provenance} for n, r in zip(stage_names, runs)],
            "cost_rule": rule, "score": "log-likelihood of each choice (sum over its tokens, unnormalised)",
            **(meta or {})}
    if ref.label_words is not None:
        meta["label_names"] = ref.label_words
    cache = from_log_probs(np.stack([r.log_likelihoods for r in runs], 1), ref.targets, np.cumsum(alone, axis=1),
                           cost_unit=unit, meta=meta, stage_info=stage_info, example_ids=ref.example_ids,
                           n_tokens=ref.prompt_tokens if ref.prompt_tokens is not None else None)
    if out is not None:
        save_cache(cache, out)
    return cache
