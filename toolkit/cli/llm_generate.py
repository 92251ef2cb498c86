"""``toolkit llm-generate``."""

from __future__ import annotations

import sys

from toolkit.cli._common import positive_int
from toolkit.cli._policy import add_policy_arguments, load_policy, read_lines, write_tsv


def register(sub) -> None:
    p = sub.add_parser("llm-generate", help="generate with a causal LM and a saved early-exit policy",
                       description="Greedy generation with a saved policy (toolkit.policy.Policy, method "
                                   "self_speculative (draft_layer, draft_length; output equals the full model's) or "
                                   "calm (score, checked_layers, thresholds, temperature); exit: the logit lens or "
                                   "tuned exits). The policy runs only on the weights it was chosen for (checked in "
                                   "float32, before --dtype). Reads one prompt per line (UTF-8; empty lines are "
                                   "refused) and writes one output line per prompt: line number, tokens generated, "
                                   "mean accepted drafts per block (self-speculative) or mean exit layer (CALM), and "
                                   "the text with \\\\, tab and newlines escaped.")
    add_policy_arguments(p, batch_size=1)
    p.add_argument("--max-new-tokens", type=positive_int, help="override the policy's max_new_tokens")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.set_defaults(fn=run)


def read_prompts(path) -> list[str]:
    """One prompt per line (:func:`read_lines`); refuse empty lines and empty files, naming the line."""
    lines = read_lines(path)
    if not lines:
        raise ValueError(f"{path}: no prompts (one prompt per line)")
    for i, ln in enumerate(lines):
        if not ln.strip():
            raise ValueError(f"{path}:{i + 1}: empty line; every line is one prompt (remove it or write a prompt)")
    return lines


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def run(a) -> int:
    import time

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolkit.nn.causal.decode import decoder_from_policy, encode_prompts
    from toolkit.nn.common.parts import weights_sha256
    from toolkit.nn.encoder.models import resolve_model

    policy = load_policy(a, "llm-generate")
    prompts = read_prompts(a.input)
    folder = resolve_model(policy.model)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    weights = weights_sha256(model)  # the weights' identity, whatever dtype they then run in
    model = model.to(device=a.device, dtype=getattr(torch, a.dtype)).eval()
    decoder = decoder_from_policy(policy, model, weights=weights, source=str(a.policy))
    ids = encode_prompts(tok, prompts, chat_template=policy.params["chat_template"])
    max_new = a.max_new_tokens or policy.params["max_new_tokens"]
    spec = policy.method == "self_speculative"
    t0 = time.perf_counter()
    tokens, stat = [], []
    for s in range(0, len(ids), a.batch_size):
        res = decoder.generate(ids[s:s + a.batch_size], max_new)
        tokens += res.tokens
        stat += [float(np.mean(x)) for x in (res.accepted if spec else res.exit_layers)]
    seconds = time.perf_counter() - t0
    column = "mean_accepted" if spec else "mean_exit_layer"
    lines = [f"line\ttokens\t{column}\ttext"]
    lines += [f"{i + 1}\t{len(t)}\t{v:.3f}\t{escape(tok.decode(t, skip_special_tokens=True))}"
              for i, (t, v) in enumerate(zip(tokens, stat))]
    write_tsv(a.out, lines)
    n = sum(len(t) for t in tokens)
    print(f"{len(prompts)} prompts, {n} tokens in {seconds:.2f} s ({n / seconds:.1f} tokens/s); {policy.method}: "
          f"{column} {np.mean(stat):.3f}", file=sys.stderr)
    return 0
