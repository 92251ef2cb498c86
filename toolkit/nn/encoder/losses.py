"""Training objectives over a multi-exit model's ``[B, E, C]`` logits (see :mod:`toolkit.nn.encoder.train`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES = ("joint", "weighted", "two_stage", "distill", "ranking")


def per_exit_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each exit, ``[E]``, from logits ``[B, E, C]``."""
    B, E, C = logits.shape
    ce = F.cross_entropy(logits.float().reshape(B * E, C), labels.repeat_interleave(E), reduction="none")
    return ce.view(B, E).mean(0)


def joint_loss(logits, labels):
    return per_exit_ce(logits, labels).sum()


def weighted_loss(logits, labels):
    ce = per_exit_ce(logits, labels)
    w = torch.arange(1, ce.numel() + 1, dtype=ce.dtype, device=ce.device)
    return (w * ce).sum() / w.sum()


def distill_loss(logits, labels, teacher_logits=None, temperature: float = 2.0, alpha: float = 0.5):
    """Per-exit distillation. ``teacher_logits`` ``[B, C]`` or ``[B, E, C]``; default: the final exit, detached."""
    if teacher_logits is None:
        teacher_logits = logits[:, -1].detach()
    if teacher_logits.dim() == 2:
        teacher_logits = teacher_logits[:, None].expand_as(logits)
    T = temperature
    log_p = F.log_softmax(logits.float() / T, -1)
    q = F.softmax(teacher_logits.float() / T, -1)
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(-1).mean(0)  # [E]
    ce = per_exit_ce(logits, labels)
    return (alpha * ce + (1 - alpha) * T * T * kl).sum()


def ranking_loss(logits, labels, difficulty, margin: float = 0.5, lam: float = 0.5):
    """CascadeBERT: CE + lam * mean over (easy i, hard j) pairs of ``max(0, margin - (p_i - p_j))``.

    ``logits`` ``[B, C]`` (or ``[B, 1, C]``), ``difficulty`` 1 for hard, 0 for easy; p = max-probability.
    """
    if logits.dim() == 3:
        logits = logits[:, -1]
    logits = logits.float()
    ce = F.cross_entropy(logits, labels)
    p = F.softmax(logits, -1).max(-1).values
    easy, hard = difficulty == 0, difficulty == 1
    if easy.any() and hard.any():
        diff = p[easy][:, None] - p[hard][None, :]
        rank = F.relu(margin - diff).mean()
    else:
        rank = logits.new_zeros(())
    return ce + lam * rank

