"""Generate with each model of a Swift/Super set once, keeping per-step logit statistics, outputs and quality.

Greedy decoding (one beam, no sampling), length-sorted batches with dynamic padding. Statistics are of the raw
next-token logits (``output_logits``), the model's distribution before any logits processor. Collection is
resumable: chunks land in ``<out>.parts/`` and a restart with the same weights, tokenizers, data and settings skips
finished ones (:mod:`toolkit.nn.common.parts`); the cache is written atomically, and the same inputs give the same bytes.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from toolkit._api import check_batch
from toolkit.analysis.cost.seq2seq import GENERATION_COST_DEFINITION, generation_flops, seq2seq_dims
from toolkit.analysis.metrics.generation import bleu_stats, chrf_stats, exact_match
from toolkit.caches.classification import CacheError
from toolkit.caches.generation import (
    GEN_SCHEMA_VERSION,
    GenCache,
    Generation,
    load_generation_cache,
    save_generation_cache,
    stat_names,
)
from toolkit.data.provenance import package_versions
from toolkit.data.text2text import TRANSLATION, label_words, load_seq2seq_split
from toolkit.nn.common.inference import pad_rows, sorted_encoding
from toolkit.nn.common.parts import Parts, run_signature
from toolkit.nn.seq2seq.models import load_seq2seq

DEFAULT_TEMPERATURES = (0.5, 1.0, 2.0, 4.0)


def step_statistics(logits: torch.Tensor, temperatures) -> torch.Tensor:
    """``[..., F]`` statistics of logits ``[..., V]``: top-2 logits, then logsumexp and entropy at each T."""
    z = logits.float()
    top = z.topk(2, dim=-1).values
    lses, ents = [], []
    for t in temperatures:
        zt = z / t
        lse = torch.logsumexp(zt, -1)
        p = torch.softmax(zt, -1)
        lses.append(lse)
        ents.append(lse - (p * zt).sum(-1))
    return torch.stack([top[..., 0], top[..., 1], *lses, *ents], -1)


def generate_steps(model, source_tokenizer, target_tokenizer, frame, temperatures=DEFAULT_TEMPERATURES,
                   batch_size: int = 32, max_length: int = 128, max_new_tokens: int = 16, device=None,
                   progress: bool = False) -> dict:
    """Greedy generations of ``model`` on a frame (``text_a``, ``text_b``): per example, the generated ids (EOS
    included), their step statistics ``[m, F]``, decoded text and source token count, in frame order."""
    batch_size = check_batch(batch_size, name="batch_size")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    keep = {"input_ids", "attention_mask"}
    if "token_type_ids" in inspect.signature(model.get_encoder().forward).parameters:
        keep.add("token_type_ids")
    b = frame["text_b"] if frame["text_b"].notna().all() else None
    enc, order = sorted_encoding(source_tokenizer, frame["text_a"], b, max_length)
    n_src = np.array([len(x) for x in enc["input_ids"]], dtype=np.int32)
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
    N = len(frame)
    tokens, stats, truncated = [None] * N, [None] * N, 0
    with torch.inference_mode():
        for start in tqdm(range(0, N, batch_size), disable=not progress, desc="generate", leave=False):
            rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad_rows(source_tokenizer, enc, rows, keep).items()}
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 return_dict_in_generate=True, output_logits=True)
            seq = out.sequences[:, -len(out.logits):].cpu().numpy()
            st = step_statistics(torch.stack(out.logits, 1), temperatures).cpu().numpy()
            is_eos = np.isin(seq, list(eos))
            ends = np.where(is_eos.any(1), is_eos.argmax(1) + 1, seq.shape[1])
            truncated += int((~is_eos.any(1)).sum())
            for j, r in enumerate(rows):
                tokens[r], stats[r] = seq[j, :ends[j]], st[j, :ends[j]]
    lengths = np.array([len(t) for t in tokens])
    text = target_tokenizer.batch_decode([t.tolist() for t in tokens], skip_special_tokens=True)
    return {"tokens": np.concatenate(tokens).astype(np.int32), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
            "stats": np.concatenate(stats).astype(np.float32), "text": np.asarray(text, dtype=object),
            "n_src": n_src, "truncated": truncated}


def quality_of(text, frame, metrics) -> tuple[dict, dict]:
    """Per-example quality and corpus statistics of generated ``text`` against ``frame['target']``."""
    quality, qstats = {}, {}
    targets = frame["target"].tolist()
    for m in metrics:
        if m == "exact_match":
            quality[m] = exact_match(text, targets)
        elif m in ("bleu", "chrf"):
            from sacrebleu.metrics import BLEU, CHRF

            qstats[m] = (bleu_stats if m == "bleu" else chrf_stats)(text, targets)
            scorer = BLEU(effective_order=True) if m == "bleu" else CHRF()
            quality[m] = np.array([scorer.sentence_score(h, [r]).score for h, r in zip(text, targets)])
        else:
            raise ValueError(f"unknown quality metric {m!r}; choose exact_match, bleu or chrf")
    return quality, qstats


def collect_generation(models: dict, task: str, split: str, out: str | os.PathLike, *, data_dir=None,
                       temperatures=DEFAULT_TEMPERATURES, metrics=None, batch_size: int = 32, max_length: int = 128,
                       max_new_tokens: int | None = None, limit: int | None = None, chunk_size: int = 512,
                       device=None, progress: bool = True, command: str | None = None,
                       restart: bool = False) -> GenCache:
    """Generate with every model of ``models`` (name -> folder/hub id, or name -> ``(model, src_tok, tgt_tok)``;
    Swift first) on ``task``/``split`` and write a generation cache to ``out``.

    ``metrics`` default to exact match for text-to-text tasks and BLEU + chrF for translation; ``max_new_tokens``
    defaults to 256 for translation and to 2 more than the longest label word for text-to-text. ``limit`` keeps the
    first examples (file order). Resuming follows :mod:`toolkit.nn.common.parts` (same weights, tokenizers, data and
    settings, or refuse; ``restart=True`` discards parts of another run).
    """
    t0 = time.time()
    out = Path(out)
    temperatures = tuple(float(t) for t in temperatures)
    if not temperatures or not all(np.isfinite(t) and t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be positive, got {temperatures}")
    for key, v in (("batch_size", batch_size), ("limit", limit), ("chunk_size", chunk_size),
                   ("max_new_tokens", max_new_tokens)):
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{key} must be a positive integer, got {v!r}")
    translation = task in TRANSLATION
    metrics = list(metrics or (("bleu", "chrf") if translation else ("exact_match",)))
    data = load_seq2seq_split(task, split, data_dir)
    frame = data.frame if limit is None else data.frame.iloc[:limit].reset_index(drop=True)
    loaded = {name: (m if isinstance(m, (tuple, list)) else load_seq2seq(m)) for name, m in models.items()}
    if not max_new_tokens:  # translation: 256; text-to-text: the longest label word (any model's tokens) + 2
        max_new_tokens = 256 if translation else 2 + max(
            len(ids) for _, _, tgt in loaded.values()
            for ids in tgt(label_words(task), add_special_tokens=False)["input_ids"])
    if not loaded or len(set(loaded)) != len(models):
        raise ValueError("models must map unique names to models")
    idents = {name: str(m) if not isinstance(m, (tuple, list)) else getattr(m[0], "name_or_path", name)
              for name, m in models.items()}
    dims = {name: seq2seq_dims(m[0].config) for name, m in loaded.items()}
    settings = {"task": task, "split": split, "limit": limit, "models": idents, "temperatures": temperatures,
                "max_length": max_length, "max_new_tokens": max_new_tokens, "data": data.fingerprint,
                "chunk_size": chunk_size, "batch_size": batch_size, "metrics": metrics, "schema": GEN_SCHEMA_VERSION}
    run = run_signature(settings, {name: m[0] for name, m in loaded.items()},
                        {f"{name}/{side}": m[i] for name, m in loaded.items() for i, side in ((1, "source"),
                                                                                         (2, "target"))}, device)

    n_chunks = -(-len(frame) // chunk_size)
    with Parts(out, run, restart=restart) as parts:
        for k in tqdm(range(n_chunks), disable=not progress, desc=f"generate {task}/{split}", file=sys.stderr):
            sub = frame.iloc[k * chunk_size:(k + 1) * chunk_size].reset_index(drop=True)
            for name, (model, src, tgt) in loaded.items():
                if parts.done(f"{name}-{k:05d}"):
                    continue
                g = generate_steps(model, src, tgt, sub, temperatures, batch_size, max_length, max_new_tokens, device)
                parts.save(f"{name}-{k:05d}", **{k2: v for k2, v in g.items() if k2 != "text"},
                           text=g["text"].astype(str), example_ids=sub["example_id"].to_numpy().astype(str))

        gens = {}
        keys = ("tokens", "offsets", "stats", "text", "n_src", "truncated", "example_ids")
        for name, (model, _, _) in loaded.items():
            chunks = [parts.load(f"{name}-{k:05d}", keys) for k in range(n_chunks)]
            ids = np.concatenate([c["example_ids"] for c in chunks])
            if len(ids) != len(frame) or not (ids == frame["example_id"].to_numpy().astype(str)).all():
                raise CacheError(f"parts in {parts.folder} do not cover the split in order; delete the folder and "
                                 f"rerun")
            lengths = np.concatenate([np.diff(c["offsets"]) for c in chunks])
            text = np.concatenate([c["text"] for c in chunks]).astype(object)
            n_src = np.concatenate([c["n_src"] for c in chunks])
            quality, qstats = quality_of(text, frame, metrics)
            info = {"path": idents[name], "dims": dims[name].to_dict(),
                    "parameters": int(sum(p.numel() for p in model.parameters())),
                    "weights_sha256": run["weights"][name],
                    "source_models": getattr(model.config, "source_models", None),
                    "train_config": getattr(model.config, "train_config", None),
                    "truncated": int(sum(int(c["truncated"]) for c in chunks))}
            gens[name] = Generation(tokens=np.concatenate([c["tokens"] for c in chunks]),
                                    offsets=np.concatenate([[0], np.cumsum(lengths)]),
                                    stats=np.concatenate([c["stats"] for c in chunks]), text=text, n_src=n_src,
                                    flops=generation_flops(n_src, lengths, dims[name]), quality=quality,
                                    qstats=qstats, info=info)
        meta = {"task": task, "split": split, "metrics": metrics, "translation": translation,
                "label_words": None if translation else label_words(task),
                "data": {"source": data.source, "files": data.files, "fingerprint": data.fingerprint,
                         "data_dir": data.data_dir, "split_seed": data.split_seed, "limit": limit},
                "decoding": {"strategy": "greedy", "max_new_tokens": max_new_tokens, "max_length": max_length,
                             "batch_size": batch_size},
                "stat_names": stat_names(temperatures), "cost_definition": GENERATION_COST_DEFINITION,
                "command": command or " ".join(sys.argv), "versions": package_versions(),
                "signature": parts.signature}
        cache = GenCache(example_ids=frame["example_id"].to_numpy().astype(str),
                         labels=frame["label"].to_numpy().astype(np.int64), models=gens, temperatures=temperatures,
                         meta=meta)
        save_generation_cache(cache, out)
        parts.finish()
    if progress:
        print(f"generated {out} in {time.time() - t0:.1f} s", file=sys.stderr)
    return load_generation_cache(out)
