"""One saved policy for every runtime: what to run and when to stop, validated without torch.

A :class:`Policy` names a ``method`` and carries one parameter block for it:

- ``early_exit`` (one multi-exit encoder; ``toolkit predict``) and ``cascade`` (complete models in order; ``toolkit
  predict``): ``score``, ``thresholds`` (one, or one per stage but the last), ``temperatures`` (null or one per
  stage), ``stages`` (the stage names the thresholds were chosen on, or null), ``max_length``;
- ``calm`` (per-token early exit of a causal LM; ``toolkit llm-generate``): ``exit``, ``score``, ``checked_layers``,
  ``thresholds`` (one, or one per checked layer), ``temperature`` (likewise), ``propagate`` (the skipped layers'
  keys/values filled by state propagation, as the token view the thresholds were chosen on was costed; default
  true, the only mode the decoder runs), ``max_new_tokens``, ``chat_template``;
- ``self_speculative`` (``toolkit llm-generate``): ``exit``, ``draft_layer``, ``draft_length``, ``max_new_tokens``,
  ``chat_template``.

``exit`` is ``{"kind": "lens"}`` (the logit lens) or ``{"kind": "tuned", "folder": PATH}`` (trained translators).

Thresholds are in confidence units (higher = more confident), and must lie in the score's confidence range, both
read from the score registry (:data:`toolkit.analysis.scores.classification.SCORES`). Every model is recorded with its weight
fingerprint (``weights_sha256``, the sha256 that cache headers record, :func:`toolkit.nn.common.parts.weights_sha256`):
both runtimes (:func:`toolkit.nn.encoder.runtime.runner_from_policy`, :func:`toolkit.nn.causal.decode.decoder_from_policy`)
refuse to run a policy on other weights. :meth:`Policy.from_operating_point` turns an operating point chosen on cal
(:func:`toolkit.analysis.engine.choose`) into a policy, so nobody types thresholds or fingerprints.

Saved as JSON (``{"schema": "toolkit.policy", "version": 1, "method", "models", "params", "meta"}``), atomically;
files of the two earlier formats (``toolkit.nn.encoder.runtime.Policy``, ``toolkit.nn.causal.decode.LLMPolicy``) still
load. Every error is a :class:`PolicyError` naming the file (or ``policy``) and the key. numpy-free, torch-free.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from toolkit._api import renamed
from toolkit.analysis.scores.classification import SCORES

SCHEMA, VERSION = "toolkit.policy", 1
METHODS = ("early_exit", "cascade", "calm", "self_speculative")
ENCODER_METHODS, LLM_METHODS = ("early_exit", "cascade"), ("calm", "self_speculative")
TOKEN_SCORES = ("max_prob", "margin", "entropy")  # what the LLM decoder computes per token (llm_runtime)
_SHA = re.compile(r"[0-9a-f]{64}")
_REQUIRED = object()


class PolicyError(ValueError):
    """A malformed policy, or a policy that does not fit the models it is run on; the message names the file (or
    ``policy``) and the key."""


def score_range(score: str) -> tuple[float, float]:
    """The range of a score's confidence (higher = more confident) in the registry: a threshold outside it never
    (or always) stops."""
    return SCORES[score].confidence_range


# ------------------------------------------------------------------------------------------------- field checks
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _score(v, methods_scores):
    if not isinstance(v, str) or v not in methods_scores:
        raise ValueError(f"must be one of {list(methods_scores)}, got {v!r}")
    return v


def _numbers(v, *, what: str, positive: bool = False, high: float | None = None) -> tuple[float, ...]:
    vals = list(v) if isinstance(v, (list, tuple)) else [v]
    if not vals:
        raise ValueError(f"must hold at least one {what}, got {v!r}")
    for i, x in enumerate(vals):
        if not _is_number(x):
            raise ValueError(f"entry {i} must be a finite number, got {x!r} (NaN or inf would mean a stage never or "
                             f"always stops)")
        if positive and not 0 < x <= (high or math.inf):
            raise ValueError(f"entry {i} must be a positive number{f' (at most {high:g})' if high else ''}, got {x!r}")
    return tuple(float(x) for x in vals)


def _int_at_least(low: int, high: int = 1 << 20):
    def check(v):
        if not _is_int(v) or v < low:
            raise ValueError(f"must be an integer >= {low}, got {v!r}")
        if v > high:
            raise ValueError(f"must be an integer <= {high}, got {v!r}")
        return v
    return check


def _layers(v):
    if (not isinstance(v, (list, tuple)) or not v or not all(_is_int(x) for x in v) or sorted(set(v)) != list(v)
            or v[0] < 1):
        raise ValueError(f"must be a non-empty increasing list of layers (1-based), got {v!r}")
    return tuple(v)


def _stages(v):
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"must be null or a list of stage names, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"names a stage twice ({next(x for x in v if list(v).count(x) > 1)!r}), got {v!r}")
    return tuple(v)


def _exit(v):
    if not isinstance(v, Mapping) or v.get("kind") not in ("lens", "tuned"):
        raise ValueError(f'must be {{"kind": "lens"}} or {{"kind": "tuned", "folder": PATH}}, got {v!r}')
    if v["kind"] == "lens":
        if set(v) != {"kind"}:
            raise ValueError(f"the logit lens takes no other keys, got {sorted(set(v) - {'kind'})}")
        return MappingProxyType({"kind": "lens"})
    if set(v) != {"kind", "folder"} or not isinstance(v["folder"], str) or not v["folder"].strip():
        raise ValueError(f"a tuned exit is {{'kind': 'tuned', 'folder': PATH}} (the trained translators), got {v!r}")
    return MappingProxyType({"kind": "tuned", "folder": v["folder"]})


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _temperatures(v):
    if v is not None and not isinstance(v, (list, tuple)):
        raise ValueError(f"must be null or a list of one positive number per stage, got {v!r}")
    return None if v is None else _numbers(v, what="temperature", positive=True, high=1e4)


_STAGED = {"score": ("max_prob", lambda v: _score(v, SCORES)),
           "thresholds": (_REQUIRED, lambda v: _numbers(v, what="threshold")),
           "temperatures": (None, _temperatures),
           "stages": (None, _stages),
           "max_length": (128, _int_at_least(4))}
_LLM = {"exit": ({"kind": "lens"}, _exit), "max_new_tokens": (64, _int_at_least(1)), "chat_template": (True, _bool)}
PARAMS: dict[str, dict] = {
    "early_exit": _STAGED,
    "cascade": _STAGED,
    "calm": {**_LLM, "score": ("max_prob", lambda v: _score(v, TOKEN_SCORES)),
             "checked_layers": (_REQUIRED, _layers),
             "thresholds": (_REQUIRED, lambda v: _numbers(v, what="threshold")),
             "temperature": (1.0, lambda v: _numbers(v, what="temperature", positive=True, high=1e4)),
             "propagate": (True, _bool)},
    "self_speculative": {**_LLM, "draft_layer": (_REQUIRED, _int_at_least(1)),
                         "draft_length": (_REQUIRED, _int_at_least(1, 1024))},
}


@dataclass(frozen=True)
class ModelRef:
    """A model to run: a folder or name, and the sha256 of the weights the policy was chosen for (None: not
    recorded, so a runtime cannot check it and says so)."""

    path: str
    weights_sha256: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "weights_sha256": self.weights_sha256}


# ------------------------------------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class Policy:
    """A validated policy (see the module docstring). ``params`` holds the method's block with defaults filled in
    (read-only); ``models`` one :class:`ModelRef` per model (one, except for a cascade)."""

    method: str
    models: tuple[ModelRef, ...]
    params: Mapping = field(default_factory=dict)
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        _validate(self, "policy")

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def early_exit(cls, model: str, *, thresholds, weights: str | None = None, meta=None, **params) -> Policy:
        """One multi-exit encoder (``params``: score, temperatures, stages, max_length)."""
        return cls("early_exit", (ModelRef(model, weights),), {"thresholds": thresholds, **params}, meta or {})

    @classmethod
    def cascade(cls, models: Sequence[str], *, thresholds, weights: Sequence[str | None] | None = None, meta=None,
                **params) -> Policy:
        """Complete models, cheapest first (``params``: score, temperatures, stages, max_length)."""
        weights = list(weights) if weights is not None else [None] * len(models)
        if len(weights) != len(models):
            raise PolicyError(f"policy: key 'models': {len(models)} models but {len(weights)} fingerprints")
        return cls("cascade", tuple(ModelRef(m, w) for m, w in zip(models, weights)),
                   {"thresholds": thresholds, **params}, meta or {})

    @classmethod
    def calm(cls, model: str, *, checked_layers, thresholds, weights: str | None = None, meta=None,
             **params) -> Policy:
        """Per-token early exit of a causal LM (``params``: exit, score, temperature, max_new_tokens,
        chat_template)."""
        return cls("calm", (ModelRef(model, weights),),
                   {"checked_layers": checked_layers, "thresholds": thresholds, **params}, meta or {})

    @classmethod
    def self_speculative(cls, model: str, *, draft_layer: int, draft_length: int, weights: str | None = None,
                         meta=None, **params) -> Policy:
        """Self-speculative decoding (``params``: exit, max_new_tokens, chat_template)."""
        return cls("self_speculative", (ModelRef(model, weights),),
                   {"draft_layer": draft_layer, "draft_length": draft_length, **params}, meta or {})

    @classmethod
    def from_operating_point(cls, op, *, models, weights=None, method: str | None = None, exit=None,
                             max_length: int = 128, max_new_tokens: int = 64, chat_template: bool = True) -> Policy:
        """The policy that runs operating point ``op`` (from :func:`toolkit.analysis.engine.choose`) for real.

        Parameters
        ----------
        op : OperatingPoint
            Chosen on cal; its threshold, score, temperature and stages become the policy's, and the weight
            fingerprints of its models come from the header of the cal cache it was chosen on (its identity names
            the file; a file that changed since is refused).
        models : str or sequence of str
            The model folders (or names) to run: one for an early-exit or LLM view, one per member for a cascade,
            in the view's order.
        weights : sequence of str, or a cache, optional
            The sha256 of each model's weights, or a cache whose header records them, where the cal cache's header
            does not (older caches, LLM token caches, caches built from arrays). A policy is never made without
            them: it runs only on the weights it was chosen for.
        method : str, optional
            ``early_exit``, ``cascade`` or ``calm``; default from the cal cache's kind and the number of models.
        exit : str, optional
            ``calm``: ``"lens"`` or the tuned-exit folder; default: the cal cache's only exit family.
        """
        models = [str(models)] if isinstance(models, (str, os.PathLike)) else [str(m) for m in models]
        names = tuple(str(s) for s in op.stage_names)
        meta = dict(getattr(op, "meta", {}) or {})
        identity = meta.get("identity") if isinstance(meta.get("identity"), Mapping) else {}
        header = _cal_header(identity)
        method = method or _method_of(op, header, len(models))
        if method not in ("early_exit", "cascade", "calm"):
            raise PolicyError(f"policy: key 'method': an operating point chooses a threshold for early_exit, cascade "
                              f"or calm, got {method!r} (a self-speculative policy is made with "
                              f"Policy.self_speculative)")
        thr = op.threshold
        if not isinstance(thr, (int, float)) or isinstance(thr, bool):
            raise PolicyError(f"policy: this operating point has threshold {thr!r}; a policy takes one global "
                              f"threshold")
        if not math.isfinite(thr):
            raise PolicyError(f"policy: the operating point's threshold is {thr}: it never stops before the last "
                              f"stage, so there is nothing to decide at run time (run the last stage alone)")
        _check_models(method, models, header, identity)
        fps = _fingerprints(weights, header, identity, len(models))
        record = {"operating_point": _json_safe(op.to_dict()), "chosen_on": _json_safe(identity)}
        score = meta.get("score", "max_prob")
        temp = meta.get("temperature")
        if method == "calm":
            layers = [_layer_of(s) for s in names]
            ex = _exit_of(exit, header, meta.get("family"))
            return cls("calm", (ModelRef(models[0], fps[0]),),
                       {"exit": ex, "score": score, "checked_layers": layers[:-1], "thresholds": [float(thr)],
                        "temperature": 1.0 if temp is None else temp, "propagate": meta.get("propagate", True),
                        "max_new_tokens": max_new_tokens, "chat_template": chat_template}, record)
        temps = None if temp is None else ([float(t) for t in temp] if isinstance(temp, (list, tuple))
                                           else [float(temp)] * len(names))
        return cls(method, tuple(ModelRef(m, w) for m, w in zip(models, fps)),
                   {"score": score, "thresholds": [float(thr)] * (len(names) - 1), "temperatures": temps,
                    "stages": list(names), "max_length": max_length}, record)

    # ------------------------------------------------------------------------------------------ accessors
    @property
    def model(self) -> str:
        """The (first) model's folder or name."""
        return self.models[0].path

    def n_stages(self) -> int | None:
        """Stages of an encoder policy where known (its ``stages``, or a cascade's members), else None."""
        st = self.params.get("stages")
        return len(st) if st else (len(self.models) if self.method == "cascade" else None)

    def check_stages(self, names: Sequence[str] | int, source: str = "policy") -> None:
        """Refuse an encoder policy whose stages do not fit the models it runs on: ``names`` (the stage names of
        the loaded models, e.g. ``L2, L4, L6``) or their count."""
        n = names if isinstance(names, int) else len(names)
        p = self.params
        if p.get("stages") is not None and not isinstance(names, int) and tuple(p["stages"]) != tuple(names):
            raise PolicyError(f"{source}: key 'stages': the thresholds were chosen on stages "
                              f"{list(p['stages'])}, the models have {list(names)}")
        n_thr = len(p["thresholds"])
        if n < 1:
            raise PolicyError(f"{source}: the models have no stage to run (got {n}); a policy needs at least one")
        if n_thr not in (1, n - 1, n):
            raise PolicyError(f"{source}: key 'thresholds' has {n_thr} values for {n} stages (give {n - 1}, "
                              f"{n} or one)")
        if p.get("temperatures") is not None and len(p["temperatures"]) != n:
            raise PolicyError(f"{source}: key 'temperatures' has {len(p['temperatures'])} values for {n} "
                              f"stages (give one per stage, or null)")

    def check_classes(self, n_classes: int, source: str = "policy") -> None:
        """Warn about max_prob thresholds below ``1 / n_classes`` (the least a max-probability can be): that stage
        always stops, whatever the input. Deliberate with 0 ("always stop here"); otherwise often a threshold made
        for another class count."""
        if self.params.get("score") != "max_prob" or not n_classes or n_classes < 2:
            return
        floor = 1.0 / n_classes
        for i, t in enumerate(self.params.get("thresholds") or ()):
            if 0 < t < floor - 1e-12:
                warnings.warn(f"{source}: key 'thresholds' entry {i} is {t:g}, below 1/{n_classes} = {floor:.4g}, "
                              f"the least max_prob of a {n_classes}-class model: that stage always stops (give 0 to "
                              f"say so, or a threshold in [{floor:.4g}, 1])", UserWarning, stacklevel=2)

    def check_layers(self, n_layers: int, source: str = "policy") -> None:
        """Refuse an LLM policy whose layers do not fit a model of ``n_layers`` layers."""
        p = self.params
        if self.method == "self_speculative" and p["draft_layer"] > n_layers - 1:
            raise PolicyError(f"{source}: key 'draft_layer' is {p['draft_layer']}; this model has "
                              f"{n_layers} layers, so it must lie in 1..{n_layers - 1}")
        if self.method == "calm" and p["checked_layers"][-1] > n_layers - 1:
            raise PolicyError(f"{source}: key 'checked_layers' goes to layer {p['checked_layers'][-1]}; this "
                              f"model has {n_layers} layers, so checked layers lie in 1..{n_layers - 1}")

    def check_weights(self, index: int, weights_sha256: str, source: str = "policy") -> bool:
        """Refuse model ``index`` when its weights are not those the policy was chosen for; False (nothing could
        be checked) where the policy records no fingerprint."""
        want = self.models[index].weights_sha256
        if want is None:
            return False
        if want != weights_sha256:
            raise PolicyError(f"{source}: key 'models' entry {index}: model {self.models[index].path!r} "
                              f"has other weights (sha256 {weights_sha256[:12]}...) than the policy was chosen for "
                              f"({want[:12]}...); a policy runs only on the weights it was chosen for: choose it "
                              f"again on a cache of these weights")
        return True

    # ------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "version": VERSION, "method": self.method,
                "models": [m.to_dict() for m in self.models], "params": _plain(self.params),
                "meta": _plain(self.meta)}

    def save(self, path) -> Path:
        """Write the policy as JSON atomically (a temporary file beside it, fsynced, then renamed)."""
        from toolkit.caches.io import write_atomic

        return write_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", error=PolicyError)

    @classmethod
    def from_dict(cls, d, source: str = "policy") -> Policy:
        """A policy from its JSON object (this format, or either earlier one); errors name ``source`` and the
        key."""
        if not isinstance(d, dict):
            raise PolicyError(f"{source}: a policy is a JSON object, got {type(d).__name__}")
        if "schema" not in d and "version" not in d:
            d = _upgrade(d, source)
        unknown = sorted(set(d) - {"schema", "version", "method", "models", "params", "meta"})
        if unknown:
            raise PolicyError(f"{source}: unknown key(s) {unknown}; a policy has schema, version, method, models, "
                              f"params, meta")
        if d.get("schema") != SCHEMA:
            raise PolicyError(f"{source}: key 'schema' must be {SCHEMA!r}, got {d.get('schema')!r}")
        if type(d.get("version")) is not int or d.get("version") != VERSION:
            raise PolicyError(f"{source}: key 'version' is {d.get('version')!r}; this toolkit reads version "
                              f"{VERSION}: upgrade the toolkit")
        models = d.get("models")
        if not isinstance(models, list) or not models:
            raise PolicyError(f"{source}: key 'models' must be a non-empty list of {{path, weights_sha256}}, got "
                              f"{models!r}")
        refs = []
        for i, m in enumerate(models):
            if not isinstance(m, dict) or set(m) - {"path", "weights_sha256"} or "path" not in m:
                raise PolicyError(f"{source}: key 'models' entry {i} must be {{\"path\": ..., \"weights_sha256\": ...}}, "
                                  f"got {m!r}")
            refs.append(ModelRef(m["path"], m.get("weights_sha256")))
        try:
            return cls(d.get("method"), tuple(refs), d.get("params", {}), d.get("meta", {}))
        except PolicyError as e:
            raise PolicyError(str(e).replace("policy:", f"{source}:", 1)) from None

    @classmethod
    def load(cls, path) -> Policy:
        """Read a policy file; every error names the file (and the line, for invalid JSON) and the key."""
        from toolkit.caches.io import CacheError, check_regular_file

        try:
            path = check_regular_file(path, what="policy file")
        except CacheError as e:
            raise PolicyError(str(e)) from None
        try:
            d = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
        except UnicodeDecodeError as e:
            raise PolicyError(f"{path}: not UTF-8 ({e})") from None
        except json.JSONDecodeError as e:
            raise PolicyError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except _DuplicateKey as e:
            raise PolicyError(f"{path}: key {e.args[0]!r} appears twice in one object; a policy names each key "
                              f"once") from None
        except RecursionError:
            raise PolicyError(f"{path}: JSON nested too deeply to be a policy") from None
        return cls.from_dict(d, source=str(path))


# ------------------------------------------------------------------------------------------------- validation
def _validate(p: Policy, source: str) -> None:
    def bad(key, msg):
        raise PolicyError(f"{source}: key {key!r} {msg}")

    if p.method not in METHODS:
        bad("method", f"must be one of {list(METHODS)}, got {p.method!r}")
    models = tuple(p.models) if isinstance(p.models, (list, tuple)) else None
    if not models:
        bad("models", f"must be a non-empty list of models, got {p.models!r}")
    models = tuple(m if isinstance(m, ModelRef) else ModelRef(m) if isinstance(m, str) else m for m in models)
    for i, m in enumerate(models):
        if not isinstance(m, ModelRef) or not isinstance(m.path, str) or not m.path.strip():
            raise PolicyError(f"{source}: key 'models' entry {i} must be a model folder or name (a non-empty "
                              f"string), got {m!r}")
        if m.weights_sha256 is not None and not (isinstance(m.weights_sha256, str)
                                                 and _SHA.fullmatch(m.weights_sha256)):
            raise PolicyError(f"{source}: key 'models' entry {i}: 'weights_sha256' must be null or 64 lowercase hex "
                              f"digits, got {m.weights_sha256!r}")
    n_models = {"cascade": None}.get(p.method, 1)
    if n_models and len(models) != n_models:
        bad("models", f"{p.method} runs one model, got {len(models)}")
    if p.method == "cascade" and len(models) < 2:
        bad("models", f"a cascade runs at least two models, got {len(models)}")
    if not isinstance(p.params, Mapping):
        bad("params", f"must be an object, got {type(p.params).__name__}")
    spec = PARAMS[p.method]
    unknown = sorted(set(p.params) - set(spec))
    if unknown:
        bad("params", f"has unknown key(s) {unknown} for {p.method}; it takes {sorted(spec)}")
    params = {}
    for key, (default, check) in spec.items():  # the keys given first, then what is missing
        if key in p.params or default is not _REQUIRED:
            try:
                params[key] = check(p.params.get(key, default))
            except ValueError as e:
                bad(key, str(e))
    missing = [k for k in spec if k not in params]
    if missing:
        bad(missing[0], f"is missing ({p.method} needs {missing})")
    _cross_checks(p.method, params, len(models), bad)
    if not isinstance(p.meta, Mapping):
        bad("meta", f"must be an object, got {type(p.meta).__name__}")
    try:
        json.dumps(_plain(p.meta), allow_nan=False)
    except (TypeError, ValueError) as e:
        bad("meta", f"must be plain JSON ({e})")
    object.__setattr__(p, "models", models)
    object.__setattr__(p, "params", MappingProxyType(params))
    object.__setattr__(p, "meta", MappingProxyType(dict(p.meta)))


def _cross_checks(method: str, params: dict, n_models: int, bad) -> None:
    score = params.get("score")
    if "thresholds" in params:
        lo, hi = score_range(score)
        for i, t in enumerate(params["thresholds"]):
            if not lo <= t <= hi:
                bad("thresholds", f"entry {i} is {t!r}, outside [{lo:g}, {hi:g}] where {score} confidences "
                                         f"lie (the score registry's range): that stage would never (or always) stop")
    if method in ENCODER_METHODS:
        n = len(params["stages"]) if params["stages"] else (n_models if method == "cascade" else None)
        if method == "cascade" and params["stages"] and len(params["stages"]) != n_models:
            bad("stages", f"a cascade runs one stage per model: {n_models} models, "
                                 f"{len(params['stages'])} stages")
        if n is not None:
            if len(params["thresholds"]) not in (1, n - 1, n):
                bad("thresholds", f"has {len(params['thresholds'])} values for {n} stages (give {n - 1}, {n} "
                                         f"or one)")
            if params["temperatures"] is not None and len(params["temperatures"]) != n:
                bad("temperatures", f"has {len(params['temperatures'])} values for {n} stages (give one per "
                                           f"stage, or null)")
    if method == "calm":
        k = len(params["checked_layers"])
        for key in ("thresholds", "temperature"):
            if len(params[key]) not in (1, k):
                bad(key, f"must be one value or one per checked layer ({k}), got {len(params[key])}")


# ------------------------------------------------------------------------------------------------- helpers
class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    """``json`` object hook: refuse an object that names a key twice (the last would silently win)."""
    d = {}
    for k, v in pairs:
        if k in d:
            raise _DuplicateKey(k)
        d[k] = v
    return d


def _plain(obj):
    """Tuples and read-only mappings as JSON lists and objects."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _json_safe(obj):
    """numpy scalars as Python numbers, non-finite floats as strings: provenance that JSON can hold."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj if obj is None or isinstance(obj, (str, int, float, bool)) else str(obj)


def _layer_of(stage: str) -> int:
    m = re.fullmatch(r"(?:.*:)?L(\d+)", stage)
    if not m:
        raise PolicyError(f"policy: stage {stage!r} is not a layer stage (L<k>); cannot make a CALM policy of it")
    return int(m.group(1))


def _cal_header(identity: Mapping) -> dict | None:
    """The header of the cal cache an operating point was chosen on (its identity names the file), checked to be
    the same cache: a file changed since (other models) is refused. None where the file is unknown or gone."""
    from types import SimpleNamespace

    from toolkit.caches.identity import cache_identity
    from toolkit.caches.io import read_header

    path = identity.get("path")
    if not path or not Path(path).is_file():
        return None
    head = read_header(path)
    meta = head.get("meta") if isinstance(head.get("meta"), dict) else {}
    if head.get("kind") == "llm_tokens":
        view = SimpleNamespace(meta=meta, top1=None, model=head.get("model"), families=head.get("families"))
    else:
        view = SimpleNamespace(meta=meta)
    now = cache_identity(view).get("models")
    if identity.get("models") is not None and now != identity.get("models"):
        raise PolicyError(f"policy: the cal cache {path} holds other models than when the operating point was chosen "
                          f"on it; choose again on the cache as it is")
    return head


def _method_of(op, header: dict | None, n_models: int) -> str:
    kind = (header or {}).get("kind")
    if kind == "llm_tokens":
        return "calm"
    if kind not in (None, "classification"):
        raise PolicyError(f"policy: an operating point on a {kind} cache has no runtime policy (early_exit, cascade, "
                          f"calm)")
    if kind is None and getattr(op, "metric", None) == "agreement":
        raise PolicyError("policy: key 'method': the operating point does not say which cache it was chosen on; "
                          "pass method='calm' (or 'early_exit')")
    chosen = _header_models(header)
    return ("cascade" if len(chosen) > 1 else "early_exit") if chosen else "cascade" if n_models > 1 else "early_exit"


def _header_models(header: dict | None) -> list:
    """The models a classification cal cache's header records (a cascade's members in order), [] if unknown."""
    models = ((header or {}).get("meta") or {}).get("models") if (header or {}).get("kind") != "llm_tokens" else None
    return models if isinstance(models, list) else []


def _check_models(method: str, models: list[str], header: dict | None, identity: Mapping) -> None:
    """Refuse ``models`` (and an explicit ``method``) that do not match the models the point was chosen on."""
    chosen = _header_models(header)
    if not chosen or method == "calm":
        return
    names = [m.get("name") if isinstance(m, Mapping) else m for m in chosen]
    what = f"a cascade of {len(chosen)} models {names}" if len(chosen) > 1 else f"one model {names}"
    want = "cascade" if len(chosen) > 1 else "early_exit"
    if method != want or len(models) != len(chosen):
        raise PolicyError(f"policy: key 'models': the operating point was chosen on {what} (its cal cache "
                          f"{identity.get('path') or '(path not recorded)'}; method {want}); got method {method!r} "
                          f"with {len(models)} model(s) {models}. Pass one model folder per member, in that order")


def _exit_of(exit, header: dict | None, family: str | None = None) -> dict:
    """The policy's exit: ``exit`` ("lens" or a tuned-exit folder), else the exit family the operating point was
    chosen on (``family``, from its cal view) or the cal cache's only family. An ``exit`` of another kind or folder
    than that family's is refused: the threshold holds for the exits it was chosen on."""
    families = (header or {}).get("families") or {}
    if family is None and exit is None and len(families) != 1:
        raise PolicyError(f"policy: key 'exit': pass exit= 'lens' or the tuned-exit folder (the cal cache holds "
                          f"exit families {sorted(families) or 'unknown'}; the operating point does not say "
                          f"which it was chosen on)")
    name = family if family is not None else next(iter(families), None)
    fam = families.get(name) if isinstance(families, Mapping) else None
    if fam is None and family is not None and header is not None:
        raise PolicyError(f"policy: key 'exit': the operating point was chosen on exit family {family!r}, which the "
                          f"cal cache no longer holds ({sorted(families)}); choose again")
    if fam is not None:
        lens = (fam or {}).get("kind") == "logit_lens"
        want = {"kind": "lens"} if lens else {"kind": "tuned", "folder": (fam or {}).get("folder")}
    else:  # no header: the family's name is all there is
        lens = name == "lens"
        want = {"kind": "lens"} if lens else {"kind": "tuned", "folder": None}
    if exit is None:
        if not lens and not want["folder"]:
            raise PolicyError(f"policy: key 'exit': the cal cache's family {name!r} records no folder; pass exit=")
        return want
    got = {"kind": "lens"} if str(exit) == "lens" else {"kind": "tuned", "folder": str(exit)}
    if name is not None and (got["kind"] != want["kind"] or (
            want.get("folder") and Path(got["folder"]).resolve() != Path(want["folder"]).resolve())):
        shown = "lens" if lens else f"tuned exits {want.get('folder') or '(folder not recorded)'}"
        raise PolicyError(f"policy: key 'exit': the operating point was chosen on exit family {name!r} ({shown}); "
                          f"exit={str(exit)!r} is another exit, for which its threshold means something else. Choose "
                          f"on a view of that family (engine.staged(cal, family=...)) or pass "
                          f"exit={'lens' if lens else want.get('folder') or 'its folder'!r}")
    return got


def _weights_of_header(head: dict | None) -> list:
    if not head:
        return []
    if head.get("kind") == "llm_tokens":
        model = head.get("model")
        return [model.get("weights_sha256")] if isinstance(model, Mapping) else []
    models = (head.get("meta") or {}).get("models")
    return [m.get("weights_sha256") if isinstance(m, Mapping) else None for m in models] \
        if isinstance(models, list) else []


def _fingerprints(weights, header: dict | None, identity: Mapping, n_models: int) -> list[str]:
    """The weight fingerprints a policy records: ``weights`` (fingerprints, or a cache whose header records them),
    else those of the cal cache's header; refuse when there are none or their count differs."""
    recorded = _weights_of_header(header)
    if weights is None:
        weights = recorded
    elif not isinstance(weights, (list, tuple, str)):
        meta = getattr(weights, "meta", None) or {}
        model = getattr(weights, "model", None)
        weights = ([model.get("weights_sha256")] if isinstance(model, Mapping) else
                   [m.get("weights_sha256") if isinstance(m, Mapping) else None for m in meta.get("models") or []])
    if isinstance(weights, str):
        weights = [weights]
    weights = list(weights or [])
    if not weights or any(w is None for w in weights):
        where = f"its cal cache {identity['path']}" if identity.get("path") else "the operating point"
        raise PolicyError(f"policy: key 'models': {where} records no weight fingerprint of the models it was chosen "
                          f"on (a cache collected before fingerprints, an LLM token cache or one built from arrays); "
                          f"pass weights= a cache whose header records them, or the sha256 of each model's weights "
                          f"(toolkit.nn.common.parts.weights_sha256), or collect the cal cache again")
    if len(weights) != n_models:
        raise PolicyError(f"policy: key 'weights': {len(weights)} weight fingerprint(s) for {n_models} model(s) "
                          f"in models=; give one per model, in the same order")
    for i, (want, got) in enumerate(zip(recorded, weights)):
        if want is not None and want != got:
            raise PolicyError(f"policy: key 'weights' entry {i}: the operating point was chosen on weights "
                              f"{want[:12]}... (its cal cache {identity.get('path')}), weights= gives {str(got)[:12]}...; "
                              f"a policy runs only on the weights it was chosen for: leave weights= out, or choose "
                              f"again on a cache of those weights")
    return [str(w) for w in weights]


def _upgrade(d: dict, source: str) -> dict:
    """A policy file of an earlier format as this format (fingerprints unknown: recorded as null)."""
    if "method" in d and "model" in d:  # toolkit.nn.causal.decode.LLMPolicy
        known = {"model", "method", "exit", "draft_layer", "draft_length", "score", "checked_layers", "thresholds",
                 "temperature", "max_new_tokens", "chat_template", "meta"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PolicyError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        keep = {"self_speculative": ("exit", "draft_layer", "draft_length", "max_new_tokens", "chat_template"),
                "calm": ("exit", "score", "checked_layers", "thresholds", "temperature", "max_new_tokens",
                         "chat_template")}.get(d["method"], ())
        params = {k: d[k] for k in keep if k in d and d[k] is not None}
        return {"schema": SCHEMA, "version": VERSION, "method": d["method"],
                "models": [{"path": d["model"], "weights_sha256": None}], "params": params,
                "meta": d.get("meta") or {}}
    if "method" not in d:  # toolkit.nn.encoder.runtime.Policy
        if "models" not in d:
            raise PolicyError(f"{source}: key 'models' is missing (the model folders, in cascade order)")
        known = {"models", "score", "thresholds", "temperatures", "max_length", "meta"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PolicyError(f"{source}: unknown key(s) {unknown}; a policy has {sorted(known)}")
        models = d["models"]
        if not isinstance(models, list) or not models:
            raise PolicyError(f"{source}: key 'models' must be a non-empty list of model folders or names, got "
                              f"{models!r}")
        params = {k: d[k] for k in ("score", "thresholds", "temperatures", "max_length") if k in d}
        return {"schema": SCHEMA, "version": VERSION, "method": "early_exit" if len(models) == 1 else "cascade",
                "models": [{"path": m, "weights_sha256": None} for m in models], "params": params,
                "meta": d.get("meta") or {}}
    raise PolicyError(f"{source}: key 'schema' is missing; a policy has schema, version, method, models, params, "
                      f"meta")


def _write_atomic(path, text: str) -> Path:
    """Deprecated (0.3): :func:`toolkit.caches.io.write_atomic` (here with 0.2's error type, :class:`PolicyError`)."""
    from toolkit.caches.io import write_atomic

    return write_atomic(path, text, error=PolicyError)


__getattr__ = renamed({"write_atomic": ("toolkit.caches.io.write_atomic", _write_atomic)}, module=__name__)
