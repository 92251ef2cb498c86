"""Collect a causal LM's exits once: per-token exit caches of greedy continuations, and classification caches of
zero-shot label-word exits and probe exits at the last prompt position.

**Token caches** (:func:`collect_llm_tokens`, ``toolkit llm-collect``): each prompt is decoded greedily with
``generate`` at batch size 1 (no padding, float32, KV cache) and every layer's state at each position that predicts a
generated token is kept; then each exit family (``lens``, a tuned-exits folder) turns the states of layers 1..L-1
into top-1 ids and logit statistics (:func:`toolkit.nn.seq2seq.generate.step_statistics`); layer L is the model's own logits.
Resumable: per chunk, ``traj-*.npz`` (tokens and states, the expensive part) and ``exits-<family>-*.npz`` land in
``<out>.parts/``; a changed exit family recomputes only its own parts. The cache is written atomically; the parts
are removed unless ``keep_parts``.

**Classification caches** (:func:`prompt_states`, :func:`llm_classifier_caches`): each prompt's last position
(after the chat template's generation prompt) gives every layer's state; a *zero-shot* exit scores each class by
the logsumexp of the logits of its label words' first tokens (logit lens or tuned translator, only those rows of the
LM head evaluated); a *probe* exit is a standardised logistic regression per layer fitted on the train split's
states (:func:`toolkit.nn.encoder.probe.fit_linear_probes`). FLOPs per example: the whole prompt through layers 1..k
(:func:`toolkit.analysis.cost.causal.prefill_exit_flops`) plus every exit head evaluated so far.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from toolkit._api import check_batch
from toolkit.analysis.cost.causal import LLM_COST_DEFINITION, prefill_exit_flops, translator_flops
from toolkit.caches.classification import SCHEMA_VERSION, Cache, CacheError
from toolkit.caches.io import write_atomic
from toolkit.caches.tokens import (
    LLM_SCHEMA_VERSION,
    STATS_DTYPES,
    LLMCacheWriter,
    LLMTokenCache,
    load_llm_cache,
)
from toolkit.data.prompts import PromptSet, answer_class, get_prompt_set
from toolkit.data.provenance import package_versions
from toolkit.data.tasks import get_task, load_split
from toolkit.nn.causal.exits import ExitFn, LogitLens, TunedExits
from toolkit.nn.causal.models import (
    CausalLM,
    encode_prompts,
    greedy_trajectory,
    last_prompt_states,
    load_causal_lm,
)
from toolkit.nn.common.parts import Parts, run_signature, signature_hash, weights_sha256
from toolkit.nn.seq2seq.generate import step_statistics

DEFAULT_LLM_TEMPERATURES = (1.0,)


def _signature(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _family_signature(name: str, exits, record: dict, temperatures) -> str:
    """Identity of one exit family's parts: its record, the temperatures and, for trained exits, their weights
    (retrained translators in the same folder must not reuse the old parts)."""
    weights = weights_sha256(exits) if isinstance(exits, torch.nn.Module) else None
    return _signature({"family": name, "record": record, "temperatures": temperatures, "weights": weights})


def exit_family(spec: str) -> str:
    """The family name of an exits spec: ``"lens"``, NAME of ``NAME=FOLDER``, ``"tuned"`` for a bare FOLDER."""
    if spec == "lens":
        return "lens"
    name, sep, _ = spec.partition("=")
    return name if sep else "tuned"


def resolve_exits(spec: str, lm: CausalLM) -> tuple[str, ExitFn, dict]:
    """``"lens"`` or ``NAME=FOLDER`` / ``FOLDER`` of tuned exits (named ``tuned``) -> (family, exits, record)."""
    if spec == "lens":
        return "lens", LogitLens(lm.model), {"kind": "logit_lens", "form": "lm_head(final_norm(h_l))"}
    _, sep, folder = spec.partition("=")
    name, folder = exit_family(spec), folder if sep else spec
    exits = TunedExits.from_pretrained(folder, lm.model)
    record = {"kind": "tuned_exits", "form": "lm_head(final_norm(h_l + A_l h_l + b_l))", "folder": str(folder),
              **{k: exits.info.get(k) for k in ("training", "heldout", "config", "signature")}}
    record["training"] = {k: v for k, v in (record.get("training") or {}).items()
                          if k not in ("loss_curve", "train_example_ids")}
    return name, exits, record


@torch.inference_mode()
def exit_statistics(exits: ExitFn, states: np.ndarray, temperatures, *, batch: int = 256):
    """Top-1 ids ``[n, L-1]`` and statistics ``[n, L-1, F]`` of layers 1..L-1's exits on states ``[n, L, H]``
    (``batch`` states at a time)."""
    batch = check_batch(batch, name="batch")
    n, L, _ = states.shape
    top1 = np.empty((n, L - 1), dtype=np.int32)
    stats = np.empty((n, L - 1, 2 + 2 * len(temperatures)), dtype=np.float32)
    device = (exits.head if isinstance(exits, LogitLens) else exits._head).weight.device
    for s in range(0, n, batch):
        h = torch.from_numpy(states[s:s + batch]).to(device)
        for layer in range(1, L):
            z = exits(layer, h[:, layer - 1]).float()
            top1[s:s + batch, layer - 1] = z.argmax(-1).cpu().numpy()
            stats[s:s + batch, layer - 1] = step_statistics(z, temperatures).cpu().numpy()
    return top1, stats


def answer_quality(ps: PromptSet, texts: list[str], frame) -> tuple[dict, dict]:
    """Per-prompt quality and corpus values: chrF against the reference, or the answer's label word."""
    if ps.reference:
        from sacrebleu.metrics import CHRF

        from toolkit.analysis.metrics.generation import chrf_stats, corpus_score

        refs = frame[ps.reference].tolist()
        per = np.array([CHRF().sentence_score(h, [r]).score for h, r in zip(texts, refs)])
        return {"chrf": per}, {"chrf": float(corpus_score("chrf", per_example=per, stats=chrf_stats(texts, refs).sum(0)))}
    if ps.label_words:
        pred = np.array([answer_class(t, ps.label_words) for t in texts])
        right = (pred == frame["label"].to_numpy()).astype(np.float64)
        return {"answer_accuracy": right}, {"answer_accuracy": float(right.mean()),
                                            "answer_missing": float((pred < 0).mean())}
    return {}, {}


def collect_llm_tokens(model: str, prompt_set: str, split: str, out: str | os.PathLike, *, exits=("lens",),
                       limit: int | None = None, max_new_tokens: int | None = None,
                       temperatures=DEFAULT_LLM_TEMPERATURES, stats_dtype: str = "float16", chunk_size: int = 8,
                       data_dir=None, keep_parts: bool = False, parts_dir=None, progress: bool = True,
                       command: str | None = None, lm: CausalLM | None = None, restart: bool = False) -> LLMTokenCache:
    """Greedy continuations of ``prompt_set`` prompts on ``split`` with every exit family's per-token statistics;
    writes an :class:`~toolkit.caches.tokens.LLMTokenCache` to ``out``. ``exits``: ``"lens"`` and/or tuned-exits
    folders (``NAME=FOLDER``); ``limit``: the first examples of the split (file order); ``parts_dir``: where the
    resumable parts go (default: beside ``out``). Parts of a run with other weights, tokenizer, data or settings are
    refused (``restart=True`` discards them), as for every collector (:class:`~toolkit.nn.common.parts.Parts`)."""
    t0 = time.time()
    out = Path(out)
    ps = get_prompt_set(prompt_set)
    if ps.kind != "generation":
        raise ValueError(f"prompt set {prompt_set!r} is a one-token label set; token caches need a generation set")
    if stats_dtype not in STATS_DTYPES:
        raise ValueError(f"stats_dtype must be one of {STATS_DTYPES}")
    temperatures = tuple(float(t) for t in temperatures)
    if not temperatures or any(t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be positive, got {temperatures}")
    max_new_tokens = int(max_new_tokens or ps.max_new_tokens)
    data = load_split(ps.task, split, data_dir)
    frame = data.frame if limit is None else data.frame.iloc[:limit].reset_index(drop=True)
    lm = lm or load_causal_lm(model)
    families = [resolve_exits(e, lm) for e in exits]
    if len({f for f, _, _ in families}) != len(families):
        raise ValueError(f"exit family names must be unique, got {[f for f, _, _ in families]}")
    prompts = encode_prompts(lm.tokenizer, ps, frame)
    # the limit is not part of the signature: chunks cover the split in file order, so a larger limit reuses them
    run = {"model": lm.info(), "prompt_set": ps.name, "template": ps.template, "split": split,
           "max_new_tokens": max_new_tokens, "data": data.fingerprint, "chunk_size": chunk_size,
           "schema": LLM_SCHEMA_VERSION, "temperatures": temperatures}
    run = run_signature(run, {"model": lm.model}, {"model": lm.tokenizer}, next(lm.model.parameters()).device)
    parts = (Path(parts_dir) / f"{out.name}.parts") if parts_dir else out.with_name(out.name + ".parts")
    with Parts(out, run, folder=parts, restart=restart) as claimed:
        n_chunks = -(-len(frame) // chunk_size)
        L = lm.n_layers

        def chunk(k):
            rows = range(k * chunk_size, min((k + 1) * chunk_size, len(frame)))
            return rows, f"{k:05d}-{len(rows)}"

        for k in tqdm(range(n_chunks), disable=not progress, desc=f"decode {prompt_set}/{split}", file=sys.stderr):
            rows, tag = chunk(k)
            if claimed.done(f"traj-{tag}"):
                continue
            trajs = [greedy_trajectory(lm.model, prompts[r], max_new_tokens) for r in rows]
            final = [step_statistics(torch.from_numpy(t.final_logits), temperatures).numpy() for t in trajs]
            lengths = [len(t.tokens) for t in trajs]
            claimed.save(f"traj-{tag}", example_ids=frame["example_id"].to_numpy()[list(rows)].astype(str),
                         n_prompt=np.array([len(prompts[r]) for r in rows], np.int32),
                         tokens=np.concatenate([t.tokens for t in trajs]).astype(np.int32),
                         offsets=np.concatenate([[0], np.cumsum(lengths)]),
                         states=np.concatenate([t.states for t in trajs]), final_stats=np.concatenate(final))

        for name, ex, record in families:
            fsig = _family_signature(name, ex, record, temperatures)
            for k in tqdm(range(n_chunks), disable=not progress, desc=f"exits {name}", file=sys.stderr):
                tag = chunk(k)[1]
                if claimed.done(f"exits-{name}-{fsig}-{tag}"):
                    continue
                states = claimed.load(f"traj-{tag}", ("states",))["states"]
                top1, stats = exit_statistics(ex, states, temperatures)
                claimed.save(f"exits-{name}-{fsig}-{tag}", top1=top1, stats=stats)

        trajs = []
        for k in range(n_chunks):
            z = claimed.load(f"traj-{chunk(k)[1]}", ("example_ids", "n_prompt", "tokens", "offsets", "final_stats"))
            trajs.append({key: v for key, v in z.items() if key != "states"})
        ids = np.concatenate([t["example_ids"] for t in trajs])
        if not (ids == frame["example_id"].to_numpy().astype(str)).all():
            raise CacheError(f"parts in {parts} do not cover the split in order; delete the folder and rerun")
        tokens = np.concatenate([t["tokens"] for t in trajs])
        lengths = np.concatenate([np.diff(t["offsets"]) for t in trajs])
        texts = lm.tokenizer.batch_decode(np.split(tokens, np.cumsum(lengths)[:-1]), skip_special_tokens=True)
        quality, corpus = answer_quality(ps, texts, frame)
        eos = lm.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        ends_eos = np.isin(tokens[np.cumsum(lengths) - 1], list(eos))
        meta = {"task": ps.task, "split": split, "prompt_set": ps.name,
                "prompt": {"template": ps.template, "label_words": ps.label_words, "reference": ps.reference,
                           "chat_template": "the tokenizer's, with the generation prompt"},
                "decoding": {"strategy": "greedy", "max_new_tokens": max_new_tokens, "batch_size": 1,
                             "dtype": str(next(lm.model.parameters()).dtype).replace("torch.", ""),
                             "ended_with_eos": float(ends_eos.mean())},
                "quality": corpus,
                "data": {"source": data.source, "files": data.files, "fingerprint": data.fingerprint,
                         "data_dir": data.data_dir, "split_seed": data.split_seed, "limit": limit},
                "cost_definition": LLM_COST_DEFINITION, "command": command or " ".join(sys.argv),
                "versions": package_versions()}
        labels = frame["label"].to_numpy().astype(np.int64) if ps.label_words else np.full(len(frame), -1, np.int64)
        fam_info = {name: {"layers": list(range(1, L + 1)), **record} for name, _, record in families}
        sigs = {name: _family_signature(name, ex, record, temperatures) for name, ex, record in families}
        # the weights' fingerprint (as the classification collectors record it): a policy chosen on this cache
        # runs only on these weights (toolkit.policy.Policy.from_operating_point, decode.decoder_from_policy)
        model_info = {**lm.info(), "weights_sha256": run["weights"]["model"]}
        # one chunk of prompts at a time, as row groups (llm_cache.LLMCacheWriter): never the whole table in memory
        with LLMCacheWriter(out) as writer:
            for k, t in enumerate(trajs):
                rows = list(chunk(k)[0])
                top1, stats = {}, {}
                for name in sigs:
                    g = claimed.load(f"exits-{name}-{sigs[name]}-{chunk(k)[1]}", ("top1", "stats"))
                    top1[name] = np.concatenate([g["top1"], t["tokens"][:, None]], 1)
                    stats[name] = np.concatenate([g["stats"], t["final_stats"][:, None]], 1)
                if stats_dtype == "float16":
                    if max(np.abs(v).max() for v in stats.values()) > 6e4:
                        raise CacheError("exit statistics exceed the float16 range; collect with "
                                         "stats_dtype='float32'")
                    stats = {f: v.astype(np.float16).astype(np.float32) for f, v in stats.items()}
                writer.write(LLMTokenCache(example_ids=t["example_ids"], labels=labels[rows],
                                           n_prompt=t["n_prompt"], tokens=t["tokens"], offsets=t["offsets"],
                                           top1=top1, stats=stats, temperatures=temperatures, model=model_info,
                                           families=fam_info, quality={m: np.asarray(q)[rows] for m, q in
                                                                       quality.items()},
                                           stats_dtype=stats_dtype, meta=meta))
        claimed.finish(keep=keep_parts)
    print(f"collected {out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return load_llm_cache(out)


def fingerprint_token_cache(path: str | os.PathLike, lm: CausalLM | None = None, *, check_prompts: int = 2,
                            data_dir=None) -> str:
    """Add the weights' fingerprint to a token cache collected before the collector recorded one, once ``lm``
    (default: the model the header names, loaded as collected) is shown to be the model that produced it.

    Checked first: the header's model record (path, folder, origin, dims, parameters) equals ``lm.info()``; greedy
    decoding of the cache's first ``check_prompts`` prompts (its prompt set, split and data, re-encoded) gives the
    cache's prompt lengths and tokens exactly, and its final-layer statistics within float16 rounding. Then
    :func:`toolkit.caches.upgrade.add_weights_fingerprint` records :func:`~toolkit.nn.common.parts.weights_sha256`
    of ``lm`` with a note that it was added later and how. Returns the fingerprint; a mismatch is a
    :class:`CacheError` naming the file (nothing is written)."""
    from toolkit.caches.upgrade import add_weights_fingerprint, check_upgradable

    check_upgradable(path, adding_fingerprint=True)  # a link or an unwritable folder is refused before the model loads, not at the write
    cache = load_llm_cache(path, data_dir=data_dir)
    model = dict(cache.model)
    if model.get("weights_sha256"):
        if lm is not None and weights_sha256(lm.model) != model["weights_sha256"]:
            raise CacheError(f"{path}: header key 'model.weights_sha256' records {model['weights_sha256'][:12]}..., "
                             f"the model given has other weights; nothing was written")
        return model["weights_sha256"]
    lm = lm or load_causal_lm(model.get("path"))
    info = lm.info()
    differ = sorted(k for k in set(info) | set(model) if k not in ("weights_sha256", "weights_sha256_added")
                    and info.get(k) != model.get(k))
    if differ:
        raise CacheError(f"{path}: header key 'model' differs from the model given in {differ} (header "
                         f"{ {k: model.get(k) for k in differ} }, model { {k: info.get(k) for k in differ} }); it did "
                         f"not produce this cache: nothing was written")
    ps = get_prompt_set(cache.meta["prompt_set"])
    frame = load_split(ps.task, cache.meta["split"], data_dir).frame.set_index("example_id")
    k = min(int(check_prompts), cache.n_examples)
    if k < 1:
        raise ValueError(f"check_prompts must be >= 1, got {check_prompts}")
    rows = frame.loc[list(cache.example_ids[:k])].reset_index()
    prompts = encode_prompts(lm.tokenizer, ps, rows)
    decoding = cache.meta.get("decoding") or {}
    max_new = decoding.get("max_new_tokens")
    worst, n_tokens = 0.0, 0
    for i, prompt in enumerate(prompts):
        a, b = cache.offsets[i], cache.offsets[i + 1]
        if len(prompt) != cache.n_prompt[i]:
            raise CacheError(f"{path}: prompt {cache.example_ids[i]} encodes to {len(prompt)} tokens, the cache "
                             f"records {cache.n_prompt[i]}: another tokenizer or template; nothing was written")
        t = greedy_trajectory(lm.model, prompt, int(max_new[i] if isinstance(max_new, list) else max_new))
        if not np.array_equal(t.tokens, cache.tokens[a:b]):
            raise CacheError(f"{path}: greedy decoding of prompt {cache.example_ids[i]} with the model given does "
                             f"not reproduce the cache's tokens: other weights; nothing was written")
        got = step_statistics(torch.from_numpy(t.final_logits), cache.temperatures).numpy()
        want = cache.stats[cache.family_names[0]][a:b, -1]
        if cache.stats_dtype == "float16":
            got = got.astype(np.float16).astype(np.float32)
        if not np.allclose(got, want, rtol=2e-3, atol=2e-3):
            raise CacheError(f"{path}: the final-layer statistics of prompt {cache.example_ids[i]} differ from the "
                             f"cache's (max {np.abs(got - want).max():.3g}) beyond {cache.stats_dtype} rounding: other "
                             f"weights or precision; nothing was written")
        worst, n_tokens = max(worst, float(np.abs(got - want).max())), n_tokens + b - a
    sha = weights_sha256(lm.model)
    versions = package_versions()
    how = (f"toolkit.nn.causal.collect.fingerprint_token_cache: weights_sha256 of {info['path']} as loaded "
           f"({info['origin']}; torch {versions.get('torch')}, transformers {versions.get('transformers')}), after "
           f"greedy decoding of the first {k} prompts reproduced the cache's prompt lengths and {n_tokens} tokens "
           f"exactly and its final-layer statistics within {cache.stats_dtype} rounding (max difference "
           f"{worst:.3g})")
    add_weights_fingerprint(path, sha, how=how)
    return sha


# ------------------------------------------------------------------------------------------------- classifiers
def label_token_ids(tokenizer, prompt_set: PromptSet) -> list[list[int]]:
    """Per class, the first token of each surface form of its label words (distinct across classes)."""
    ids = [sorted({tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in forms})
           for forms in prompt_set.label_words]
    flat = [i for c in ids for i in c]
    if len(flat) != len(set(flat)):
        raise ValueError(f"prompt set {prompt_set.name!r}: two classes share a label word's first token ({ids}); "
                         f"choose label words that differ in their first token")
    return ids


def prompt_states(lm: CausalLM, prompt_set: str, split: str, out: str | os.PathLike, *, limit: int | None = None,
                  data_dir=None, batch_size: int = 16, chunk_size: int = 32, progress: bool = True) -> dict:
    """Every layer's state at the last prompt position for ``prompt_set`` on ``split``, saved to ``out`` (.npz,
    resumable per chunk): ``example_ids``, ``labels``, ``n_prompt``, ``states`` ``[N, L, H]`` float32."""
    batch_size = check_batch(batch_size, name="batch_size")
    out = Path(out)
    ps = get_prompt_set(prompt_set)
    data = load_split(ps.task, split, data_dir)
    frame = data.frame if limit is None else data.frame.iloc[:limit].reset_index(drop=True)
    # chunks cover the split in file order whatever the limit: a larger limit reuses the finished ones
    run = run_signature({"model": lm.info(), "prompt_set": ps.name, "template": ps.template, "split": split,
                         "data": data.fingerprint, "chunk_size": chunk_size}, {"model": lm.model},
                        {"model": lm.tokenizer}, next(lm.model.parameters()).device)
    sig = signature_hash(run)
    if out.exists():
        try:
            with np.load(out, allow_pickle=False) as f:
                z = {k: f[k] for k in f.files}
            z["signature"], z["example_ids"]  # noqa: B018 - both keys must be there
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise CacheError(f"{out}: not a states file of `toolkit llm-classify` ({type(e).__name__}: {e}); delete "
                             f"it or choose another --states-dir") from None
        if str(z["signature"]) == sig and len(z["example_ids"]) == len(frame):
            return z
        if str(z["signature"]) != sig:
            raise CacheError(f"{out} holds states of another collection; delete it or choose another path")
    prompts = encode_prompts(lm.tokenizer, ps, frame)
    parts = out.with_name(out.name + ".parts")
    with Parts(out, run, folder=parts) as claimed:
        n_chunks = -(-len(frame) // chunk_size)
        names = [f"chunk-{k:05d}-{len(prompts[k * chunk_size:(k + 1) * chunk_size])}" for k in range(n_chunks)]
        for k in tqdm(range(n_chunks), disable=not progress, desc=f"states {prompt_set}/{split}", file=sys.stderr):
            if not claimed.done(names[k]):
                st = last_prompt_states(lm.model, prompts[k * chunk_size:(k + 1) * chunk_size], batch_size=batch_size)
                claimed.save(names[k], states=st)
        result = {"example_ids": frame["example_id"].to_numpy().astype(str), "labels": frame["label"].to_numpy(),
                  "n_prompt": np.array([len(p) for p in prompts], np.int32),
                  "states": np.concatenate([claimed.load(n, ("states",))["states"] for n in names]),
                  "signature": np.array(sig), "task": np.array(ps.task), "split": np.array(split),
                  "prompt_set": np.array(ps.name), "data_files": np.array(json.dumps(data.files)),
                  "data_fingerprint": np.array(data.fingerprint), "data_dir": np.array(str(data.data_dir)),
                  "weights_sha256": np.array(run["weights"]["model"])}
        write_atomic(out, lambda f: np.savez(f, **result), error=CacheError)
        claimed.finish(keep=True)  # the parts stay: a later, larger limit reuses them
    return result


@torch.inference_mode()
def zero_shot_logits(exits: ExitFn, lm: CausalLM, states: np.ndarray, layers, class_ids) -> np.ndarray:
    """``[N, E, C]`` class logits: per exit layer, logsumexp over each class's label-word token logits (only those
    rows of the LM head are evaluated)."""
    head = lm.model.get_output_embeddings()
    flat = [i for c in class_ids for i in c]
    rows = head.weight[flat]
    bias = head.bias[flat] if getattr(head, "bias", None) is not None else None
    out = np.empty((len(states), len(layers), len(class_ids)), dtype=np.float32)
    norm = exits.norm if isinstance(exits, LogitLens) else exits._norm
    for e, layer in enumerate(layers):
        h = torch.from_numpy(states[:, layer - 1]).to(rows.device)
        h = exits.translate(layer, h) if isinstance(exits, TunedExits) else h
        z = norm(h) @ rows.T + (bias if bias is not None else 0.0)
        bounds = np.cumsum([0, *[len(c) for c in class_ids]])
        out[:, e] = torch.stack([torch.logsumexp(z[:, bounds[c]:bounds[c + 1]], -1)
                                 for c in range(len(class_ids))], -1).float().cpu().numpy()
    return out


def llm_classifier_caches(lm: CausalLM, prompt_set: str, states: dict, *, exits=("lens",), train_states=None,
                          layers=None, probe_C: float = 1.0, seed: int = 0, command: str | None = None) -> dict:
    """Ordinary classification caches (one per exit family, stages = ``layers``) from :func:`prompt_states` output.

    Families: zero-shot label words through each of ``exits`` (``"lens"``, tuned folders) and, with
    ``train_states`` (the train split's :func:`prompt_states`), ``probe``. Returns family -> :class:`Cache`.
    """
    from toolkit.nn.encoder.probe import fit_linear_probes

    ps = get_prompt_set(prompt_set)
    spec = get_task(ps.task)
    dims = lm.dims
    sha = weights_sha256(lm.model)  # recorded per family, as every classification collector does
    if "weights_sha256" in states and str(states["weights_sha256"]) != sha:
        raise CacheError(f"the prompt states were computed with other weights (sha256 "
                         f"{str(states['weights_sha256'])[:12]}...) than this model's ({sha[:12]}...); compute them "
                         f"again with this model (prompt_states)")
    layers = list(range(1, dims.layers + 1)) if layers is None else [int(k) for k in layers]
    class_ids = label_token_ids(lm.tokenizer, ps)
    n_ids = sum(len(c) for c in class_ids)
    caches = {}
    base_meta = {"task": ps.task, "split": None, "num_labels": spec.num_labels,
                 "label_names": list(spec.label_names), "metric": spec.metric, "prompt_set": ps.name,
                 "prompt": {"template": ps.template, "label_words": ps.label_words},
                 "llm": lm.info(), "cost_definition": LLM_COST_DEFINITION + "; classification: the whole prompt "
                 "through layers 1..k (prefill share per layer) + each exit head evaluated so far",
                 "data": {"source": "local", "files": json.loads(str(states["data_files"])),
                          "fingerprint": str(states["data_fingerprint"]), "data_dir": str(states["data_dir"]),
                          "split_seed": 0},
                 "command": command or " ".join(sys.argv), "versions": package_versions()}
    split = str(states["split"])
    if str(states["prompt_set"]) != ps.name:
        raise ValueError(f"states were collected for prompt set {states['prompt_set']}, not {ps.name!r}")
    jobs = []
    for spec_e in exits:
        family, ex, record = resolve_exits(spec_e, lm)
        head = 2.0 * dims.hidden * n_ids + (translator_flops(dims) if isinstance(ex, TunedExits) else 0.0)
        jobs.append((f"zs_{family}", zero_shot_logits(ex, lm, states["states"], layers, class_ids), head,
                     {"exit": record, "label_token_ids": class_ids,
                      "head": f"label-word rows of the LM head ({n_ids} tokens), logsumexp per class"}))
    if train_states is not None:
        W, b, acc = fit_linear_probes(train_states["states"][:, np.asarray(layers) - 1], train_states["labels"],
                                      spec.num_labels, C=probe_C, seed=seed)
        logits = np.einsum("nlh,lch->nlc", states["states"][:, np.asarray(layers) - 1].astype(np.float64), W) + b
        jobs.append(("probe", logits.astype(np.float32), 2.0 * dims.hidden * spec.num_labels,
                     {"head": "standardised logistic regression per layer (scikit-learn), last prompt position",
                      "C": probe_C, "seed": seed, "train_size": len(train_states["labels"]),
                      "train_accuracy": acc.tolist(), "train_example_ids_fingerprint": _signature(
                          sorted(train_states["example_ids"].tolist()))}))
    for name, logits, head, info in jobs:
        flops = prefill_exit_flops(states["n_prompt"], layers, dims, exit_head_flops=head)
        stage_info = [{"name": f"L{k}", "kind": "exit", "model": lm.path, "model_name": name, "layer": k,
                       "model_index": 0, "hidden_size": dims.hidden, "num_layers": dims.layers} for k in layers]
        meta = {**base_meta, "split": split, "family": name, "exit_head_flops": head, "family_info": info,
                "models": [{"name": name, "path": lm.path, "origin": lm.origin, "weights_sha256": sha}]}
        caches[name] = Cache(logits=logits, labels=np.asarray(states["labels"], dtype=np.int64), flops=flops,
                             example_ids=np.asarray(states["example_ids"]).astype(str),
                             n_tokens=np.asarray(states["n_prompt"], dtype=np.int32), stage_info=stage_info,
                             meta={"schema_version": SCHEMA_VERSION, **meta})
    return caches
