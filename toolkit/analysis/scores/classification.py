"""Confidence scores from logits (last axis), each with an optional temperature, and their registry.

``max_prob``, ``margin`` (top-1 minus top-2 probability) and ``energy`` follow their papers; ``entropy`` returns the
entropy itself (nats, higher = less confident). :func:`confidence` turns any score into "higher is more confident",
the convention every policy and sweep uses: the score itself for max_prob, margin and elang, its negative for
entropy and energy. Pure numpy; no torch.

A new score is one :data:`SCORES` entry (name, function, orientation, unit, and optionally its form on the per-step
statistics of a generation cache); confidence, token scores, plots and the CLI read the registry.

>>> import numpy as np
>>> z = np.array([[2.0, 0.0]])
>>> float(max_prob(z)[0]).__round__(4), float(energy(z)[0]).__round__(4)
(0.8808, -2.1269)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp

from toolkit._api import keyword_options


def _check(logits, temperature) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError(f"logits need a class axis of size >= 2 (last axis), got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf")
    t = np.asarray(temperature, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
    with np.errstate(over="ignore"):
        scaled = z / (t[..., None] if t.ndim else t)
    if not np.isfinite(scaled).all():
        raise ValueError(f"temperature {np.min(t):g} is too small for these logits: logits / T overflow float64 "
                         f"(largest |logit| {np.abs(z).max():g}); use a temperature of at least "
                         f"{np.abs(z).max() / 1e300:.3g}")
    return scaled


@keyword_options
def softmax(logits, *, temperature=1.0) -> np.ndarray:
    """Probabilities over the last axis; ``temperature`` scalar or broadcastable to the leading axes."""
    return np.exp(log_softmax(_check(logits, temperature), axis=-1))


@keyword_options
def max_prob(logits, *, temperature=1.0) -> np.ndarray:
    """Largest softmax probability (Right Tool, CascadeBERT)."""
    return softmax(logits, temperature=temperature).max(-1)


@keyword_options
def margin(logits, *, temperature=1.0) -> np.ndarray:
    """Top-1 minus top-2 probability."""
    p = np.sort(softmax(logits, temperature=temperature), axis=-1)
    return p[..., -1] - p[..., -2]


@keyword_options
def entropy(logits, *, temperature=1.0) -> np.ndarray:
    """Entropy of the softmax in nats (DeeBERT exits when it is low)."""
    lp = log_softmax(_check(logits, temperature), axis=-1)
    return -(np.exp(lp) * lp).sum(-1)


@keyword_options
def energy(logits, *, temperature=1.0) -> np.ndarray:
    """E-LANG energy ``-T * logsumexp(z / T)``; lower means more confident."""
    t = np.asarray(temperature, dtype=np.float64)
    return -t * logsumexp(_check(logits, temperature), axis=-1)


@keyword_options
def elang(logits, *, temperature=1.0) -> np.ndarray:
    """E-LANG's released scoring, ``logsumexp(softmax(z / T))``; for two classes it ranks like max-probability."""
    return logsumexp(softmax(logits, temperature=temperature), axis=-1)


@dataclass(frozen=True)
class Score:
    """One confidence score.

    ``function(logits [..., C], *, temperature) -> [...]`` gives the raw score; ``orientation`` says which way is
    confident ("higher" or "lower"); ``unit`` is the raw score's unit. ``from_steps(max_logit, second_logit, lse,
    entropy, temperature)`` computes it from a generation cache's per-step statistics (None: not possible there).
    ``confidence_range``: where the oriented confidence (higher = more confident) can lie; a policy threshold
    outside it would never (or always) stop, so policies refuse it.
    """

    name: str
    function: Callable
    orientation: str
    unit: str
    from_steps: Callable | None = None
    confidence_range: tuple[float, float] = (-math.inf, math.inf)

    @property
    def confidence_unit(self) -> str:
        """Unit of the oriented confidence (higher = more confident)."""
        return self.unit if self.orientation == "higher" else f"-{self.unit}"


def _p(top, lse, t):
    return np.exp(top / t - lse)


SCORES: dict[str, Score] = {s.name: s for s in (
    Score("max_prob", max_prob, "higher", "max probability", lambda m1, m2, lse, h, t: _p(m1, lse, t), (0.0, 1.0)),
    Score("margin", margin, "higher", "top-1 minus top-2 probability",
          lambda m1, m2, lse, h, t: _p(m1, lse, t) - _p(m2, lse, t), (0.0, 1.0)),
    Score("entropy", entropy, "lower", "entropy (nats)", lambda m1, m2, lse, h, t: h, (-math.inf, 0.0)),
    Score("energy", energy, "lower", "energy (logit units)", lambda m1, m2, lse, h, t: -t * lse),
    Score("elang", elang, "higher", "logsumexp(softmax)", confidence_range=(0.0, math.inf)),
)}


def get_score(name: str) -> Score:
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; choose one of {list(SCORES)}") from None


@keyword_options
def confidence(logits, *, score: str = "max_prob", temperature=1.0) -> np.ndarray:
    """A score oriented so that higher is more confident (the threshold units of policies and sweeps)."""
    sc = get_score(score)
    s = sc.function(logits, temperature=temperature)
    return s if sc.orientation == "higher" else -s


@keyword_options
def stage_confidence(logits, *, score: str = "max_prob", temperature=None) -> np.ndarray:
    """``[N, E]`` confidences of a cache's ``[N, E, C]`` logits; ``temperature`` None, a scalar, or one per stage."""
    z = np.asarray(logits)
    if z.ndim != 3:
        raise ValueError(f"logits must be [N, E, C], got shape {z.shape}")
    t = 1.0 if temperature is None else np.asarray(temperature, dtype=np.float64)
    if np.ndim(t) == 1:
        if t.shape[0] != z.shape[1]:
            raise ValueError(f"{t.shape[0]} temperatures for {z.shape[1]} stages")
        t = np.broadcast_to(t, z.shape[:2])
    return confidence(z, score=score, temperature=t)
