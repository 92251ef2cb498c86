"""Real early-exit and cascade inference that stops computing exited examples.

:class:`EarlyExitRunner` steps a :class:`~toolkit.nn.models.MultiExitModel` through its encoder layer by layer; after
each exit layer it scores the rows still in the batch and removes those whose confidence clears that exit's
threshold, so later layers run on fewer rows (batch size 1 too). :class:`CascadeRunner` runs each complete model
only on the examples the previous one escalated. Both apply the same rule as :mod:`toolkit.analysis.policies` (first stage
whose confidence is at least its threshold; the last stage takes the rest), with the same scores and temperatures,
so their exits can be checked example by example against the offline simulation on a cache.

A :class:`Policy` (score, per-stage thresholds and temperatures, model paths) is saved as JSON and used by
``toolkit predict``.

Layer stepping is written here (transformers has no early-exit loop): embeddings, the bidirectional attention mask,
and each encoder layer; what a family's layers take besides ``(hidden, mask)`` (MPNet's relative position bias,
computed once per batch and sliced with the rows) comes from :mod:`toolkit.nn.families`.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..analysis.scores import confidence
from .families import family_of
from .inference import pad_rows, predict_logits, sorted_encoding
from .models import MultiExitModel, load_model, resolve_model

# thresholds are in confidence units (higher = more confident): outside these ranges a stage never (or always) exits
THRESHOLD_RANGE = {"max_prob": (0.0, 1.0), "margin": (0.0, 1.0), "elang": (0.0, 100.0), "entropy": (-1e3, 0.0),
                   "energy": (-1e6, 1e6)}
POLICY_KEYS = ("models", "score", "thresholds", "temperatures", "max_length", "meta")


class PolicyError(ValueError):
    """A policy (JSON or arguments) is malformed; the message names the file and the key."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class Policy:
    """What to run and when to stop: ``thresholds[e]`` in confidence units (higher = more confident) for every
    stage but the last; ``temperatures[e]`` per stage; ``models`` in cascade order (one for early exit).

    Validated on construction (:meth:`validate`): known keys only, model ids as strings, a known score, finite
    thresholds within the score's range, positive finite temperatures, an integer ``max_length`` >= 4. Whether the
    counts match the stages is checked when the models are loaded (:func:`runner_from_policy`).
    """

    models: list[str]
    score: str = "max_prob"
    thresholds: list[float] = field(default_factory=list)
    temperatures: list[float] | None = None
    max_length: int = 128
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self, source: str = "policy") -> None:
        """Raise :class:`PolicyError` naming ``source`` and the key on any malformed field."""
        def bad(key, msg):
            raise PolicyError(f"{source}: key {key!r} {msg}")

        if not isinstance(self.models, list) or not self.models:
            bad("models", f"must be a non-empty list of model folders or names, got {self.models!r}")
        for i, m in enumerate(self.models):
            if not isinstance(m, str) or not m.strip():
                bad("models", f"entry {i} must be a model folder or name (a non-empty string), got "
                              f"{type(m).__name__} {m!r}")
        if not isinstance(self.score, str) or self.score not in THRESHOLD_RANGE:
            bad("score", f"must be one of {sorted(THRESHOLD_RANGE)}, got {self.score!r}")
        thr = self.thresholds if isinstance(self.thresholds, list) else [self.thresholds]
        lo, hi = THRESHOLD_RANGE[self.score]
        for i, t in enumerate(thr):
            if not _number(t) or not math.isfinite(t):
                bad("thresholds", f"entry {i} must be a finite number, got {t!r} (NaN or inf would mean a stage "
                                  f"never or always exits)")
            if not lo <= t <= hi:
                bad("thresholds", f"entry {i} is {t!r}, outside [{lo:g}, {hi:g}] where {self.score} confidences "
                                  f"lie: that stage would never (or always) exit")
        if self.temperatures is not None:
            if not isinstance(self.temperatures, list) or not self.temperatures:
                bad("temperatures", f"must be null or a list of one positive number per stage, got "
                                    f"{self.temperatures!r}")
            for i, t in enumerate(self.temperatures):
                if not _number(t) or not math.isfinite(t) or not 0 < t <= 1e4:
                    bad("temperatures", f"entry {i} must be a positive finite number (at most 1e4), got {t!r}")
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or not 4 <= self.max_length <= 1 << 20:
            bad("max_length", f"must be an integer >= 4, got {self.max_length!r}")
        if not isinstance(self.meta, dict):
            bad("meta", f"must be an object, got {type(self.meta).__name__}")

    def check_stages(self, n_stages: int, source: str = "policy") -> None:
        """Refuse threshold or temperature counts that do not fit ``n_stages`` (E-1, E or one threshold; E
        temperatures)."""
        n_thr = len(self.thresholds) if isinstance(self.thresholds, list) else 1
        if n_thr not in (1, n_stages - 1, n_stages) or (n_thr == 0 and n_stages > 1):
            raise PolicyError(f"{source}: key 'thresholds' has {n_thr} values for {n_stages} stages (give "
                              f"{n_stages - 1}, {n_stages} or one)")
        if self.temperatures is not None and len(self.temperatures) != n_stages:
            raise PolicyError(f"{source}: key 'temperatures' has {len(self.temperatures)} values for {n_stages} "
                              f"stages (give one per stage, or null)")

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=1, allow_nan=False))
        return path

    @classmethod
    def from_dict(cls, d, source: str = "policy") -> Policy:
        if not isinstance(d, dict):
            raise PolicyError(f"{source}: a policy is a JSON object with keys {list(POLICY_KEYS)}, got "
                              f"{type(d).__name__}")
        unknown = sorted(set(d) - set(POLICY_KEYS))
        if unknown:
            raise PolicyError(f"{source}: unknown key(s) {unknown}; a policy has {list(POLICY_KEYS)}")
        if "models" not in d:
            raise PolicyError(f"{source}: key 'models' is missing (the model folders, in cascade order)")
        try:
            return cls(**d)
        except PolicyError as e:
            raise PolicyError(str(e).replace("policy:", f"{source}:", 1)) from None

    @classmethod
    def load(cls, path) -> Policy:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise PolicyError(f"{path}: not UTF-8 ({e})") from None
        except json.JSONDecodeError as e:
            raise PolicyError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))


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
                conf = confidence(z, self.score, self.temperatures[e])
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
            done = np.ones(len(todo), bool) if last else confidence(z, self.score, self.temperatures[e]) >= self.thresholds[e]
            stage[todo[done]], out[todo[done]] = e, z[done]
            todo = todo[~done]
            if len(todo) == 0:
                break
        return RunResult(stage, out.argmax(-1), out, time.perf_counter() - t0)

    def run_full(self, texts_a, texts_b=None, batch_size: int = 32) -> float:
        t0 = time.perf_counter()
        self._logits(self.models[-1], self.toks[-1], texts_a, texts_b, batch_size)
        return time.perf_counter() - t0


def runner_from_policy(policy: Policy, device=None, *, allow_random_heads: bool = False, source: str = "policy"):
    """An EarlyExitRunner (one multi-exit model) or a CascadeRunner (several models) for a saved policy.

    Models whose heads would be initialised at random are refused unless ``allow_random_heads``; threshold and
    temperature counts must fit the stages (:meth:`Policy.check_stages`)."""
    from transformers import AutoTokenizer

    policy.validate(source)
    models = [load_model(p, allow_random_heads=allow_random_heads) for p in policy.models]
    toks = [AutoTokenizer.from_pretrained(resolve_model(p)) for p in policy.models]
    if len(models) == 1 and isinstance(models[0], MultiExitModel):
        policy.check_stages(len(models[0].exit_layers), source)
        return EarlyExitRunner(models[0], toks[0], policy.thresholds, policy.score, policy.temperatures,
                               policy.max_length, device)
    policy.check_stages(len(models), source)
    return CascadeRunner(models, toks, policy.thresholds, policy.score, policy.temperatures, policy.max_length, device)


def midpoint_threshold(conf_values, threshold: float) -> float:
    """A threshold equivalent to ``threshold`` on these confidences but half-way to the next lower value, so
    float noise of order 1e-7 between a cache and a live run cannot flip a decision at the boundary."""
    v = np.unique(np.asarray(conf_values).ravel())
    below = v[v < threshold]
    return float((threshold + below.max()) / 2) if len(below) and np.isfinite(threshold) else float(threshold)
