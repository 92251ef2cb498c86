"""TEMPORARY offline reference for the LLM runtime's fidelity checks, until branch ``llm`` lands.

Branch ``llm`` owns the per-token cache (per-layer top-1 ids and confidence statistics along the full model's
greedy trajectory) and ``toolkit.analysis.llm.exits.acceptance_counts``. Until it is merged, the runtime's tests and
benchmarks use these two small stand-ins; at merge the lead switches them to the ``llm`` branch's functions.
"""

from __future__ import annotations

import numpy as np
import torch

from toolkit.nn.causal.decode import LayerStepper, LogitLens, token_confidence


@torch.inference_mode()
def teacher_forced_exits(model, prompt, tokens, *, exit_fn=None, scores=("max_prob",), temperature: float = 1.0):
    """Per-layer top-1 ids and confidences along a given continuation, in one teacher-forced pass.

    Position ``t`` of ``tokens`` is predicted from the hidden states at input ``len(prompt) - 1 + t``. Layers
    1..L-1 use ``exit_fn`` (default: the logit lens), layer L the model's own head.
    Returns ``top1`` ``[T, L]`` int64 and ``{score: confidence [T, L]}`` (float32, or float64 for a float64 model).
    """
    st = LayerStepper(model)
    exit_fn = exit_fn or LogitLens(model)
    prompt, tokens = [int(t) for t in prompt], [int(t) for t in tokens]
    ids = torch.tensor([prompt + tokens[:-1]], device=st.device)
    T, n = len(tokens), len(prompt)
    h = st.embed(ids)
    rope = st.rope(h, torch.arange(ids.shape[1], device=st.device)[None])
    mask = st.mask(torch.ones_like(ids, dtype=torch.bool), ids.shape[1])
    cache = st.new_cache()
    top1, conf = [], {s: [] for s in scores}
    for i in range(st.n_layers):
        h = st.layer(i, h, mask, rope, cache)
        x = h[0, n - 1:n - 1 + T]
        logits = st.head(x) if i == st.n_layers - 1 else exit_fn(i + 1, x)
        top1.append(logits.argmax(-1))
        for s in scores:
            conf[s].append(token_confidence(logits, s, temperature))
    return torch.stack(top1, 1).cpu().numpy(), {s: torch.stack(c, 1).cpu().numpy() for s, c in conf.items()}


def offline_acceptance(top1_k, tokens, draft_length: int, max_new_tokens: int) -> np.ndarray:
    """Accepted count of every self-speculative block along the full model's trajectory (INTERFACES section 2).

    ``top1_k`` ``[T]``: layer k's exit top-1 at each generated position; ``tokens`` ``[T]``: the full output. The
    block at ``p`` counts the leading agreements among ``min(d, max_new_tokens - 1 - p, T - p)`` positions; the next
    block starts at ``p + a + 1``.

    >>> offline_acceptance([5, 6, 0, 8, 9], [5, 6, 7, 8, 9], 2, 10).tolist()
    [2, 0, 1]
    """
    y, x = np.asarray(top1_k), np.asarray(tokens)
    T, p, out = len(x), 0, []
    while p < T:
        n = min(draft_length, max_new_tokens - 1 - p, T - p)
        agree = y[p:p + n] == x[p:p + n]
        a = int(n if agree.all() else np.argmin(agree))
        out.append(a)
        p += a + 1
    return np.asarray(out, dtype=np.int64)
