"""Real early-exit and cascade inference that stops computing exited examples.

:class:`EarlyExitRunner` steps a :class:`~toolkit.nn.encoder.models.MultiExitModel` through its encoder layer by layer; after
each exit layer it scores the rows still in the batch and removes those whose confidence clears that exit's
threshold, so later layers run on fewer rows (batch size 1 too). :class:`CascadeRunner` runs each complete model
only on the examples the previous one escalated. Both apply the same rule as :mod:`toolkit.analysis.policies` (first stage
whose confidence is at least its threshold; the last stage takes the rest), with the same scores and temperatures,
so their exits can be checked example by example against the offline simulation on a cache.

A :class:`~toolkit.policy.Policy` (method ``early_exit`` or ``cascade``: models with their weight fingerprints, score,
per-stage thresholds and temperatures) is saved as JSON and run by :func:`runner_from_policy` (``toolkit predict``),
only on the weights it was chosen for.

Layer stepping is written here (transformers has no early-exit loop): embeddings, the bidirectional attention mask,
and each encoder layer; what a family's layers take besides ``(hidden, mask)`` (MPNet's relative position bias,
computed once per batch and sliced with the rows) comes from :mod:`toolkit.nn.common.families`.
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from toolkit._api import check_batch
from toolkit.analysis.scores.classification import confidence
from toolkit.nn.common.families import family_of
from toolkit.nn.common.inference import pad_rows, predict_logits, sorted_encoding
from toolkit.nn.common.parts import weights_sha256
from toolkit.nn.encoder.models import MultiExitModel, load_model, resolve_model
from toolkit.policy import ENCODER_METHODS, Policy, PolicyError

__all__ = ["Policy", "PolicyError", "RunResult", "EarlyExitRunner", "CascadeRunner", "runner_from_policy",
           "check_policy_weights", "midpoint_threshold"]

@dataclass
class RunResult:
    exit_stage: np.ndarray  # [N]
    prediction: np.ndarray  # [N]
    logits: np.ndarray  # [N, C] logits of the stage that predicted
    seconds: float


def _stage_thresholds(thresholds, n_stages):
    t = np.full(n_stages, -np.inf)
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size == 1 and n_stages > 1:
        thr = np.full(n_stages - 1, thr.item())
    if thr.size not in (n_stages - 1, n_stages):
        raise ValueError(f"{thr.size} thresholds for {n_stages} stages (give E-1, E, or one)")
    t[: n_stages - 1] = thr[: n_stages - 1]
    return t


def _stage_temperatures(temperatures, n_stages):
    if temperatures is None:
        return np.ones(n_stages)
    t = np.asarray(temperatures, dtype=np.float64).ravel()
    if t.size != n_stages or not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"need {n_stages} positive finite temperatures (one per stage), got {list(t)}")
    return t


def _batches(tokenizer, texts_a, texts_b, batch_size, max_length):
    batch_size = check_batch(batch_size, name="batch_size")
    enc, order = sorted_encoding(tokenizer, texts_a, texts_b, max_length)
    for s in range(0, len(order), batch_size):
        rows = order[s:s + batch_size]
        yield rows, pad_rows(tokenizer, enc, rows)


class EarlyExitRunner:
    """Batched early exit that really skips the layers of exited rows."""

    def __init__(self, model: MultiExitModel, tokenizer, thresholds, score: str = "max_prob", temperatures=None,
                 max_length: int = 128, device=None):
        if not isinstance(model, MultiExitModel):
            raise TypeError("EarlyExitRunner needs a MultiExitModel (use CascadeRunner for complete models)")
        self.model = model.eval()
        self.tok = tokenizer
        self.score = score
        E = self.n_stages = len(model.exit_layers)
        self.thresholds = _stage_thresholds(thresholds, E)
        self.temperatures = _stage_temperatures(temperatures, E)
        self.max_length = max_length
        self.device = torch.device(device or "cpu")
        self.model.to(self.device)
        bb = self.model.backbone
        self.family = family_of(bb)
        self._emb_args = set(inspect.signature(bb.embeddings.forward).parameters)

    def _embed(self, batch):
        bb = self.model.backbone
        kw = {"input_ids": batch["input_ids"]}
        if "token_type_ids" in batch and "token_type_ids" in self._emb_args:
            kw["token_type_ids"] = batch["token_type_ids"]
        hidden = bb.embeddings(**kw)
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(config=bb.config, inputs_embeds=hidden, attention_mask=batch["attention_mask"])
        return hidden, mask, self.family.layer_extras(bb, hidden)

    @torch.inference_mode()
    def run(self, texts_a, texts_b=None, batch_size: int = 32) -> RunResult:
        t0 = time.perf_counter()
        N = len(texts_a)
        C = self.model.config.num_labels
        stage = np.full(N, -1)
        logits_out = np.zeros((N, C), dtype=np.float32)
        exits = {layer: e for e, layer in enumerate(self.model.exit_layers)}
        last_layer = self.model.exit_layers[-1]
        layers = self.family.layers(self.model.backbone)
        for rows, batch in _batches(self.tok, texts_a, texts_b, batch_size, self.max_length):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden, mask, extras = self._embed(batch)
            am = batch["attention_mask"]
            alive = torch.arange(len(rows), device=self.device)
            for i in range(last_layer):
                out = layers[i](hidden, mask, *extras)
                hidden = out[0] if isinstance(out, tuple) else out
                e = exits.get(i + 1)
                if e is None:
                    continue
                z = self.model.heads[e](self.model.pool(hidden, am)).float().cpu().numpy()
                conf = confidence(z, score=self.score, temperature=self.temperatures[e])
                done = conf >= self.thresholds[e] if e < len(exits) - 1 else np.ones(len(z), dtype=bool)
                idx = rows[alive.cpu().numpy()[done]]
                stage[idx], logits_out[idx] = e, z[done]
                keep = torch.from_numpy(np.flatnonzero(~done)).to(self.device)
                if len(keep) == 0:
                    break
                # exited rows leave the batch: later layers run on the rest only
                hidden, am, alive = hidden[keep], am[keep], alive[keep]
                mask = mask[keep] if mask is not None else None
                extras = tuple(x[keep] if x.shape[0] > 1 else x for x in extras)  # per-row extras follow the rows
        return RunResult(stage, logits_out.argmax(-1), logits_out, time.perf_counter() - t0)

    @torch.inference_mode()
    def run_full(self, texts_a, texts_b=None, batch_size: int = 32) -> float:
        """Seconds for the whole model on every example (the reference of the measured speed-up)."""
        t0 = time.perf_counter()
        for _, batch in _batches(self.tok, texts_a, texts_b, batch_size, self.max_length):
            self.model(**{k: v.to(self.device) for k, v in batch.items()})
        return time.perf_counter() - t0


class CascadeRunner:
    """Complete models in order; each runs only on the examples the previous ones did not stop."""

    def __init__(self, models: list, tokenizers: list, thresholds, score: str = "max_prob", temperatures=None,
                 max_length: int = 128, device=None):
        self.models = [m.eval() for m in models]
        self.toks = tokenizers
        self.score = score
        self.n_stages = len(models)
        self.thresholds = _stage_thresholds(thresholds, len(models))
        self.temperatures = _stage_temperatures(temperatures, len(models))
        self.max_length = max_length
        self.device = device or "cpu"

    def _logits(self, m, tok, a, b, batch_size):
        import pandas as pd

        frame = pd.DataFrame({"text_a": a, "text_b": b if b is not None else [None] * len(a)})
        lg, _ = predict_logits(m, tok, frame, batch_size, self.max_length, self.device)
        return lg[:, -1]

    @torch.inference_mode()
    def run(self, texts_a, texts_b=None, batch_size: int = 32) -> RunResult:
        t0 = time.perf_counter()
        N = len(texts_a)
        todo = np.arange(N)
        stage = np.full(N, -1)
        out = None
        for e, (m, tok) in enumerate(zip(self.models, self.toks)):
            a = [texts_a[i] for i in todo]
            b = [texts_b[i] for i in todo] if texts_b is not None else None
            z = self._logits(m, tok, a, b, batch_size)
            if out is None:
                out = np.zeros((N, z.shape[-1]), dtype=np.float32)
            last = e == len(self.models) - 1
            done = np.ones(len(todo), bool) if last else confidence(z, score=self.score, temperature=self.temperatures[e]) >= self.thresholds[e]
            stage[todo[done]], out[todo[done]] = e, z[done]
            todo = todo[~done]
            if len(todo) == 0:
                break
        return RunResult(stage, out.argmax(-1), out, time.perf_counter() - t0)

    def run_full(self, texts_a, texts_b=None, batch_size: int = 32) -> float:
        t0 = time.perf_counter()
        self._logits(self.models[-1], self.toks[-1], texts_a, texts_b, batch_size)
        return time.perf_counter() - t0


def check_policy_weights(policy: Policy, models, source: str = "policy", *, weights=None) -> None:
    """Refuse models whose weights are not those ``policy`` was chosen for (their :func:`weights_sha256`, or
    ``weights`` computed before a cast); warn where the policy records no fingerprint (nothing can be checked)."""
    weights = weights or [weights_sha256(m) for m in models]
    unchecked = [policy.models[i].path for i, w in enumerate(weights) if not policy.check_weights(i, w, source)]
    if unchecked:
        warnings.warn(f"{source}: the policy records no weight fingerprint for {unchecked} (an older policy file, or "
                      f"made by hand): cannot check that these are the weights it was chosen for; make it with "
                      f"Policy.from_operating_point to record them", stacklevel=3)


def runner_from_policy(policy: Policy, device=None, *, allow_random_heads: bool = False, source: str = "policy"):
    """An EarlyExitRunner (method ``early_exit``: one multi-exit model) or a CascadeRunner (``cascade``) for a
    saved policy.

    Models whose heads would be initialised at random are refused unless ``allow_random_heads``; so are models
    with other weights than the policy records (:func:`check_policy_weights`), and thresholds, temperatures or
    stage names that do not fit the models' stages (:meth:`Policy.check_stages`)."""
    from transformers import AutoTokenizer

    if policy.method not in ENCODER_METHODS:
        raise PolicyError(f"{source}: key 'method' is {policy.method!r}, a causal-LM policy: run it with "
                          f"`toolkit llm-generate`")
    models = [load_model(m.path, allow_random_heads=allow_random_heads) for m in policy.models]
    check_policy_weights(policy, models, source)
    policy.check_classes(int(getattr(models[0].config, "num_labels", 0) or 0), source)
    toks = [AutoTokenizer.from_pretrained(resolve_model(m.path)) for m in policy.models]
    p = policy.params
    temps = list(p["temperatures"]) if p["temperatures"] is not None else None
    if policy.method == "early_exit":
        if not isinstance(models[0], MultiExitModel):
            raise PolicyError(f"{source}: key 'method' is early_exit, but {policy.model!r} is not a multi-exit model "
                              f"(a complete classifier runs in a cascade)")
        policy.check_stages([f"L{layer}" for layer in models[0].exit_layers], source)
        return EarlyExitRunner(models[0], toks[0], list(p["thresholds"]), p["score"], temps, p["max_length"],
                               device)
    policy.check_stages(len(models), source)
    return CascadeRunner(models, toks, list(p["thresholds"]), p["score"], temps, p["max_length"], device)


def midpoint_threshold(conf_values, threshold: float) -> float:
    """A threshold equivalent to ``threshold`` on these confidences but half-way to the next lower value, so
    float noise of order 1e-7 between a cache and a live run cannot flip a decision at the boundary."""
    v = np.unique(np.asarray(conf_values).ravel())
    below = v[v < threshold]
    return float((threshold + below.max()) / 2) if len(below) and np.isfinite(threshold) else float(threshold)
