"""How reliable is an early decision: agreement with the final stage, overthinking, oracle exits, risk-coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from toolkit._api import keyword_options
from toolkit.analysis.policies import exit_stage
from toolkit.analysis.scores.classification import stage_confidence


def agreement_with_final(cache) -> pd.Series:
    """Share of examples on which each stage predicts what the last stage predicts."""
    pred = cache.predictions
    return pd.Series((pred == pred[:, -1:]).mean(0), index=cache.stages, name="agreement")


def overthinking(cache) -> pd.DataFrame:
    """Per stage: right here but wrong at the last stage ("overthinking", Kaya et al. 2019), wrong here but right at
    the last, and accuracy. ``any_earlier_right_final_wrong`` in ``attrs``: share right at some stage, wrong at the end."""
    c = cache.correct
    df = pd.DataFrame({"stage": cache.stages, "accuracy": c.mean(0),
                       "right_here_wrong_final": (c & ~c[:, -1:]).mean(0),
                       "wrong_here_right_final": (~c & c[:, -1:]).mean(0)})
    df.attrs["any_earlier_right_final_wrong"] = float((c[:, :-1].any(1) & ~c[:, -1]).mean())
    return df


def oracle_exits(cache) -> pd.DataFrame:
    """Distribution of the earliest correct stage (``never``: no stage is right)."""
    c = cache.correct
    first = np.where(c.any(1), c.argmax(1), cache.n_stages)
    counts = np.bincount(first, minlength=cache.n_stages + 1)
    return pd.DataFrame({"stage": [*cache.stages, "never"], "count": counts, "share": counts / cache.n_examples})


@keyword_options
def risk_coverage(cache, *, stage=0, score: str = "max_prob", temperature=None, target: str = "label") -> pd.DataFrame:
    """Risk-coverage curve of one stage's decision: accept the most confident examples first.

    ``target="label"``: risk = error rate among accepted; ``"final"``: risk = disagreement with the last stage.
    Returns coverage, risk and the confidence threshold, one row per accepted-set size (ties accepted together),
    with ``attrs["aurc"]`` the area under the curve (mean risk over coverages).
    """
    e = cache.stages.index(stage) if isinstance(stage, str) else int(stage)
    conf = stage_confidence(cache.logits, score=score, temperature=temperature)[:, e]
    pred = cache.predictions[:, e]
    wrong = pred != (cache.labels if target == "label" else cache.predictions[:, -1])
    order = np.argsort(-conf, kind="stable")
    cs, w = conf[order], wrong[order]
    last = np.flatnonzero(np.append(cs[1:] != cs[:-1], True))
    k = last + 1
    risk = np.cumsum(w)[last] / k
    df = pd.DataFrame({"coverage": k / len(conf), "risk": risk, "threshold": cs[last]})
    df.attrs["aurc"] = float(np.sum(np.diff(np.concatenate([[0.0], df["coverage"]])) * df["risk"]))
    return df


@keyword_options
def confident_accuracy(cache, threshold: float, *, score: str = "max_prob", temperature=None) -> pd.DataFrame:
    """CascadeBERT's question: among examples a stage is confident on (confidence >= threshold), how often is that
    stage right, and how often is the last stage right on the same examples?"""
    conf = stage_confidence(cache.logits, score=score, temperature=temperature)
    c = cache.correct
    sel = conf >= threshold
    n = sel.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"stage": cache.stages, "confident_share": n / cache.n_examples,
                             "accuracy_when_confident": (sel & c).sum(0) / n,
                             "final_accuracy_same_examples": (sel & c[:, -1:]).sum(0) / n})


@keyword_options
def agreement_at_thresholds(cache, thresholds, *, score: str = "max_prob", temperature=None) -> pd.DataFrame:
    """For each threshold: share exiting before the last stage, and how often those early exits agree with the
    last stage (the cost of an early decision, measured without labels)."""
    conf = stage_confidence(cache.logits, score=score, temperature=temperature)
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    st = exit_stage(conf, thr[:, None])
    pred = cache.predictions
    early = st < cache.n_stages - 1
    agree = pred[np.arange(cache.n_examples), st] == pred[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"threshold": thr, "early_share": early.mean(1),
                             "early_agreement": (early & agree).sum(1) / early.sum(1)})
