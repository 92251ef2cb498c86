"""Per-example quality of generated text and the sufficient statistics for corpus metrics.

``exact_match`` (text-to-text classification: the normalised output equals the label word) averages over examples.
Corpus BLEU and chrF do not: a routed corpus mixes two systems' outputs, so each example keeps sacrebleu's
segment statistics (BLEU: hypothesis and reference lengths, matches and totals for n = 1..4; chrF: hypothesis,
reference and match counts per character and word order), and the corpus score of any mix is computed from their
sums, exactly as ``sacrebleu.corpus_bleu``/``corpus_chrf`` would on the mixed hypotheses. The segment statistics
come from sacrebleu's own extraction (``_extract_corpus_statistics``, the function its corpus scores use); the
vectorised formulas below are checked against sacrebleu in the tests.

>>> exact_match(["Positive ", "neg"], ["positive", "negative"]).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import numpy as np

from toolkit._api import keyword_options

QUALITY_METRICS = ("exact_match", "bleu", "chrf")
BLEU_ORDER = 4


def normalize(text: str) -> str:
    return " ".join(str(text).lower().split())


def exact_match(hypotheses, targets) -> np.ndarray:
    """1.0 where the whitespace- and case-normalised hypothesis equals the target, else 0.0."""
    h, t = list(hypotheses), list(targets)
    if len(h) != len(t):
        raise ValueError(f"{len(h)} hypotheses for {len(t)} targets")
    return np.array([normalize(a) == normalize(b) for a, b in zip(h, t)], dtype=np.float64)


def _check_pairs(hypotheses, references):
    h, r = [str(x) for x in hypotheses], [str(x) for x in references]
    if len(h) != len(r):
        raise ValueError(f"{len(h)} hypotheses for {len(r)} references")
    return h, r


def bleu_stats(hypotheses, references) -> np.ndarray:
    """``[N, 2 + 2*4]`` sacrebleu segment statistics: sys_len, ref_len, correct_1..4, total_1..4."""
    from sacrebleu.metrics import BLEU

    h, r = _check_pairs(hypotheses, references)
    return np.asarray(BLEU()._extract_corpus_statistics(h, [r]), dtype=np.float64).reshape(len(h), -1)


def chrf_stats(hypotheses, references) -> np.ndarray:
    """``[N, 3 * 6]`` sacrebleu chrF segment statistics: (hyp, ref, match) counts per order, chars 1..6."""
    from sacrebleu.metrics import CHRF

    h, r = _check_pairs(hypotheses, references)
    return np.asarray(CHRF()._extract_corpus_statistics(h, [r]), dtype=np.float64).reshape(len(h), -1)


def corpus_bleu(stats) -> np.ndarray:
    """Corpus BLEU (0-100) of summed statistics ``[..., 10]``, with sacrebleu's default ``exp`` smoothing (the
    k-th n-gram order without a match counts as precision 1 / (2^k * total))."""
    s = np.asarray(stats, dtype=np.float64)
    sys_len, ref_len = s[..., 0], s[..., 1]
    correct, total = s[..., 2:2 + BLEU_ORDER], s[..., 2 + BLEU_ORDER:2 + 2 * BLEU_ORDER]
    zero = correct == 0
    safe_total = np.where(total > 0, total, 1.0)
    prec = np.where(zero, 100.0 / (2.0 ** np.cumsum(zero, -1) * safe_total), 100.0 * correct / safe_total)
    bp = np.exp(1 - ref_len / np.where(sys_len > 0, sys_len, 1.0))
    bp = np.where(sys_len >= ref_len, 1.0, np.where(sys_len > 0, bp, 0.0))
    score = bp * np.exp(np.log(prec).mean(-1))
    # sacrebleu: no match at all, or an order with no n-grams (hypotheses shorter than 4 tokens), scores 0
    return np.where((total > 0).all(-1) & ~zero.all(-1), score, 0.0)


@keyword_options
def corpus_chrf(stats, *, beta: float = 2.0) -> np.ndarray:
    """Corpus chrF (0-100, sacrebleu's default: 6 character orders, beta 2) of summed statistics ``[..., 18]``."""
    s = np.asarray(stats, dtype=np.float64)
    s = s.reshape(*s.shape[:-1], -1, 3)
    n_hyp, n_ref, n_match = s[..., 0], s[..., 1], s[..., 2]
    valid = (n_hyp > 0) & (n_ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(valid, n_match / np.where(n_hyp > 0, n_hyp, 1), 0.0)
        rec = np.where(valid, n_match / np.where(n_ref > 0, n_ref, 1), 0.0)
    k = valid.sum(-1)
    p = np.divide(prec.sum(-1), k, out=np.zeros(k.shape), where=k > 0)
    r = np.divide(rec.sum(-1), k, out=np.zeros(k.shape), where=k > 0)
    f = beta ** 2
    den = f * p + r
    return np.divide(100 * (1 + f) * p * r, den, out=np.zeros(den.shape), where=den > 0)


CORPUS = {"bleu": corpus_bleu, "chrf": corpus_chrf}


@keyword_options
def corpus_score(metric: str, *, per_example=None, stats=None) -> np.ndarray:
    """Corpus metric from per-example values (``exact_match``: their mean over the last axis) or from summed
    statistics (``bleu``/``chrf``)."""
    if metric == "exact_match":
        return np.asarray(per_example, dtype=np.float64).mean(-1)
    if metric in CORPUS:
        return CORPUS[metric](stats)
    raise ValueError(f"unknown quality metric {metric!r}; choose one of {QUALITY_METRICS}")
